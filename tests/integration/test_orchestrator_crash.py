"""The orchestrator killed with SIGKILL between its database commit and its publish: the
committed work is dispatched by the next orchestrator and completes (real processes,
PostgreSQL, RabbitMQ, S3 and Triton)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import aio_pika
import asyncpg
import pytest
from tests.eventually import eventually_async
from tests.faults import FaultProxy

from tally_bus import Bus, Topology
from tally_contracts.statuses import FINAL
from tally_contracts.v1 import DetectionParams, JobRef, PhotoUploaded
from tally_db import Store
from tally_gateway import _records
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_stack.local_triton import LocalTriton
from tally_storage import ObjectStore, S3Settings
from tally_synth import write_dataset
from tally_upload._records import NewJob, add_jobs

pytestmark = [pytest.mark.integration, pytest.mark.reliability]
BIN = Path(sys.executable).parent


async def _start(service: str, ready: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    """The service's process, once it said `ready`; its log goes on to the test's stderr."""
    process = await asyncio.create_subprocess_exec(
        str(BIN / f"tally-{service}"), env={**os.environ, **env}, stderr=asyncio.subprocess.PIPE
    )
    assert process.stderr is not None
    async with asyncio.timeout(60):
        while line := await process.stderr.readline():
            sys.stderr.write(line.decode(errors="replace"))
            if ready.encode() in line:
                break
        else:
            raise AssertionError(f"tally-{service} exited before it was ready")
    # Later lines are dropped unread (the kernel buffer would fill and block the process).
    _DRAINS.add(asyncio.create_task(process.stderr.read()))
    return process


_DRAINS: set[asyncio.Task[bytes]] = set()


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


@pytest.fixture
def photo(tmp_path: Path) -> bytes:
    write_dataset(tmp_path, count=1, seed=5, width=1500, height=1000, workers=1)
    (path,) = tmp_path.glob("*.jpg")
    return path.read_bytes()


@pytest.fixture
async def topology(amqp_url: str) -> AsyncIterator[Topology]:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    yield topology
    async with await aio_pika.connect(amqp_url) as connection:
        await topology.delete(await connection.channel())


async def test_a_job_committed_but_not_published_is_dispatched_by_the_next_orchestrator(
    database: str,
    amqp_url: str,
    s3_endpoint: str,
    triton: LocalTriton,
    topology: Topology,
    photo: bytes,
) -> None:
    """The first orchestrator reaches RabbitMQ through a proxy that goes silent just after it
    delivers the PhotoUploaded: the plan commits (the `planned` event and the chunks wait in
    PostgreSQL) and nothing it publishes can arrive. It is killed there. A second orchestrator
    and a detector finish the job: every chunk dispatched and counted once."""
    s3 = S3Settings(
        bucket=f"crash-{uuid.uuid4().hex[:10]}",
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    env = {
        "TALLY_DATABASE_URL": database,
        "TALLY_BUS_PREFIX": topology.prefix,
        "TALLY_RELAY_INTERVAL_S": "0.2",
        "TALLY_S3_ENDPOINT_URL": s3_endpoint,
        "TALLY_S3_BUCKET": s3.bucket,
        "TALLY_S3_ACCESS_KEY_ID": MOTO_ACCESS_KEY,
        "TALLY_S3_SECRET_ACCESS_KEY": MOTO_SECRET_KEY,
        "TALLY_TRITON_URL": triton.endpoints.grpc_url,
        "TALLY_REDIS_URL": "redis://127.0.0.1:6379/15",
    }
    broker = urlsplit(amqp_url)
    async with (
        Store.open(database) as store,
        await Bus.connect(amqp_url, topology) as bus,
        ObjectStore.open(s3, create_bucket=True) as objects,
    ):
        tenant = await store.create_tenant("t")
        session = await store.create_session(tenant.id)
        key = f"{tenant.id}/{session.id}/photo/original.jpg"
        await objects.put_bytes(key, photo, "image/jpeg")
        (job,) = await add_jobs(
            store, [NewJob(tenant.id, session.id, "p.jpg", key, 1500, 1000)], []
        )
        uploaded = PhotoUploaded(
            job=JobRef(tenant_id=str(tenant.id), session_id=str(session.id), job_id=str(job.id)),
            filename="p.jpg",
            object_key=key,
            width=1500,
            height=1000,
            params=DetectionParams(slice_size=512, overlap=0.25, confidence=0.35),
        )
        connection = await asyncpg.connect(database)
        processes: list[asyncio.subprocess.Process] = []
        try:
            with FaultProxy((broker.hostname or "127.0.0.1", broker.port or 5672)) as proxy:
                first = await _start(
                    "orchestrator",
                    "orchestrator ready",
                    env
                    | {
                        "TALLY_AMQP_URL": proxy.url,
                        # Nothing gives up on the silent connection before the kill.
                        "TALLY_BUS_HEARTBEAT_S": "300",
                        "TALLY_BUS_PUBLISH_TIMEOUT_S": "300",
                    },
                )
                processes.append(first)
                proxy.blackhole(after_delivery=True)
                await bus.publish(topology.photo_uploaded, uploaded)

                async def planned() -> bool:
                    phase = await connection.fetchval(
                        "SELECT phase FROM jobs WHERE id = $1", job.id
                    )
                    return bool(phase == "planned")

                await eventually_async(planned, 30)
                await asyncio.sleep(1.0)  # its relay and dispatcher try, and wait for the broker
                assert proxy.holed
                await _kill(first)

            # Killed between commit and publish: committed, nothing went out.
            pending = await connection.fetchval(
                "SELECT count(*) FROM outbox WHERE published_at IS NULL"
            )
            assert pending >= 1  # the `planned` event at least
            held = await connection.fetchval(
                "SELECT count(*) FROM chunk_dispatch WHERE job_id = $1", job.id
            )
            state = await _records.get_job(store, tenant.id, job.id)
            assert state is not None
            assert (state.status, held) == ("queued", state.chunk_count)

            processes.append(
                await _start(
                    "orchestrator", "orchestrator ready", env | {"TALLY_AMQP_URL": amqp_url}
                )
            )
            processes.append(
                await _start("detector", "ready (Triton at", env | {"TALLY_AMQP_URL": amqp_url})
            )

            async def final() -> bool:
                state = await _records.get_job(store, tenant.id, job.id)
                return state is not None and state.status in FINAL

            await eventually_async(final, 120)
            state = await _records.get_job(store, tenant.id, job.id)
            assert state is not None
            assert (state.status, state.processed) == ("completed", state.total)
            assert await _records.get_result(store, tenant.id, job.id) is not None

            async def all_published() -> bool:
                return not await connection.fetchval(
                    "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                )

            await eventually_async(all_published, 10)
            assert await connection.fetchval("SELECT count(*) FROM chunk_dispatch") == 0
        finally:
            for process in processes:
                await _kill(process)
            await connection.close()
