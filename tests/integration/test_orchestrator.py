"""The orchestrator's dispatch on real PostgreSQL and RabbitMQ."""

from __future__ import annotations

import asyncio
import datetime
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator

import aio_pika
import asyncpg
import httpx
import pytest
from prometheus_client import REGISTRY
from pydantic import SecretStr
from tests.eventually import eventually_async

from tally_bus import Bus, Topology, decode
from tally_contracts import sequence
from tally_contracts.v1 import (
    Cancel,
    ChunkResult,
    DetectChunk,
    DetectionParams,
    JobEvent,
    JobRef,
    PhotoUploaded,
)
from tally_db import Store, usage_days, usage_now
from tally_gateway import _records
from tally_inference import SliceParams, plan_slices
from tally_orchestrator.config import Settings
from tally_orchestrator.deps import Deps
from tally_orchestrator.handlers import (
    fail_stalled,
    handle_cancel,
    handle_chunk_result,
    handle_photo_uploaded,
    recover_lost,
)
from tally_stack import free_port
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_upload._quota import planned_slices
from tally_upload._records import NewJob, add_jobs, detection_params, new_job_messages

pytestmark = pytest.mark.integration


@pytest.fixture
async def deps(database: str, amqp_url: str, s3_endpoint: str) -> AsyncIterator[Deps]:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    settings = Settings(
        database_url=SecretStr(database),
        amqp_url=SecretStr(amqp_url),
        bus_prefix=topology.prefix,
        dispatch_min=6,
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"orc-{uuid.uuid4().hex[:10]}",
        s3_access_key_id=MOTO_ACCESS_KEY,
        s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
    )
    async with Deps.open(settings) as deps:
        yield deps
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())


async def _uploaded(store: Store, width: int, height: int) -> PhotoUploaded:
    tenant = await store.create_tenant(f"t-{uuid.uuid4().hex[:6]}")
    session = await store.create_session(tenant.id)
    (job,) = await add_jobs(
        store, [NewJob(tenant.id, session.id, "tray.jpg", "k/original.jpg", width, height)], []
    )
    return PhotoUploaded(
        job=JobRef(tenant_id=str(tenant.id), session_id=str(session.id), job_id=str(job.id)),
        filename="tray.jpg",
        object_key="k/original.jpg",
        width=width,
        height=height,
        params=DetectionParams(slice_size=512, overlap=0.25, confidence=0.35),
    )


async def _drain_queue(bus: Bus, queue: str) -> list[aio_pika.abc.AbstractIncomingMessage]:
    channel = await bus.connection.channel()
    q = await channel.get_queue(queue, ensure=False)
    got = []
    while (message := await q.get(fail=False, no_ack=True)) is not None:
        got.append(message)
    return got


async def test_a_photo_is_planned_and_its_chunks_dispatched_once(deps: Deps) -> None:
    uploaded = await _uploaded(deps.store, 4000, 3000)
    await handle_photo_uploaded(uploaded, deps)
    await handle_photo_uploaded(uploaded, deps)  # redelivered: nothing more
    assert await deps.relay.drain() == 1  # `planned`: the chunks wait for the dispatcher
    assert await deps.dispatcher.dispatch() == 6  # no detector yet: `dispatch_min` go
    assert await deps.dispatcher.dispatch() == 0
    assert await deps.relay.drain() == 6

    topology = deps.bus.topology
    chunks = [
        decode(m, DetectChunk) for m in await _drain_queue(deps.bus, topology.chunks_queue.name)
    ]
    assert [c.chunk_index for c in chunks] == list(range(6))
    assert {c.chunk_count for c in chunks} == {6}
    assert {c.total_slices for c in chunks} == {88}
    boxes = [(s.x1, s.y1, s.x2, s.y2) for c in chunks for s in c.slices]
    assert boxes == plan_slices(4000, 3000, SliceParams(512, 0.25))
    assert all(c.job == uploaded.job and c.attempt == 1 for c in chunks)

    (event,) = [
        decode(m, JobEvent) for m in await _drain_queue(deps.bus, topology.events_queue.name)
    ]
    assert event.WhichOneof("kind") == "planned"
    assert (event.sequence, event.planned.total_slices, event.planned.chunk_count) == (2, 88, 6)

    job = await _records.get_job(
        deps.store, uuid.UUID(uploaded.job.tenant_id), uuid.UUID(uploaded.job.job_id)
    )
    assert job is not None
    assert (job.phase, job.total, job.status) == ("planned", 88, "queued")


