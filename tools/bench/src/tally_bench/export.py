"""`make bench-export`: what a session export costs against the session's size.

A 500-job and a 5,000-job session (every tenth job failed, the others completed with a few
detections each), seeded straight into PostgreSQL (COPY) and the object store, no pipeline;
each format exported from an in-process gateway app, its body read as it is streamed and
counted, never kept. The figures: the export's peak of Python memory (tracemalloc, on a second
run: tracing slows Python down) and its throughput in jobs a second, side by side. Bounded
memory means the 5,000-job peak stays near the 500-job one.

Needs PostgreSQL, Redis and RabbitMQ on 127.0.0.1 (`make servers`); starts moto's S3 server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import aio_pika
import asyncpg
from fastapi import FastAPI
from pydantic import SecretStr

from tally_db import Store
from tally_gateway.app import create_app
from tally_gateway.config import Settings
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY, MotoS3Server
from tally_storage import ObjectStore, S3Settings, keys

FORMATS: Final = ("csv", "json", "coco")
SIZES: Final = (500, 5000)
PUTS: Final = 32  # result documents put at once while seeding
FAILED_EVERY: Final = 10  # every tenth job failed
LABELS: Final = ("seedling", "weed")
PG_ADMIN_DSN: Final = os.environ.get(
    "TALLY_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)
AMQP_URL: Final = os.environ.get("TALLY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL: Final = os.environ.get("TALLY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
_JOB_COLUMNS: Final = [
    "id",
    "tenant_id",
    "session_id",
    "image_id",
    "filename",
    "object_key",
    "width",
    "height",
    "status",
    "phase",
    "error_code",
    "error_message",
    "created_at",
    "started_at",
    "completed_at",
]


def detections_of(n: int) -> list[dict[str, Any]]:
    """Job n's detections: n % 4 boxes (0 to 3), labels alternating."""
    return [
        {
            "bbox": [10.0 * k, 20.0 * k, 10.0 * k + 30.5, 20.0 * k + 40.25],
            "score": round(0.5 + k / 10, 2),
            "label": LABELS[(n + k) % 2],
        }
        for k in range(n % 4)
    ]


def failed(n: int) -> bool:
    return n % FAILED_EVERY == FAILED_EVERY - 1


async def seed_session(
    store: Store, objects: ObjectStore, tenant_id: uuid.UUID, jobs: int, name: str = "export"
) -> uuid.UUID:
    """A session of `jobs` jobs, written as the upload and the orchestrator write them: job n
    is `{n:05}.jpg`, failed when `failed(n)`, else completed with `detections_of(n)`."""
    session = await store.create_session(tenant_id, name)
    start = datetime.now(UTC)
    job_rows, result_rows, documents = [], [], []
    for n in range(jobs):
        job_id = uuid.uuid4()
        original = keys.original(tenant_id, session.id, job_id, ".jpg")
        created = start + timedelta(microseconds=n)
        done = created + timedelta(seconds=2)
        bad = failed(n)
        job_rows.append(
            (
                job_id,
                tenant_id,
                session.id,
                uuid.uuid4(),
                f"{n:05}.jpg",
                original,
                400,
                300,
                "failed" if bad else "completed",
                "done",
                "unreadable" if bad else None,
                "the photo could not be decoded" if bad else None,
                created,
                created + timedelta(seconds=1),
                done,
            )
        )
        if bad:
            continue
        found = detections_of(n)
        counts = {label: sum(d["label"] == label for d in found) for label in LABELS}
        document = {
            "job_id": str(job_id),
            "width": 400,
            "height": 300,
            "counts": counts,
            "detections": found,
        }
        result_rows.append(
            (job_id, tenant_id, json.dumps(counts), len(found), keys.result(original))
        )
        documents.append((keys.result(original), json.dumps(document).encode()))
    async with store.transaction() as connection:
        await connection.copy_records_to_table("jobs", records=job_rows, columns=_JOB_COLUMNS)
        await connection.copy_records_to_table(
            "results",
            records=result_rows,
            columns=["job_id", "tenant_id", "counts", "detections", "object_key"],
        )
    pending = iter(documents)

    async def put() -> None:  # PUTS of these at once: a task per document is slow to make
        for key, data in pending:
            await objects.put_bytes(key, data, "application/json")

    async with asyncio.TaskGroup() as group:
        for _ in range(PUTS):
            group.create_task(put())
    return session.id


@dataclass(frozen=True, slots=True)
class ExportRun:
    status: int
    bytes: int
    seconds: float
    peak_bytes: int | None  # tracemalloc's peak while it ran; None when not traced


