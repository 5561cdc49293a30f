"""The Redis projection on a real Redis: atomic, idempotent, order-independent, never leaving a
final status; checked against a reference fold by sequence with hypothesis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from typing import Any, cast

import aio_pika
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from redis.asyncio import Redis

from tally_bus import Bus, Topology
from tally_contracts import projection as redis_keys
from tally_contracts import sequence, statuses
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Store
from tally_orchestrator._records import Records
from tally_projector.config import Settings
from tally_projector.deps import Deps
from tally_projector.handlers import handle_job_event
from tally_projector.projection import (
    ANNOUNCE_BATCH,
    Projection,
    ProjectionLostError,
    change_for,
)
from tally_projector.rebuild import rebuild
from tally_upload._records import NewJob, add_jobs

pytestmark = pytest.mark.integration
REDIS_URL = os.environ.get("TALLY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
FINAL = 2**62
StreamReply = list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]


def _events(job: JobRef, progress_steps: int, final: str) -> list[JobEvent]:
    """A job's full, well-ordered event history."""
    stamp = Timestamp()
    stamp.FromSeconds(1_790_000_000)

    def event(sequence: int, **kind: Any) -> JobEvent:
        return JobEvent(
            event_id=f"e{sequence}",
            job=job,
            sequence=sequence,
            emitted_at=stamp,
            source="test",
            **kind,
        )

    history = [
        event(
            1, queued=JobEvent.Queued(image_id="i", filename="tray.jpg", width=4000, height=3000)
        ),
        event(2, planned=JobEvent.Planned(total_slices=88, chunk_count=progress_steps)),
    ]
    for step in range(1, progress_steps + 1):
        done = 88 * step // progress_steps
        history.append(
            event(2 + step, progress=JobEvent.Progress(slices_done=done, total_slices=88))
        )
    if final == "completed":
        history.append(
            event(FINAL, completed=JobEvent.Completed(counts={"seedling": 5}, detections=5))
        )
    elif final == "failed":
        history.append(event(FINAL, failed=JobEvent.Failed(code="x", message="boom")))
    return history


def reference(events: list[JobEvent]) -> dict[str, str]:
    """The state a job reaches when exactly these events are applied once each, by sequence."""
    state: dict[str, str] = {}
    for event in sorted({e.sequence: e for e in events}.values(), key=lambda e: e.sequence):
        change = change_for(event)
        for name, value in change.facts.items():
            state.setdefault(name, value)
        for name, value in change.maxima.items():
            state[name] = str(max(int(value), int(state.get(name, "0"))))
        if state.get("status") not in statuses.FINAL:
            state |= change.state | {"status": change.status, "seq": str(event.sequence)}
    if state["status"] == "completed":
        state["processed"] = state.get("total", "0")
    return state


@pytest.fixture(scope="module")
def redis_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


def _job() -> JobRef:
    return JobRef(
        tenant_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), job_id=str(uuid.uuid4())
    )


async def test_a_job_moves_through_its_statuses_and_the_session_counts_follow(
    projection: Projection,
) -> None:
    job = _job()
    history = _events(job, 3, "completed")
    for event in history[:3]:
        assert await projection.fold(event)
    state = await projection.job(job.job_id)
    assert (state["status"], state["processed"], state["total"]) == ("processing", "29", "88")
    summary = await projection.session(job.session_id)
    assert (summary["total"], summary["processing"], summary["queued"]) == ("1", "1", "0")
    for event in history[3:]:
        await projection.fold(event)
    state = await projection.job(job.job_id)
    assert state["status"] == "completed"
    assert json.loads(state["counts"]) == {"seedling": 5}
    summary = await projection.session(job.session_id)
    assert (summary["completed"], summary["processing"]) == ("1", "0")
    assert (summary["slices_done"], summary["slices_total"]) == ("88", "88")
    stream: Any = await projection.redis.xrange(redis_keys.session_events_key(job.session_id))
    kinds = [fields[b"type"].decode() for _, fields in stream]
    assert kinds == ["job", "summary"] * len(history) + ["done"]  # each event changed the job
    last = await projection.session(job.session_id)
    assert last["last_event_id"] == stream[-1][0].decode()
    entries = await projection.redis.lrange(redis_keys.job_log_key(job.job_id), 0, -1)
    log = [json.loads(e) for e in entries]
    assert [e["event"] for e in log] == [
        "completed",
        "progress",
        "progress",
        "progress",
        "planned",
        "queued",
    ]
    assert log[1]["message"] == "88 of 88 slices"