@pytest.mark.parametrize(
    ("slice_size", "overlap", "side"),
    # 480 at 0.45: 1444 slices with the session's float64 overlap, 1369 with the float32 the
    # bus carries (and the orchestrator plans with).
    [(512, 0.25, 4000), (480, 0.45, 9999), (256, 0.5, 9999)],
)
async def test_the_slices_the_upload_announces_are_the_slices_the_orchestrator_plans(
    deps: Deps, slice_size: int, overlap: float, side: int
) -> None:
    store = deps.store
    tenant = await store.create_tenant(f"t-{uuid.uuid4().hex[:6]}")
    params = {"slice_size": slice_size, "overlap": overlap, "confidence": 0.35}
    session = await store.create_session(tenant.id, params=params)
    planned = planned_slices(side, side, detection_params(session.params))
    job = NewJob(tenant.id, session.id, "p.jpg", "k/p.jpg", side, side, planned)
    await add_jobs(store, [job], [])
    uploaded = PhotoUploaded.FromString(
        new_job_messages(job, detection_params(session.params), deps.bus.topology)[0].payload
    )
    await handle_photo_uploaded(uploaded, deps)
    stored = await _records.get_job(store, tenant.id, job.id)
    assert stored is not None
    assert (stored.phase, stored.total) == ("planned", planned)


async def test_a_message_naming_another_tenant_changes_nothing(deps: Deps) -> None:
    uploaded = await _uploaded(deps.store, 1000, 800)
    forged = PhotoUploaded()
    forged.CopyFrom(uploaded)
    forged.job.tenant_id = str(uuid.uuid4())
    await handle_photo_uploaded(forged, deps)
    assert await deps.relay.drain() == 0


async def test_cancelling_a_session_cancels_what_has_not_finished_once(deps: Deps) -> None:
    """A running job and a queued one are cancelled (with their events), a completed one keeps
    its result; a repeated Cancel changes nothing; a chunk result arriving afterwards is
    dropped; a PhotoUploaded redelivered afterwards dispatches nothing."""
    store = deps.store
    tenant = await store.create_tenant(f"t-{uuid.uuid4().hex[:6]}")
    session = await store.create_session(tenant.id)
    running, waiting, done = await add_jobs(
        store,
        [
            NewJob(tenant.id, session.id, f"{n}.jpg", f"k/{n}/original.jpg", 1000, 800)
            for n in ("running", "waiting", "done")
        ],
        [],
    )
    for job in (running, done):
        await deps.records.plan_job(tenant.id, job.id, 6, 1, [])
    await deps.records.complete_job(
        tenant.id, done.id, {"seedling": 1}, 1, "k/done/result.json", [], []
    )
    ref = JobRef(tenant_id=str(tenant.id), session_id=str(session.id))

    await handle_cancel(Cancel(job=ref, reason="operator"), deps)
    await handle_cancel(Cancel(job=ref, reason="operator"), deps)  # again: nothing more
    assert await deps.relay.drain() == 2
    events = [
        decode(m, JobEvent)
        for m in await _drain_queue(deps.bus, deps.bus.topology.events_queue.name)
    ]
    assert sorted(e.job.job_id for e in events) == sorted([str(running.id), str(waiting.id)])
    assert {(e.WhichOneof("kind"), e.cancelled.reason, e.sequence) for e in events} == {
        ("cancelled", "operator", sequence.FINAL)
    }
    states = {
        j.filename: j.status for j in await _records.session_jobs(store, tenant.id, session.id)
    }
    assert states == {
        "running.jpg": "cancelled",
        "waiting.jpg": "cancelled",
        "done.jpg": "completed",
    }

    late = ChunkResult(job=JobRef(**{**_ref(ref), "job_id": str(running.id)}), chunk_index=0)
    late.detections.SetInParent()
    await handle_chunk_result(late, deps)
    uploaded = PhotoUploaded(
        job=JobRef(**{**_ref(ref), "job_id": str(waiting.id)}),
        object_key="k/waiting/original.jpg",
        width=1000,
        height=800,
        params=DetectionParams(slice_size=512, overlap=0.25, confidence=0.35),
    )
    await handle_photo_uploaded(uploaded, deps)
    assert await deps.relay.drain() == 0  # no progress, no chunks for cancelled jobs


