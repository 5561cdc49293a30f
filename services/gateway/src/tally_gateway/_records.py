"""The gateway's SQL: its reads of PostgreSQL (the system of record, behind the projection) and
its one write, the deletion of a finished job. Every query is scoped by tenant."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tally_bus import Route
from tally_contracts import sequence
from tally_contracts.events import job_event
from tally_contracts.statuses import FINAL, JobStatus
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import ConflictError, Job, OutboxEntry, Store, enqueue, job_from_row


async def get_job(store: Store, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
    row = await store.pool.fetchrow(
        "SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2", tenant_id, job_id
    )
    return None if row is None else job_from_row(row)


async def session_jobs(store: Store, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Job]:
    """The session's jobs, oldest first."""
    rows = await store.pool.fetch(
        """SELECT * FROM jobs WHERE tenant_id = $1 AND session_id = $2
           ORDER BY created_at, id""",
        tenant_id,
        session_id,
    )
    return [job_from_row(r) for r in rows]


async def list_jobs(
    store: Store,
    tenant_id: uuid.UUID,
    *,
    status: JobStatus | None = None,
    session_id: uuid.UUID | None = None,
    newest_first: bool = True,
    after: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> list[Job]:
    """A page of the tenant's jobs in creation order; `after` is the (created_at, id) of the
    previous page's last job (keyset pagination: stable while jobs are added)."""
    direction, compare = ("DESC", "<") if newest_first else ("ASC", ">")
    conditions: list[str] = ["tenant_id = $1"]
    args: list[object] = [tenant_id]
    if status is not None:
        args.append(str(status))
        conditions.append(f"status = ${len(args)}")
    if session_id is not None:
        args.append(session_id)
        conditions.append(f"session_id = ${len(args)}")
    if after is not None:
        args += [after[0], after[1]]
        conditions.append(f"(created_at, id) {compare} (${len(args) - 1}, ${len(args)})")
    args.append(limit)
    rows = await store.pool.fetch(
        f"""SELECT * FROM jobs WHERE {" AND ".join(conditions)}
            ORDER BY created_at {direction}, id {direction} LIMIT ${len(args)}""",
        *args,
    )
    return [job_from_row(r) for r in rows]


async def get_result(
    store: Store, tenant_id: uuid.UUID, job_id: uuid.UUID
) -> dict[str, Any] | None:
    """A completed job's result index: `counts` per label, the number of `detections` and the
    `object_key` of the full result; None until the job has completed."""
    row = await store.pool.fetchrow(
        "SELECT * FROM results WHERE tenant_id = $1 AND job_id = $2", tenant_id, job_id
    )
    if row is None:
        return None
    return {
        "counts": json.loads(row["counts"]),
        "detections": row["detections"],
        "object_key": row["object_key"],
    }


async def delete_job(
    store: Store, events: Route[JobEvent], tenant_id: uuid.UUID, job_id: uuid.UUID
) -> Job | None:
    """Delete a finished job and everything recorded of it (its result and chunks go with it:
    ON DELETE CASCADE), and queue its `deleted` JobEvent to `events`, in one transaction; return
    the job as it was. None when it is not this tenant's; ConflictError while it has not
    finished (cancel it first)."""
    async with store.transaction() as connection:
        row = await connection.fetchrow(
            "SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, job_id
        )
        if row is None:
            return None
        job = job_from_row(row)
        if job.status not in FINAL:
            raise ConflictError(f"job {job_id} is {job.status}: cancel it first")
        await connection.execute("DELETE FROM jobs WHERE id = $1", job_id)
        ref = JobRef(tenant_id=str(tenant_id), session_id=str(job.session_id), job_id=str(job_id))
        deleted = job_event(ref, sequence.DELETED, "gateway", deleted=JobEvent.Deleted())
        await enqueue(connection, [OutboxEntry.of(events, deleted)])
        return job


@dataclass(frozen=True, slots=True)
class Exported:
    """A job as an export reads it: the job, and once completed its result's index."""

    job: Job
    counts: dict[str, int] | None
    detections: int | None
    result_key: str | None


@dataclass(frozen=True, slots=True)
class ExportPlan:
    """What an export needs to know before it starts: how many jobs the session has (its
    price) and the labels its results have so far (the CSV's columns, COCO's categories)."""

    jobs: int
    labels: list[str]


async def export_plan(store: Store, tenant_id: uuid.UUID, session_id: uuid.UUID) -> ExportPlan:
    row = await store.pool.fetchrow(
        """SELECT
             (SELECT count(*) FROM jobs WHERE tenant_id = $1 AND session_id = $2) AS jobs,
             ARRAY(SELECT DISTINCT jsonb_object_keys(r.counts) AS label
                   FROM results r JOIN jobs j ON j.id = r.job_id
                   WHERE j.tenant_id = $1 AND j.session_id = $2
                   ORDER BY label) AS labels""",
        tenant_id,
        session_id,
    )
    assert row is not None
    return ExportPlan(row["jobs"], list(row["labels"]))


async def export_page(
    store: Store,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Exported]:
    """A page of the session's jobs, oldest first, each with its result's index; `after` is the
    (created_at, id) of the previous page's last job (keyset: one index range per page)."""
    args: list[object] = [tenant_id, session_id, limit]
    keyset = ""
    if after is not None:
        args += [after[0], after[1]]
        keyset = "AND (j.created_at, j.id) > ($4, $5)"
    rows = await store.pool.fetch(
        f"""SELECT j.*, r.counts AS result_counts, r.detections AS result_detections,
                   r.object_key AS result_key
            FROM jobs j LEFT JOIN results r ON r.job_id = j.id
            WHERE j.tenant_id = $1 AND j.session_id = $2 {keyset}
            ORDER BY j.created_at, j.id LIMIT $3""",
        *args,
    )
    return [
        Exported(
            job_from_row(row),
            None if row["result_counts"] is None else json.loads(row["result_counts"]),
            row["result_detections"],
            row["result_key"],
        )
        for row in rows
    ]