async def test_a_deleted_job_leaves_its_session_and_stays_gone(projection: Projection) -> None:
    """Two jobs of a session; one is deleted: the session counts only the other, the stream
    tells subscribers, and events of the deleted job arriving late (or again) change nothing."""
    kept, gone = _job(), _job()
    gone.session_id = kept.session_id
    gone.tenant_id = kept.tenant_id
    for job in (kept, gone):
        for event in _events(job, 2, "completed"):
            await projection.fold(event)
    deleted = JobEvent(event_id="d", job=gone, sequence=sequence.DELETED, source="gateway")
    deleted.deleted.SetInParent()

    assert await projection.fold(deleted)
    assert not await projection.fold(deleted)  # again: gone already
    for event in _events(gone, 2, "completed"):  # late and redelivered events
        assert not await projection.fold(event)

    assert await projection.job(gone.job_id) == {}
    summary = await projection.session(kept.session_id)
    assert (summary["total"], summary["completed"]) == ("1", "1")
    assert (summary["slices_done"], summary["slices_total"], summary["jobs_planned"]) == (
        "88",
        "88",
        "1",
    )
    members: Any = await projection.redis.zrange(
        redis_keys.session_order_key(kept.session_id), 0, -1
    )
    assert [redis_keys.order_member_job(m.decode()) for m in members] == [kept.job_id]
    # The deletion is the session's last change: a delta since before it tells it.
    changes = await projection.redis.zrange(
        redis_keys.session_changes_key(kept.session_id), 0, -1, withscores=True
    )
    assert changes[-1] == (gone.job_id.encode(), float(summary["rev"]))
    stream: Any = await projection.redis.xrange(redis_keys.session_events_key(kept.session_id))
    (_, tail), (last_id, last) = stream[-2], stream[-1]
    assert (tail[b"type"], tail[b"job_id"]) == (b"deleted", gone.job_id.encode())
    assert last[b"type"] == b"summary"
    assert summary["last_event_id"] == last_id.decode()


async def test_a_job_cancelled_before_any_slice_is_deleted_too(projection: Projection) -> None:
    """A job cancelled while queued (nothing planned, no slice done) is deleted like any other
    (the fold once failed on it: Lua's -0 is no integer to HINCRBY, and the job stayed)."""
    kept, gone = _job(), _job()
    gone.session_id = kept.session_id
    gone.tenant_id = kept.tenant_id
    for event in _events(kept, 2, "completed"):
        await projection.fold(event)
    queued, *_ = _events(gone, 0, "")
    await projection.fold(queued)
    cancelled = JobEvent(event_id="c", job=gone, sequence=FINAL, source="orchestrator")
    cancelled.cancelled.reason = "cancelled on request"
    assert await projection.fold(cancelled)
    deleted = JobEvent(event_id="d", job=gone, sequence=sequence.DELETED, source="gateway")
    deleted.deleted.SetInParent()

    assert await projection.fold(deleted)
    assert await projection.job(gone.job_id) == {}
    summary = await projection.session(kept.session_id)
    assert (summary["total"], summary["completed"], summary["cancelled"]) == ("1", "1", "0")
    assert (summary["slices_done"], summary["slices_total"]) == ("88", "88")


async def test_a_final_status_is_never_left(projection: Projection) -> None:
    job = _job()
    history = _events(job, 2, "failed")
    for event in [history[0], history[-1], *history[1:-1], history[0]]:
        await projection.fold(event)
    state = await projection.job(job.job_id)
    assert (state["status"], state["error_code"], state["filename"]) == ("failed", "x", "tray.jpg")


async def test_keys_expire_as_the_design_says(projection: Projection) -> None:
    job = _job()
    await projection.fold(_events(job, 1, "none")[0])
    redis = projection.redis
    assert 47 * 3600 < await redis.ttl(redis_keys.job_key(job.job_id)) <= 48 * 3600
    assert 23 * 3600 < await redis.ttl(redis_keys.session_key(job.session_id)) <= 24 * 3600


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    data=st.data(), steps=st.integers(1, 6), final=st.sampled_from(["completed", "failed", "none"])
)
def test_duplicates_reordering_and_drops_end_where_the_reference_fold_does(
    redis_loop: asyncio.AbstractEventLoop, data: st.DataObject, steps: int, final: str
) -> None:
    job = _job()
    history = _events(job, steps, final)
    delivered = data.draw(st.lists(st.sampled_from(history), min_size=1, max_size=3 * len(history)))

    async def fold_all() -> tuple[dict[str, str], dict[str, str]]:
        redis = Redis.from_url(REDIS_URL)
        try:
            projection = Projection(redis)
            await projection.mark_ready()
            for event in delivered:
                await projection.fold(event)
            return await projection.job(job.job_id), await projection.session(job.session_id)
        finally:
            touched = redis_keys.fold_keys(job.tenant_id, job.session_id, job.job_id)
            await redis.delete(*(key for key in touched if key != redis_keys.READY_KEY))
            await redis.aclose()

    state, summary = redis_loop.run_until_complete(fold_all())
    expected = reference(delivered)
    # Besides the reference's fields: its place in the session, and the rev of its last change
    # (the session's own: it has no other job).
    order, rev = state.pop("order"), state.pop("rev")
    assert state == expected
    assert redis_keys.order_member_job(order) == job.job_id
    assert rev == summary["rev"]
    assert summary["total"] == "1"
    assert summary[expected["status"]] == "1"
    assert summary["slices_done"] == expected.get("processed", "0")


