"""The shared rules: job statuses mirror the proto enum; one builder makes every JobEvent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tally_contracts.events import job_event
from tally_contracts.statuses import ACTIVE, FINAL, STATUSES, JobStatus
from tally_contracts.v1 import JobEvent, JobRef
from tally_contracts.v1 import JobStatus as ProtoJobStatus


def test_the_statuses_are_the_proto_enum() -> None:
    names = [n.removeprefix("JOB_STATUS_") for n in ProtoJobStatus.keys()]  # noqa: SIM118
    assert names[0] == "UNSPECIFIED"
    assert [s.name for s in STATUSES] == names[1:]
    for status in STATUSES:
        assert JobStatus.from_proto(status.to_proto()) is status


def test_final_and_active_split_the_statuses() -> None:
    assert set(STATUSES) == FINAL | ACTIVE
    assert not FINAL & ACTIVE
    assert {s.value for s in ACTIVE} == {"queued", "processing"}
    assert JobStatus.CANCELLED.final
    assert not JobStatus.QUEUED.final
    assert JobStatus("failed") == "failed"  # the database's and the API's names


def test_unspecified_is_no_status() -> None:
    with pytest.raises(ValueError, match="must be given"):
        JobStatus.from_proto(ProtoJobStatus.Value("JOB_STATUS_UNSPECIFIED"))


def test_an_event_has_a_fresh_id_and_the_moment_given() -> None:
    ref = JobRef(tenant_id="t", session_id="s", job_id="j")
    at = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    one = job_event(ref, 3, "detector", at=at, started=JobEvent.Started(chunk_index=2))
    two = job_event(ref, 3, "detector", started=JobEvent.Started(chunk_index=2))
    assert one.event_id != two.event_id
    assert len(one.event_id) == 32
    assert one.emitted_at.ToDatetime(UTC) == at
    assert one.WhichOneof("kind") == "started"
    assert one.source == "detector"
    assert job_event(ref, 1, "rebuild", event_id="rebuild-j-1").event_id == "rebuild-j-1"
