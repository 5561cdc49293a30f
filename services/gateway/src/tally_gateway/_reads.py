"""Reads of the live projection (Redis), with PostgreSQL behind it when Redis lacks the data, has
lost the projection (wiped, restarted: the ready marker is gone until the projector has rebuilt
it) or cannot be reached: a status read never fails because Redis does."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError

from tally_contracts import projection as redis_keys
from tally_db import Job, Tenant
from tally_gateway import _records
from tally_gateway._views import (
    job_from_projection,
    job_from_record,
    summary,
    summary_from_session,
)
from tally_gateway.deps import Deps
from tally_web import ApiError

log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[bytes]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


@dataclass(frozen=True, slots=True)
class SessionState:
    """A session's jobs (oldest first) and summary, as of `version`: the id of the last entry
    of its event stream that they include; None when read from PostgreSQL."""

    version: str | None
    jobs: list[dict[str, Any]]
    summary: dict[str, Any]


def _not_found(session_id: uuid.UUID) -> ApiError:
    return ApiError(404, "not_found", f"no session {session_id}")


async def session_state(
    deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID, known: str | None = None
) -> SessionState | None:
    """The session as the projection has it, in one Redis round trip; None when its version is
    still `known`. 404 for another tenant's or an unknown session."""
    try:
        reply = await deps.session_script(
            keys=redis_keys.session_read_keys(session_id),
            args=[str(tenant_id), known or "", redis_keys.JOB_KEY_PREFIX],
        )
    except RedisError as exc:
        log.warning("Redis unreachable (%s): reading PostgreSQL", exc)
        return await recorded_session(deps, tenant_id, session_id)
    kind = _text(reply[0])
    if kind == "same":
        return None
    if kind == "foreign":
        raise _not_found(session_id)
    if kind == "fresh":
        jobs = [job_from_projection(_pairs(raw)) for raw in reply[3:] if raw]
        jobs.sort(key=lambda j: (j["created_at"] or "", j["job_id"]))
        return SessionState(_text(reply[1]), jobs, summary_from_session(_pairs(reply[2])))
    return await recorded_session(deps, tenant_id, session_id)


async def recorded_session(deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID) -> SessionState:
    """The session as PostgreSQL, the system of record, has it (slower, never stale)."""
    if await deps.store.get_session(tenant_id, session_id) is None:
        raise _not_found(session_id)
    rows = await _records.session_jobs(deps.store, tenant_id, session_id)
    jobs = [job_from_record(row, None) for row in rows]
    return SessionState(None, jobs, summary(jobs))


async def session_jobs(deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID) -> SessionState:
    state = await session_state(deps, tenant_id, session_id)
    assert state is not None  # no known version: never "unchanged"
    return state


async def job(deps: Deps, tenant: Tenant, job_id: uuid.UUID) -> dict[str, Any]:
    """One job with its recent log (newest first), live from Redis, else from PostgreSQL."""
    pipe = deps.redis.pipeline(transaction=False)
    pipe.exists(redis_keys.READY_KEY)
    pipe.hgetall(redis_keys.job_key(job_id))
    pipe.lrange(redis_keys.job_log_key(job_id), 0, -1)
    pipe.exists(redis_keys.tombstone_key(job_id))
    try:
        ready, raw, entries, deleted = await pipe.execute()
    except RedisError as exc:
        log.warning("Redis unreachable (%s): reading PostgreSQL", exc)
        ready, raw, entries, deleted = False, {}, [], False
    if deleted:  # its projection may not have caught up yet
        raise ApiError(404, "not_found", f"no job {job_id}")
    fields = {_text(k): _text(v) for k, v in raw.items()}
    if ready and fields.get("tenant_id") == str(tenant.id):
        return job_from_projection(fields) | {"logs": [json.loads(e) for e in entries]}
    record = await _records.get_job(deps.store, tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    result = await _records.get_result(deps.store, tenant.id, job_id)
    # Redis has lost this job: its log went with it.
    return job_from_record(record, None if result is None else result["counts"]) | {"logs": []}


async def live_views(deps: Deps, tenant: Tenant, records: list[Job]) -> list[dict[str, Any]]:
    """Views of these jobs, live from Redis where it has them (one round trip), else as
    PostgreSQL has them."""
    pipe = deps.redis.pipeline(transaction=False)
    pipe.exists(redis_keys.READY_KEY)
    for record in records:
        pipe.hgetall(redis_keys.job_key(record.id))
    try:
        ready, *raws = await pipe.execute()
    except RedisError as exc:
        log.warning("Redis unreachable (%s): reading PostgreSQL", exc)
        ready, raws = False, [{} for _ in records]
    views = []
    for record, raw in zip(records, raws, strict=True):
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if ready and fields.get("tenant_id") == str(tenant.id):
            views.append(job_from_projection(fields))
        else:
            views.append(job_from_record(record, None))
    return views