async def test_the_service_folds_events_from_the_bus_and_stops_on_sigterm(
    amqp_url: str, database: str
) -> None:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    env = {
        **os.environ,
        "TALLY_AMQP_URL": amqp_url,
        "TALLY_BUS_PREFIX": topology.prefix,
        "TALLY_REDIS_URL": REDIS_URL,
        "TALLY_DATABASE_URL": database,
    }
    job = _job()
    redis = Redis.from_url(REDIS_URL)
    async with await Bus.connect(amqp_url, topology) as bus:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tally_projector", env=env, stderr=asyncio.subprocess.PIPE
        )
        try:

            async def ready() -> None:
                assert process.stderr is not None
                while line := await process.stderr.readline():
                    if b"projector ready" in line:
                        return
                raise AssertionError("tally-projector exited before it was ready")

            await asyncio.wait_for(ready(), 60)
            for event in _events(job, 2, "completed"):
                await bus.publish(topology.job_event, event)

            async def completed() -> None:
                # The session's event stream says when the fold happened: block on it.
                stream, last = redis_keys.session_events_key(job.session_id), b"0"
                while True:
                    reply = cast(StreamReply, await redis.xread({stream: last}, block=5000))
                    for _, entries in reply:
                        for entry_id, fields in entries:
                            last = entry_id
                            if fields.get(b"status") == b"completed":
                                return

            await asyncio.wait_for(completed(), 30)
            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), 30) == 0
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
            await redis.aclose()
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())


async def test_a_big_sessions_rebuilt_jobs_are_told_in_batches_then_its_summary(
    projection: Projection,
) -> None:
    """250 rebuilt jobs: every one's state on the stream, in calls of at most ANNOUNCE_BATCH
    jobs (none holds Redis long), then one summary and `done`, after the last job only."""
    first = _job()
    jobs = [first] + [
        JobRef(tenant_id=first.tenant_id, session_id=first.session_id, job_id=str(uuid.uuid4()))
        for _ in range(249)
    ]
    for job in jobs:
        for event in _events(job, 1, "completed"):
            await projection.fold(event, rebuilding=True)
    await projection.announce(first.session_id, [job.job_id for job in jobs])
    stream: Any = await projection.redis.xrange(redis_keys.session_events_key(first.session_id))
    kinds = [fields[b"type"] for _, fields in stream]
    assert kinds == [b"job"] * 250 + [b"summary", b"done"]
    told = {fields[b"job_id"].decode() for _, fields in stream[:250]}
    assert told == {job.job_id for job in jobs}
    assert ANNOUNCE_BATCH < 250


async def test_the_projection_is_rebuilt_from_postgresql(
    projection: Projection, database: str
) -> None:
    async with Store.open(database) as store:
        tenant = await store.create_tenant("t")
        session = await store.create_session(tenant.id)
        records = Records(store, Topology())
        done, failed, busy, waiting = await add_jobs(
            store,
            [
                NewJob(tenant.id, session.id, f"{n}.jpg", f"k/{n}/original.jpg", 4000, 3000)
                for n in ("done", "failed", "busy", "waiting")
            ],
            [],
        )
        for job in (done, failed, busy):
            await records.plan_job(tenant.id, job.id, 88, 2, [])
        await records.record_chunk(tenant.id, busy.id, 0, 44, b"")
        await records.complete_job(
            tenant.id, done.id, {"seedling": 7}, 7, "k/done/result.json", [], []
        )
        await records.fail_job(tenant.id, failed.id, "image_unreadable", "chunk 0: truncated", [])

        assert await rebuild(store, projection) == 4
        states = {
            j.filename: await projection.job(str(j.id)) for j in (done, failed, busy, waiting)
        }
        assert {name: s["status"] for name, s in states.items()} == {
            "done.jpg": "completed",
            "failed.jpg": "failed",
            "busy.jpg": "processing",
            "waiting.jpg": "queued",
        }
        assert json.loads(states["done.jpg"]["counts"]) == {"seedling": 7}
        assert states["busy.jpg"]["processed"] == "44"
        assert states["failed.jpg"]["error_message"] == "chunk 0: truncated"
        summary = await projection.session(str(session.id))
        assert (summary["total"], summary["completed"], summary["processing"]) == ("4", "1", "1")

        await rebuild(store, projection)  # again: nothing changes
        assert await projection.session(str(session.id)) == summary


