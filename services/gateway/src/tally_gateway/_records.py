"""The gateway's SQL: its reads of PostgreSQL (the system of record, behind the projection) and
its one write, the deletion of a finished job. Every query is scoped by tenant."""

from __future__ import annotations

import json
import uuid
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