async def test_cancelled_and_failed_jobs_refund_their_unprocessed_slices_to_their_day(
    deps: Deps, database: str
) -> None:
    """Each job planned 12 slices at upload (counted in the tenant's usage of that day). A job
    cancelled half done gives back 6, one cancelled queued 12, one failed before any result 12
    (to the day it was uploaded: yesterday); a completed one keeps its 12. The queued work the
    quota counts is empty at once."""
    store = deps.store
    tenant = await store.create_tenant(f"t-{uuid.uuid4().hex[:6]}")
    session, other = await store.create_session(tenant.id), await store.create_session(tenant.id)
    running, waiting, done = await add_jobs(
        store,
        [
            NewJob(tenant.id, session.id, f"{n}.jpg", f"k/{n}/original.jpg", 1000, 800, 12, 100)
            for n in ("running", "waiting", "done")
        ],
        [],
    )
    (failing,) = await add_jobs(
        store, [NewJob(tenant.id, other.id, "f.jpg", "k/f/original.jpg", 1000, 800, 12, 100)], []
    )
    connection = await asyncpg.connect(database)
    try:
        # The failing job was uploaded yesterday: its 12 slices were counted then.
        await connection.execute(
            "UPDATE jobs SET created_at = created_at - interval '1 day' WHERE id = $1", failing.id
        )
        await connection.execute(
            """UPDATE usage_daily SET day = day - 1, slices = 12, photos = 1, bytes = 100
               WHERE tenant_id = $1""",
            tenant.id,
        )
        await connection.execute(
            """INSERT INTO usage_daily (tenant_id, day, photos, slices, bytes)
               VALUES ($1, (now() AT TIME ZONE 'UTC')::date, 3, 36, 300)""",
            tenant.id,
        )
    finally:
        await connection.close()
    for job in (running, waiting, done, failing):
        await deps.records.plan_job(tenant.id, job.id, 12, 2, [])
    await deps.records.record_chunk(tenant.id, running.id, 0, 6, b"")
    await deps.records.record_chunk(tenant.id, done.id, 0, 6, b"")
    await deps.records.complete_job(tenant.id, done.id, {}, 0, "k/done/result.json", [], [])

    await handle_cancel(
        Cancel(job=JobRef(tenant_id=str(tenant.id), session_id=str(session.id))), deps
    )
    assert (await usage_now(store.pool, tenant.id)).queued_photos == 1  # the failing one
    failure = ChunkResult(
        job=JobRef(tenant_id=str(tenant.id), session_id=str(other.id), job_id=str(failing.id)),
        chunk_index=0,
    )
    failure.failure.code = "invalid_request"
    await handle_chunk_result(failure, deps)
    await handle_chunk_result(failure, deps)  # again: refunded once

    now = await usage_now(store.pool, tenant.id)
    assert (now.queued_photos, now.queued_slices) == (0, 0)
    days = await usage_days(
        store.pool, tenant.id, now.today - datetime.timedelta(days=1), now.today
    )
    assert [(d.photos, d.slices, d.bytes) for d in days] == [
        (1, 0, 100),  # yesterday: the failed job, none of it processed
        (3, 36 - 6 - 12, 300),  # today: the completed job's 12 and the 6 done of the cancelled
    ]


