"""What the projector reads of PostgreSQL, the system of record: the jobs to rebuild from."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from tally_db import Job, Store, job_from_row


@dataclass(frozen=True, slots=True)
class RecordedResult:
    counts: dict[str, int]
    detections: int
    object_key: str  # result.json in the object store


@dataclass(frozen=True, slots=True)
class RecordedJob:
    job: Job
    result: RecordedResult | None  # once completed
    chunks_done: int  # chunk results recorded


async def jobs_for_rebuild(store: Store, since: datetime) -> list[RecordedJob]:
    """Every tenant's jobs updated since `since`, with their result (if any) and the number of
    chunks recorded: what a rebuild re-tells. An operator's read, across tenants."""
    rows = await store.pool.fetch(
        """SELECT j.*, r.counts AS result_counts, r.detections AS result_detections,
                  r.object_key AS result_key,
                  (SELECT count(*) FROM chunk_results c WHERE c.job_id = j.id) AS chunks_done
           FROM jobs j LEFT JOIN results r ON r.job_id = j.id
           WHERE j.updated_at >= $1 ORDER BY j.created_at, j.id""",
        since,
    )
    return [
        RecordedJob(
            job_from_row(r),
            None
            if r["result_key"] is None
            else RecordedResult(
                json.loads(r["result_counts"]), r["result_detections"], r["result_key"]
            ),
            int(r["chunks_done"]),
        )
        for r in rows
    ]
