"""Rebuilding the Redis projection from PostgreSQL, the system of record.

Each job's history is re-told as the events that lead to its recorded state and folded like any
other events: idempotent, so a rebuild over a live projection changes nothing that is newer.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from tally_contracts import sequence
from tally_contracts.events import job_event
from tally_contracts.statuses import JobStatus
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Store
from tally_projector._records import RecordedJob, jobs_for_rebuild
from tally_projector.projection import JOB_TTL_S, Projection


def history(recorded: RecordedJob) -> list[JobEvent]:
    """The events that bring a job to its recorded state. Pure."""
    job, result = recorded.job, recorded.result
    ref = JobRef(tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id))

    def event(seq: int, moment: datetime | None, **kind: Any) -> JobEvent:
        # Stable ids: the same history told twice is the same events.
        return job_event(ref, seq, "rebuild", at=moment, event_id=f"rebuild-{job.id}-{seq}", **kind)

    events = [
        event(
            sequence.QUEUED,
            job.created_at,
            queued=JobEvent.Queued(
                image_id=str(job.image_id),
                filename=job.filename,
                width=job.width,
                height=job.height,
            ),
        )
    ]
    if job.total:
        events.append(
            event(
                sequence.PLANNED,
                job.created_at,
                planned=JobEvent.Planned(total_slices=job.total, chunk_count=job.chunk_count),
            )
        )
    if job.status == JobStatus.PROCESSING:
        events.append(
            event(
                sequence.progress(max(recorded.chunks_done, 1)),
                job.updated_at,
                progress=JobEvent.Progress(slices_done=job.processed, total_slices=job.total),
            )
        )
    elif job.status == JobStatus.COMPLETED and result is not None:
        events.append(
            event(
                sequence.FINAL,
                job.completed_at,
                completed=JobEvent.Completed(
                    counts=result.counts,
                    detections=result.detections,
                    result_key=result.object_key,
                    warnings=list(job.warnings),
                ),
            )
        )
    elif job.status == JobStatus.FAILED:
        events.append(
            event(
                sequence.FINAL,
                job.completed_at,
                failed=JobEvent.Failed(
                    code=job.error_code or "failed", message=job.error_message or ""
                ),
            )
        )
    elif job.status == JobStatus.CANCELLED:
        events.append(
            event(
                sequence.FINAL,
                job.completed_at,
                cancelled=JobEvent.Cancelled(reason=job.error_message or ""),
            )
        )
    return events


async def rebuild(store: Store, projection: Projection, hours: float = JOB_TTL_S / 3600) -> int:
    """Fold the recorded history of every job updated in the last `hours`, tell the sessions'
    subscribers where the jobs it changed stand, then mark the projection whole; return how
    many jobs."""
    started = datetime.now(UTC)
    changed: dict[str, list[str]] = defaultdict(list)  # session → its jobs the rebuild changed
    jobs = await _fold_recorded(store, projection, started - timedelta(hours=hours), changed)
    # Jobs that moved on while we folded, once more: readers go back to Redis after this, and
    # it should not be behind what they last read from PostgreSQL. (Their events are on the
    # bus too; this only narrows the moment in between.)
    await _fold_recorded(store, projection, started - timedelta(seconds=1), changed)
    for session_id, job_ids in changed.items():
        await projection.announce(session_id, dict.fromkeys(job_ids))
    await projection.mark_ready()
    return jobs


async def _fold_recorded(
    store: Store, projection: Projection, since: datetime, changed: dict[str, list[str]]
) -> int:
    """Fold the history of the jobs updated since `since`, quietly (no stream entries); note
    in `changed` the jobs it changed."""
    jobs = await jobs_for_rebuild(store, since)
    for recorded in jobs:
        folded = [await projection.fold(event, rebuilding=True) for event in history(recorded)]
        if any(folded):
            changed[str(recorded.job.session_id)].append(str(recorded.job.id))
    return len(jobs)


__all__ = ["history", "rebuild"]