async def test_a_job_that_stops_moving_fails_instead_of_processing_forever(
    deps: Deps, database: str
) -> None:
    """Its chunks lost for good: after `stalled_after_s` without progress the sweep fails it,
    once, with the reason; a job that moves, or waits queued behind a backlog, is left alone."""
    store = deps.store
    tenant = await store.create_tenant(f"t-{uuid.uuid4().hex[:6]}")
    session = await store.create_session(tenant.id)
    stuck, moving, waiting = await add_jobs(
        store,
        [
            NewJob(tenant.id, session.id, f"{n}.jpg", f"k/{n}/original.jpg", 1000, 800)
            for n in ("stuck", "moving", "waiting")
        ],
        [],
    )
    for job in (stuck, moving, waiting):
        await deps.records.plan_job(tenant.id, job.id, 12, 2, [])
    for job in (stuck, moving):
        await deps.records.record_chunk(tenant.id, job.id, 0, 6, b"")
    # Their progress events go out (and are taken): what the sweep announces is counted below.
    await deps.relay.drain()
    await _drain_queue(deps.bus, deps.bus.topology.events_queue.name)
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(
            "UPDATE jobs SET updated_at = now() - interval '1 hour' WHERE id = ANY($1::uuid[])",
            [stuck.id, waiting.id],
        )
    finally:
        await connection.close()

    stalled_before = REGISTRY.get_sample_value("tally_jobs_failed_total", {"code": "stalled"})
    assert await fail_stalled(deps) == 1
    assert await fail_stalled(deps) == 0  # failed once
    stalled_after = REGISTRY.get_sample_value("tally_jobs_failed_total", {"code": "stalled"})
    assert (stalled_after or 0) - (stalled_before or 0) == 1  # what the alert watches
    assert await deps.relay.drain() == 1
    states = {j.filename: j for j in await _records.session_jobs(store, tenant.id, session.id)}
    assert (states["stuck.jpg"].status, states["stuck.jpg"].error_code) == ("failed", "stalled")
    assert states["stuck.jpg"].error_message == (
        "no progress for 600 s: its remaining chunks were lost"
    )
    assert (states["moving.jpg"].status, states["waiting.jpg"].status) == ("processing", "queued")
    (event,) = [
        decode(m, JobEvent)
        for m in await _drain_queue(deps.bus, deps.bus.topology.events_queue.name)
    ]
    assert (event.job.job_id, event.failed.code) == (str(stuck.id), "stalled")


