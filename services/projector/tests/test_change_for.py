"""The fold's meaning of each event, and the histories a rebuild tells: pure, no Redis."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tally_contracts import sequence
from tally_contracts.events import job_event
from tally_contracts.statuses import ACTIVE, FINAL, JobStatus
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Job
from tally_projector._records import RecordedJob, RecordedResult
from tally_projector.projection import Change, change_for
from tally_projector.rebuild import history

AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
REF = JobRef(tenant_id="t1", session_id="s1", job_id="j1")
WHO = {"job_id": "j1", "session_id": "s1", "tenant_id": "t1"}


def _change(seq: int, **kind: Any) -> Change:
    return change_for(job_event(REF, seq, "test", at=AT, **kind))


def test_queued_tells_the_photo_and_when_it_was_created() -> None:
    change = _change(
        sequence.QUEUED,
        queued=JobEvent.Queued(image_id="i1", filename="tray.jpg", width=4000, height=3000),
    )
    assert change.status == JobStatus.QUEUED
    assert change.facts == WHO | {
        "image_id": "i1",
        "filename": "tray.jpg",
        "width": "4000",
        "height": "3000",
        "created_at": AT.isoformat(),
    }
    assert change.state == {"updated_at": AT.isoformat(), "phase": "queued"}
    assert change.maxima == {}


def test_planned_tells_the_size_and_stays_queued() -> None:
    change = _change(sequence.PLANNED, planned=JobEvent.Planned(total_slices=88, chunk_count=3))
    assert change.status == JobStatus.QUEUED
    assert change.facts == WHO | {"total": "88", "chunk_count": "3"}
    assert change.state["phase"] == "planned"


def test_started_and_progress_are_processing_and_slices_done_only_grow() -> None:
    started = _change(sequence.STARTED, started=JobEvent.Started(chunk_index=2))
    assert started.status == JobStatus.PROCESSING
    assert started.facts == WHO | {"started_at": AT.isoformat()}
    assert started.state["phase"] == "detecting"
    progress = _change(
        sequence.progress(2), progress=JobEvent.Progress(slices_done=44, total_slices=88)
    )
    assert progress.status == JobStatus.PROCESSING
    assert progress.facts == WHO | {"total": "88", "started_at": AT.isoformat()}
    assert progress.maxima == {"processed": "44"}  # a maximum, not state: any order ends right
    assert "processed" not in progress.state


def test_completed_carries_the_counts_result_and_warnings() -> None:
    change = _change(
        sequence.FINAL,
        completed=JobEvent.Completed(
            counts={"weed": 1, "seedling": 7},
            detections=8,
            result_key="t1/s1/j1/result.json",
            warnings=["no_detections"],
        ),
    )
    assert change.status == JobStatus.COMPLETED
    assert change.facts == WHO
    assert change.state == {
        "updated_at": AT.isoformat(),
        "phase": "done",
        "completed_at": AT.isoformat(),
        "counts": '{"seedling": 7, "weed": 1}',  # sorted: the same counts, the same text
        "detections": "8",
        "result_key": "t1/s1/j1/result.json",
        "warnings": '["no_detections"]',
    }


def test_failed_and_cancelled_are_done_with_their_reason() -> None:
    failed = _change(sequence.FINAL, failed=JobEvent.Failed(code="x", message="boom"))
    assert failed.status == JobStatus.FAILED
    assert failed.state == {
        "updated_at": AT.isoformat(),
        "phase": "done",
        "completed_at": AT.isoformat(),
        "error_code": "x",
        "error_message": "boom",
    }
    cancelled = _change(sequence.FINAL, cancelled=JobEvent.Cancelled(reason="asked"))
    assert cancelled.status == JobStatus.CANCELLED
    assert cancelled.state == {
        "updated_at": AT.isoformat(),
        "phase": "done",
        "completed_at": AT.isoformat(),
    }


def test_only_the_final_kinds_end_in_a_final_status() -> None:
    kinds: dict[str, dict[str, Any]] = {
        "queued": {"queued": JobEvent.Queued()},
        "planned": {"planned": JobEvent.Planned()},
        "started": {"started": JobEvent.Started()},
        "progress": {"progress": JobEvent.Progress()},
        "completed": {"completed": JobEvent.Completed()},
        "failed": {"failed": JobEvent.Failed()},
        "cancelled": {"cancelled": JobEvent.Cancelled()},
    }
    final = {name for name, kind in kinds.items() if _change(1, **kind).status in FINAL}
    active = {name for name, kind in kinds.items() if _change(1, **kind).status in ACTIVE}
    assert final == {"completed", "failed", "cancelled"}
    assert active == {"queued", "planned", "started", "progress"}


def test_an_event_without_a_kind_has_no_meaning() -> None:
    with pytest.raises(ValueError, match="without a kind"):
        change_for(job_event(REF, 1, "test", event_id="e0"))


def test_an_event_without_a_time_is_stamped_now() -> None:
    event = JobEvent(event_id="e1", job=REF, sequence=sequence.STARTED, started=JobEvent.Started())
    stamped = datetime.fromisoformat(change_for(event).state["updated_at"])
    assert abs(stamped - datetime.now(UTC)) < timedelta(seconds=5)


def _job(status: str, *, total: int = 88, processed: int = 0) -> Job:
    return Job(
        id=uuid.UUID(int=1),
        tenant_id=uuid.UUID(int=2),
        session_id=uuid.UUID(int=3),
        image_id=uuid.UUID(int=4),
        filename="tray.jpg",
        object_key="k/original.jpg",
        width=4000,
        height=3000,
        status=status,
        phase="",
        processed=processed,
        total=total,
        chunk_count=2 if total else 0,
        error_code="image_unreadable" if status == "failed" else None,
        error_message="chunk 0: truncated" if status in ("failed", "cancelled") else None,
        warnings=[],
        created_at=AT,
        started_at=None,
        completed_at=AT + timedelta(minutes=1) if status in FINAL else None,
        updated_at=AT + timedelta(seconds=30),
    )


def _fold(events: list[JobEvent]) -> dict[str, str]:
    """Each event applied by sequence, as the projection does (facts once, newest state)."""
    state: dict[str, str] = {}
    for event in sorted(events, key=lambda e: e.sequence):
        change = change_for(event)
        for name, value in change.facts.items():
            state.setdefault(name, value)
        state |= change.maxima | change.state | {"status": change.status}
    return state


@pytest.mark.parametrize(
    ("recorded", "kinds", "status"),
    [
        (RecordedJob(_job("queued", total=0), None, 0), ["queued"], "queued"),
        (RecordedJob(_job("queued"), None, 0), ["queued", "planned"], "queued"),
        (
            RecordedJob(_job("processing", processed=44), None, 1),
            ["queued", "planned", "progress"],
            "processing",
        ),
        (
            RecordedJob(_job("completed"), RecordedResult({"seedling": 7}, 7, "k/result.json"), 2),
            ["queued", "planned", "completed"],
            "completed",
        ),
        (RecordedJob(_job("failed"), None, 1), ["queued", "planned", "failed"], "failed"),
        (RecordedJob(_job("cancelled"), None, 0), ["queued", "planned", "cancelled"], "cancelled"),
    ],
    ids=["unplanned", "planned", "processing", "completed", "failed", "cancelled"],
)
def test_a_rebuild_retells_each_recorded_job_in_sequence_to_its_status(
    recorded: RecordedJob, kinds: list[str], status: str
) -> None:
    events = history(recorded)
    assert [e.WhichOneof("kind") for e in events] == kinds
    sequences = [e.sequence for e in events]
    assert sequences == sorted(set(sequences))  # strictly in order
    assert all(e.source == "rebuild" for e in events)
    assert [e.event_id for e in events] == [e.event_id for e in history(recorded)]  # stable
    state = _fold(events)
    assert state["status"] == status
    assert state["filename"] == "tray.jpg"
    assert state["created_at"] == AT.isoformat()
    if status == "processing":
        assert state["processed"] == "44"
        assert events[-1].sequence == sequence.progress(1)
    if status == "completed":
        assert json.loads(state["counts"]) == {"seedling": 7}
        assert state["result_key"] == "k/result.json"
    if status == "failed":
        assert state["error_message"] == "chunk 0: truncated"
