"""A session's wait folded into the Redis projection (real Redis), and what polling shows of it:
a change that counts is a visible change (a rev, the jobs' snapshots and the summary on the
stream); a smaller one, an older one, a job already final or not folded yet change nothing."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from tally_contracts import projection as redis_keys
from tally_contracts.v1 import JobEvent, JobRef, SessionWait
from tally_gateway._views import job_from_projection, summary_from_session
from tally_projector.projection import Projection

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


def _stamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


async def _planned(projection: Projection, job: JobRef) -> None:
    for sequence, kind in enumerate(
        (
            {"queued": JobEvent.Queued(image_id="i", filename="a.jpg", width=2000, height=1500)},
            {"planned": JobEvent.Planned(total_slices=20, chunk_count=2)},
        ),
        start=1,
    ):
        await projection.fold(
            JobEvent(
                event_id=f"{job.job_id}-{sequence}",
                job=job,
                sequence=sequence,
                emitted_at=_stamp(T0),
                source="test",
                **kind,  # type: ignore[arg-type]
            )
        )


def _wait(seconds: float | None, reason: str = "") -> SessionWait.Wait:
    if seconds is None:
        return SessionWait.Wait(reason=reason)
    return SessionWait.Wait(seconds=seconds, low=seconds * 0.8, high=seconds * 1.25)


def _message(
    session: JobRef, at: datetime, session_s: float | None, jobs: Mapping[str, float | None]
) -> SessionWait:
    reason = "no_detector"
    return SessionWait(
        session=JobRef(tenant_id=session.tenant_id, session_id=session.session_id),
        estimated_at=_stamp(at),
        wait=_wait(session_s, reason),
        jobs=[SessionWait.JobWait(job_id=j, wait=_wait(s, reason)) for j, s in jobs.items()],
    )


async def _stream(projection: Projection, session_id: str) -> list[str]:
    entries: Any = await projection.redis.xrange(redis_keys.session_events_key(session_id))
    return [fields[b"type"].decode() for _, fields in entries]


async def test_a_wait_that_counts_shows_on_the_session_and_its_jobs(
    projection: Projection,
) -> None:
    tenant, session = str(uuid.uuid4()), str(uuid.uuid4())
    first, second = (
        JobRef(tenant_id=tenant, session_id=session, job_id=str(uuid.uuid4())) for _ in "ab"
    )
    for job in (first, second):
        await _planned(projection, job)
    before = await _stream(projection, session)
    rev = int((await projection.session(session))["rev"])

    waits = {first.job_id: 10.0, second.job_id: 30.0}
    assert await projection.wait(_message(first, T0, 30.0, waits)) == 3
    assert (await _stream(projection, session))[len(before) :] == ["job", "job", "summary"]
    fields = await projection.session(session)
    assert int(fields["rev"]) == rev + 1  # one visible change
    summary = summary_from_session(fields)
    assert summary["eta_seconds"] == 30.0
    assert summary["eta_range"] == [24.0, 37.5]
    assert summary["eta_reason"] is None
    assert summary["eta_at"] == T0.isoformat()
    shown = job_from_projection(await projection.job(second.job_id))
    assert (shown["status"], shown["eta_seconds"], shown["eta_range"]) == (
        "queued",
        30.0,
        [24.0, 37.5],
    )
    assert shown["revision"] == rev + 1

    # 5 s later the same wait, counted down: nothing worth showing changed.
    later = {first.job_id: 5.2, second.job_id: 25.3}
    assert await projection.wait(_message(first, T0 + timedelta(seconds=5), 25.3, later)) == 0
    # An older estimate, arriving late, changes nothing either.
    assert await projection.wait(_message(first, T0 - timedelta(seconds=1), 90.0, waits)) == 0
    assert summary_from_session(await projection.session(session))["eta_seconds"] == 30.0

    # A second tenant arrived: the waits double. Every one changed enough to show.
    doubled = {first.job_id: 20.0, second.job_id: 60.0}
    assert await projection.wait(_message(first, T0 + timedelta(seconds=6), 60.0, doubled)) == 3
    assert summary_from_session(await projection.session(session))["eta_seconds"] == 60.0

    # The detectors are gone: no figure, the reason instead.
    gone: dict[str, float | None] = {first.job_id: None, second.job_id: None}
    assert await projection.wait(_message(first, T0 + timedelta(seconds=8), None, gone)) == 3
    summary = summary_from_session(await projection.session(session))
    assert (summary["eta_seconds"], summary["eta_range"]) == (None, None)
    assert summary["eta_reason"] == "no_detector"
    shown = job_from_projection(await projection.job(first.job_id))
    assert (shown["eta_seconds"], shown["eta_reason"]) == (None, "no_detector")


async def test_final_unknown_and_unfolded_jobs_and_sessions_are_left_alone(
    projection: Projection,
) -> None:
    tenant, session = str(uuid.uuid4()), str(uuid.uuid4())
    done = JobRef(tenant_id=tenant, session_id=session, job_id=str(uuid.uuid4()))
    await _planned(projection, done)
    await projection.fold(
        JobEvent(
            event_id="c",
            job=done,
            sequence=2**62,
            emitted_at=_stamp(T0),
            source="test",
            cancelled=JobEvent.Cancelled(reason="x"),
        )
    )
    unknown = str(uuid.uuid4())
    assert await projection.wait(_message(done, T0, 10.0, {done.job_id: 10.0, unknown: 5.0})) == 0
    assert not await projection.redis.exists(redis_keys.job_key(unknown))  # not made up
    summary = summary_from_session(await projection.session(session))
    assert (summary["eta_seconds"], summary["eta_range"]) == (0.0, [0.0, 0.0])  # finished
    assert job_from_projection(await projection.job(done.job_id))["eta_seconds"] is None

    elsewhere = JobRef(tenant_id=tenant, session_id=str(uuid.uuid4()), job_id=unknown)
    assert await projection.wait(_message(elsewhere, T0, 10.0, {unknown: 10.0})) == 0
    assert not await projection.redis.exists(redis_keys.session_key(elsewhere.session_id))