async def test_a_chunk_lost_with_the_detectors_is_sent_again_then_fails_its_job(
    deps: Deps, database: str
) -> None:
    """A detector takes the chunk and the message is gone (acknowledged, no result ever):
    once nothing waits in the queue and detectors consume it, a chunk out for
    `chunk_lost_after_s` is sent again; lost a second time, its job fails with the reason."""
    uploaded = await _uploaded(deps.store, 600, 500)  # 2 slices: one chunk
    await handle_photo_uploaded(uploaded, deps)
    channel = await deps.bus.connection.channel()
    queue = await channel.get_queue(deps.bus.topology.chunks_queue.name, ensure=False)
    taken: list[DetectChunk] = []
    took = asyncio.Event()

    async def lose(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        taken.append(decode(message, DetectChunk))
        await message.ack()
        took.set()

    assert await recover_lost(deps) == 0  # no detector consumes the queue: nothing is judged
    tag = await queue.consume(lose)
    try:
        for attempt in (1, 2):
            assert await deps.dispatcher.dispatch() == 1
            await deps.relay.drain()
            await asyncio.wait_for(took.wait(), 10)
            took.clear()
            assert await recover_lost(deps) == 0  # out, but not for long yet
            await _age(database, "chunk_dispatch", "dispatched_at")
            assert await recover_lost(deps) == (1 if attempt == 1 else 0)
    finally:
        await queue.cancel(tag)
    assert [c.chunk_index for c in taken] == [0, 0]
    job = await _records.get_job(
        deps.store, uuid.UUID(uploaded.job.tenant_id), uuid.UUID(uploaded.job.job_id)
    )
    assert job is not None
    assert (job.status, job.error_code) == ("failed", "chunk_lost")
    assert job.error_message == (
        "a chunk was sent to the detectors 2 times and never came back (300 s each)"
    )


async def _age(database: str, table: str, column: str) -> None:
    """Move the table's timestamps an hour back (time passes)."""
    connection = await asyncpg.connect(database)
    try:
        await connection.execute(f"UPDATE {table} SET {column} = {column} - interval '1 hour'")
    finally:
        await connection.close()


def _ref(ref: JobRef) -> dict[str, str]:
    return {"tenant_id": ref.tenant_id, "session_id": ref.session_id}


async def test_the_service_dispatches_then_stops_cleanly_on_sigterm(
    database: str, amqp_url: str, s3_endpoint: str
) -> None:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    env = {
        **os.environ,
        "TALLY_DATABASE_URL": database,
        "TALLY_AMQP_URL": amqp_url,
        "TALLY_BUS_PREFIX": topology.prefix,
        "TALLY_RELAY_INTERVAL_S": "0.2",
        "TALLY_S3_ENDPOINT_URL": s3_endpoint,
        "TALLY_S3_BUCKET": f"orc-{uuid.uuid4().hex[:10]}",
        "TALLY_S3_ACCESS_KEY_ID": MOTO_ACCESS_KEY,
        "TALLY_S3_SECRET_ACCESS_KEY": MOTO_SECRET_KEY,
        "TALLY_PROBES_PORT": str(probes_port := free_port()),
        "TALLY_BACKLOG_INTERVAL_S": "0.2",
    }
    probe = f"http://127.0.0.1:{probes_port}"
    async with Store.open(database) as store, await Bus.connect(amqp_url, topology) as bus:
        uploaded = await _uploaded(store, 1500, 1000)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tally_orchestrator",
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            assert process.stderr is not None

            async def ready() -> None:
                assert process.stderr is not None
                while line := await process.stderr.readline():
                    if b"orchestrator ready" in line:
                        return
                raise AssertionError("tally-orchestrator exited before it was ready")

            await asyncio.wait_for(ready(), 60)
            await bus.publish(topology.photo_uploaded, uploaded)
            channel = await bus.connection.channel()
            queue = await channel.get_queue(topology.chunks_queue.name, ensure=False)
            async with queue.iterator(timeout=30) as messages:
                async for message in messages:
                    await message.ack()
                    assert decode(message, DetectChunk).job == uploaded.job
                    break
            async with httpx.AsyncClient(base_url=probe) as http:
                ready_now = await http.get("/readyz")
                assert ready_now.status_code == 200
                assert ready_now.json()["checks"] == {
                    "started": True,
                    "running": True,
                    "database": True,
                    "bus": True,
                }
                # The backlog: the photo's planned slices wait (a chunk was taken, not
                # detected), and nothing has been detected in the last minute.
                job = await _records.get_job(
                    store, uuid.UUID(uploaded.job.tenant_id), uuid.UUID(uploaded.job.job_id)
                )
                assert job is not None
                pending = f"tally_pending_slices {float(job.total)}"

                async def metrics_show_the_backlog() -> str:
                    text = (await http.get("/metrics")).text
                    return text if pending in text else ""

                metrics = await eventually_async(
                    metrics_show_the_backlog, 10, what=f"{pending!r} in /metrics"
                )
                assert "tally_expected_drain_seconds +Inf" in metrics
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())