async def test_a_projection_of_the_layout_before_pages_is_rebuilt_with_every_job_in_order(
    projection: Projection, database: str
) -> None:
    """Redis as the projector before pages left it (its ready marker by its old name, jobs
    without their place, no order or change sets): the next event rebuilds it, and every job
    takes its place in its session's order."""
    settings = Settings(redis_url=SecretStr(REDIS_URL), database_url=SecretStr(database))
    async with Deps.open(settings) as deps:
        store, redis = deps.store, projection.redis
        tenant = await store.create_tenant("t")
        session = await store.create_session(tenant.id)
        jobs = await add_jobs(
            store,
            [
                NewJob(tenant.id, session.id, f"{n}.jpg", f"k/{n}/original.jpg", 4000, 3000)
                for n in range(3)
            ],
            [],
        )
        await rebuild(store, projection)
        for job in jobs:  # back to the old layout
            await redis.hdel(redis_keys.job_key(job.id), "order", "rev")
        await redis.hdel(redis_keys.session_key(session.id), "epoch", "rev")
        await redis.delete(
            redis_keys.session_order_key(session.id),
            redis_keys.session_changes_key(session.id),
            redis_keys.READY_KEY,
        )
        await redis.set("projection:ready", "1")
        ref = JobRef(tenant_id=str(tenant.id), session_id=str(session.id), job_id=str(jobs[0].id))
        cancelled = JobEvent(event_id="c", job=ref, sequence=sequence.FINAL, source="gateway")
        cancelled.cancelled.SetInParent()

        await handle_job_event(cancelled, deps)
        members: Any = await redis.zrange(redis_keys.session_order_key(session.id), 0, -1)
        assert [redis_keys.order_member_job(m.decode()) for m in members] == [
            str(job.id) for job in jobs
        ]
        assert (await projection.job(str(jobs[0].id)))["status"] == "cancelled"
        assert (await projection.session(str(session.id)))["epoch"]


async def test_a_wiped_projection_is_rebuilt_before_the_next_event_is_folded(
    projection: Projection, database: str
) -> None:
    settings = Settings(redis_url=SecretStr(REDIS_URL), database_url=SecretStr(database))
    async with Deps.open(settings) as deps:  # the service's own, on the same Redis
        store = deps.store
        tenant = await store.create_tenant("t")
        session = await store.create_session(tenant.id)
        records = Records(store, Topology())
        first, second = await add_jobs(
            store,
            [
                NewJob(tenant.id, session.id, f"{n}.jpg", f"k/{n}/original.jpg", 4000, 3000)
                for n in ("first", "second")
            ],
            [],
        )
        await records.plan_job(tenant.id, second.id, 88, 2, [])
        await records.record_chunk(tenant.id, second.id, 0, 44, b"")
        ref = JobRef(tenant_id=str(tenant.id), session_id=str(session.id), job_id=str(second.id))
        progress = JobEvent(
            event_id="p2",
            job=ref,
            sequence=sequence.progress(2),
            source="orchestrator",
            progress=JobEvent.Progress(slices_done=88, total_slices=88),
        )

        await projection.redis.flushdb()  # Redis loses everything, the marker with it
        with pytest.raises(ProjectionLostError):
            await projection.fold(progress)
        assert await projection.redis.dbsize() == 0  # a lost projection folds nothing

        await handle_job_event(progress, deps)
        assert await projection.is_ready()
        # Both jobs are back (not just the one the event was about), with the event applied.
        assert (await projection.job(str(first.id)))["filename"] == "first.jpg"
        state = await projection.job(str(second.id))
        assert (state["status"], state["processed"]) == ("processing", "88")
        assert (await projection.session(str(session.id)))["total"] == "2"
        # Subscribers hear where each job stands now, not its history retold from `queued`.
        stream: Any = await projection.redis.xrange(redis_keys.session_events_key(session.id))
        told = [
            (fields[b"job_id"].decode(), fields[b"status"].decode())
            for _, fields in stream
            if fields[b"type"] == b"job"
        ]
        assert told == [
            (str(first.id), "queued"),
            (str(second.id), "processing"),
            (str(second.id), "processing"),  # the progress event itself: 44 → 88 slices
        ]
