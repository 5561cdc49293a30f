"""Webhook events, recorded in the transaction of the jobs' final transitions (the outbox of the
webhooks): an event is delivered if and only if its job's transition commits, by the sender
(tally_orchestrator.webhooks) that reads them back.

Nothing is recorded for a tenant without an enabled endpoint that asked for the event's type.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from tally_contracts.statuses import FINAL
from tally_contracts.webhooks import JOB_EVENT, NOTIFY_CHANNEL, EventType
from tally_db import Connection

_FINAL = sorted(s.value for s in FINAL)

_SUBSCRIBED = """SELECT DISTINCT unnest(events) FROM webhook_endpoints
                 WHERE tenant_id = $1 AND enabled"""
_JOBS = """SELECT j.*, r.counts, r.detections FROM jobs j
           LEFT JOIN results r ON r.job_id = j.id
           WHERE j.tenant_id = $1 AND j.id = ANY($2::uuid[])
           ORDER BY j.created_at, j.id"""
# Every job of the session final, counted after this transaction's own transitions; the
# session's row is locked first (FOR NO KEY UPDATE, which uploads' inserts of jobs do not wait
# for), so of two transactions ending a session's last two jobs at once the second counts
# after the first has committed, and exactly one of them sees the session complete.
_LOCK_SESSION = """SELECT name FROM sessions WHERE tenant_id = $1 AND id = $2
                   FOR NO KEY UPDATE"""
_SESSION_SUMMARY = """
    SELECT count(*) AS total,
           count(*) FILTER (WHERE status = 'completed') AS completed,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           count(*) FILTER (WHERE status <> ALL($3::text[])) AS open,
           max(completed_at) AS completed_at
    FROM jobs WHERE tenant_id = $1 AND session_id = $2"""
_SESSION_COUNTS = """
    SELECT c.key AS label, sum(c.value::bigint) AS n
    FROM results r JOIN jobs j ON j.id = r.job_id, jsonb_each_text(r.counts) c
    WHERE j.tenant_id = $1 AND j.session_id = $2
    GROUP BY c.key ORDER BY c.key"""
# The events, and a delivery of each to every enabled endpoint of the tenant that asked for it.
_INSERT = """
    WITH event AS (
        INSERT INTO webhook_events (id, tenant_id, type, body)
        SELECT e.id, $1, e.type, e.body
        FROM unnest($2::text[], $3::text[], $4::bytea[]) AS e(id, type, body)
        RETURNING id, type)
    INSERT INTO webhook_deliveries (id, endpoint_id, event_id, next_attempt_at)
    SELECT gen_random_uuid(), w.id, event.id, now()
    FROM event JOIN webhook_endpoints w
      ON w.tenant_id = $1 AND w.enabled AND event.type = ANY(w.events)"""


def event_id() -> str:
    """A `webhook-id`: unique, and without the `.` that delimits the signed content."""
    return f"msg_{uuid.uuid4().hex}"


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def body(event_type: EventType, timestamp: datetime, data: dict[str, Any]) -> bytes:
    """The event as sent (and signed): `{type, timestamp, data}`, compact JSON."""
    envelope = {"type": str(event_type), "timestamp": _time(timestamp), "data": data}
    return json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()


def job_data(row: asyncpg.Record) -> dict[str, Any]:
    """A job.* event's data: the job as it ended, with its counts when it completed."""
    counts = json.loads(row["counts"]) if row["counts"] is not None else {}
    return {
        "job_id": str(row["id"]),
        "session_id": str(row["session_id"]),
        "image_id": str(row["image_id"]),
        "filename": row["filename"],
        "status": row["status"],
        "counts": counts,
        "detections": row["detections"] or 0,
        "warnings": list(row["warnings"]),
        "error_code": row["error_code"],
        "error_message": row["error_message"],
        "created_at": _time(row["created_at"]),
        "completed_at": _time(row["completed_at"]),
        "result_url": f"/v1/jobs/{row['id']}/result" if row["status"] == "completed" else None,
    }


async def _session_event(
    connection: Connection, tenant_id: uuid.UUID, session_id: uuid.UUID
) -> tuple[EventType, datetime, dict[str, Any]] | None:
    """session.completed, when no job of the session is left unfinished."""
    name = await connection.fetchval(_LOCK_SESSION, tenant_id, session_id)
    summary = await connection.fetchrow(_SESSION_SUMMARY, tenant_id, session_id, _FINAL)
    if name is None or summary is None or summary["open"] or not summary["total"]:
        return None
    counts = await connection.fetch(_SESSION_COUNTS, tenant_id, session_id)
    completed_at: datetime = summary["completed_at"]
    data = {
        "session_id": str(session_id),
        "name": name,
        "summary": {k: int(summary[k]) for k in ("total", "completed", "failed", "cancelled")},
        "counts": {row["label"]: int(row["n"]) for row in counts},
        "completed_at": _time(completed_at),
    }
    return EventType.SESSION_COMPLETED, completed_at, data


async def record(
    connection: Connection,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    job_ids: Sequence[uuid.UUID],
) -> int:
    """In the caller's transaction, which has just brought `job_ids` (of one session) to their
    final status: the events their tenant's endpoints asked for (job.*, and session.completed
    when that was the session's last unfinished job), each with its deliveries; how many."""
    subscribed = {EventType(t) for (t,) in await connection.fetch(_SUBSCRIBED, tenant_id)}
    if not subscribed or not job_ids:
        return 0
    events: list[tuple[EventType, datetime, dict[str, Any]]] = []
    if subscribed & set(JOB_EVENT.values()):
        for row in await connection.fetch(_JOBS, tenant_id, list(job_ids)):
            event_type = JOB_EVENT.get(row["status"])
            if event_type in subscribed:
                events.append((event_type, row["completed_at"], job_data(row)))
    if EventType.SESSION_COMPLETED in subscribed:
        session = await _session_event(connection, tenant_id, session_id)
        if session is not None:
            events.append(session)
    if not events:
        return 0
    ids = [event_id() for _ in events]
    await connection.execute(
        _INSERT,
        tenant_id,
        ids,
        [str(t) for t, _, _ in events],
        [body(t, at, data) for t, at, data in events],
    )
    await connection.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return len(events)
