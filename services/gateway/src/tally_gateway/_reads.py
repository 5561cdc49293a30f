"""Reads of the live projection (Redis), with PostgreSQL behind it when Redis lacks the data."""

from __future__ import annotations

import json
import uuid
from typing import Any

from tally_db import Job, Tenant
from tally_gateway._views import job_from_projection, job_from_record
from tally_gateway.deps import Deps
from tally_web import ApiError


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def session_jobs(deps: Deps, tenant: Tenant, session_id: uuid.UUID) -> list[dict[str, Any]]:
    """The session's jobs, oldest first; 404 for another tenant's or an unknown session."""
    session = await deps.store.get_session(tenant.id, session_id)
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    ids = sorted(_text(i) for i in await deps.redis.smembers(f"session:{session_id}:jobs"))
    pipe = deps.redis.pipeline(transaction=False)  # one round trip, whatever the job count
    for job_id in ids:
        pipe.hgetall(f"job:{job_id}")
    projected = [{_text(k): _text(v) for k, v in raw.items()} for raw in await pipe.execute()]
    jobs = [job_from_projection(f) for f in projected if f.get("tenant_id") == str(tenant.id)]
    if jobs:
        return sorted(jobs, key=lambda j: (j["created_at"] or "", j["job_id"]))
    # Redis has nothing for this session (expired, wiped, not yet folded): PostgreSQL knows.
    rows = await deps.store.session_jobs(tenant.id, session_id)
    return [job_from_record(row, None) for row in rows]


async def job(deps: Deps, tenant: Tenant, job_id: uuid.UUID) -> dict[str, Any]:
    """One job with its recent log (newest first), live from Redis, else from PostgreSQL."""
    pipe = deps.redis.pipeline(transaction=False)
    pipe.hgetall(f"job:{job_id}")
    pipe.lrange(f"job:{job_id}:log", 0, -1)
    raw, log = await pipe.execute()
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if fields.get("tenant_id") == str(tenant.id):
        return job_from_projection(fields) | {"logs": [json.loads(e) for e in log]}
    record = await deps.store.get_job(tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    result = await deps.store.get_result(tenant.id, job_id)
    # Redis has lost this job: its log went with it.
    return job_from_record(record, None if result is None else result["counts"]) | {"logs": []}


async def live_views(deps: Deps, tenant: Tenant, records: list[Job]) -> list[dict[str, Any]]:
    """Views of these jobs, live from Redis where it has them (one round trip), else as
    PostgreSQL has them."""
    pipe = deps.redis.pipeline(transaction=False)
    for record in records:
        pipe.hgetall(f"job:{record.id}")
    views = []
    for record, raw in zip(records, await pipe.execute(), strict=True):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if fields.get("tenant_id") == str(tenant.id):
            views.append(job_from_projection(fields))
        else:
            views.append(job_from_record(record, None))
    return views