async def run_export(
    app: FastAPI,
    session_id: uuid.UUID,
    fmt: str,
    key: str,
    *,
    traced: bool = False,
    sink: Callable[[bytes], object] | None = None,
) -> ExportRun:
    """GET the export straight through the app's ASGI interface, its body handed to `sink` a
    piece at a time as it is sent (httpx's ASGI transport would keep all of it)."""
    path = f"/v1/sessions/{session_id}/export"
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": f"format={fmt}".encode(),
        "root_path": "",
        "headers": [(b"host", b"gateway"), (b"authorization", f"Bearer {key}".encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("gateway", 80),
    }
    sent = False
    never = asyncio.Event()  # the client never goes away

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await never.wait()
        return {"type": "http.disconnect"}

    status, size = 0, 0

    async def send(message: MutableMapping[str, Any]) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body: bytes = message.get("body", b"")
            size += len(body)
            if sink is not None and body:
                sink(body)

    if traced:
        gc.collect()  # what earlier work left for the collector is not this export's
        tracemalloc.start()
    started = time.perf_counter()
    try:
        await app(scope, receive, send)
        seconds = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if traced else None
    finally:
        if traced:
            tracemalloc.stop()
    return ExportRun(status, size, seconds, peak)


@contextlib.asynccontextmanager
async def _database() -> AsyncIterator[str]:
    name = f"tally_bench_export_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _mib(value: int | None) -> str:
    return "—" if value is None else f"{value / 2**20:.2f} MiB"


@dataclass(frozen=True, slots=True)
class Figure:
    fmt: str
    jobs: int
    timed: ExportRun | None  # untraced: its throughput
    traced: ExportRun  # its peak of memory


async def measure(
    database: str,
    s3_endpoint: str,
    *,
    sizes: Sequence[int] = SIZES,
    formats: Sequence[str] = FORMATS,
    timed: bool = True,
    bodies: Path | None = None,
) -> list[Figure]:
    """Seed a session of each size into `database` (empty) and a new bucket of `s3_endpoint`,
    and export each in each format from an in-process gateway: once untraced (`timed`), once
    under tracemalloc, whose body is written to `bodies`/`{fmt}-{jobs}` when given."""
    s3 = S3Settings(
        bucket=f"bench-export-{uuid.uuid4().hex[:8]}",
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    async with Store.open(database) as store, ObjectStore.open(s3, create_bucket=True) as objects:
        tenant = await store.create_tenant("bench-export")
        # One export of a 5,000-job session costs a key's whole read bucket: room for them all.
        unlimited = ("read_burst", "read_rate", "tenant_read_burst", "tenant_read_rate")
        await store.set_tenant_limits(tenant.id, dict.fromkeys(unlimited, 1e9))
        key = (await store.create_api_key(tenant.id, "read")).key
        sessions = {n: await seed_session(store, objects, tenant.id, n) for n in sizes}
        settings = Settings(
            database_url=SecretStr(database),
            amqp_url=SecretStr(AMQP_URL),
            bus_prefix=f"bench-export-{uuid.uuid4().hex[:8]}",
            redis_url=SecretStr(REDIS_URL),
            s3_endpoint_url=s3_endpoint,
            s3_bucket=s3.bucket,
            s3_access_key_id=MOTO_ACCESS_KEY,
            s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
        )
        app = create_app(settings)
        figures = []
        try:
            async with app.router.lifespan_context(app):
                await run_export(app, sessions[min(sizes)], "json", key)  # warm: clients, caches
                for fmt in formats:
                    for n in sizes:
                        plain = await run_export(app, sessions[n], fmt, key) if timed else None
                        if bodies is None:
                            traced = await run_export(app, sessions[n], fmt, key, traced=True)
                        else:
                            with (bodies / f"{fmt}-{n}").open("wb") as out:
                                traced = await run_export(
                                    app, sessions[n], fmt, key, traced=True, sink=out.write
                                )
                        figures.append(Figure(fmt, n, plain, traced))
        finally:
            async with await aio_pika.connect(AMQP_URL) as connection:
                await settings.topology.delete(await connection.channel())
        return figures


def report(figures: Sequence[Figure]) -> str:
    """The figures side by side, and each format's ratio of peaks, biggest to smallest size."""
    lines = [f"{'format':<7}{'jobs':>7}{'status':>8}{'bytes':>12}{'jobs/s':>10}{'peak':>13}"]
    for f in figures:
        run = f.timed or f.traced
        rate = f"{f.jobs / run.seconds:,.0f}" + ("" if f.timed else "*")
        lines.append(
            f"{f.fmt:<7}{f.jobs:>7}{run.status:>8}{run.bytes:>12,}{rate:>10}"
            f"{_mib(f.traced.peak_bytes):>13}"
        )
    if not all(f.timed for f in figures):
        lines.append("* measured under tracemalloc, which slows Python down")
    for fmt in dict.fromkeys(f.fmt for f in figures):
        mine = sorted((f for f in figures if f.fmt == fmt), key=lambda f: f.jobs)
        small, big = mine[0], mine[-1]
        if small.traced.peak_bytes and big.traced.peak_bytes:
            ratio = big.traced.peak_bytes / small.traced.peak_bytes
            lines.append(
                f"{fmt}: peak at {big.jobs} jobs / peak at {small.jobs} jobs = {ratio:.2f}"
            )
    return "\n".join(lines)


async def _bench(sizes: Sequence[int]) -> list[Figure]:
    with MotoS3Server() as s3_server:
        async with _database() as database:
            return await measure(database, s3_server.endpoint_url, sizes=sizes)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="jobs")
    args = parser.parse_args()
    print(report(asyncio.run(_bench(args.sizes))))
