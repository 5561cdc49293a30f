"""Reads of the live projection (Redis), with PostgreSQL behind it when Redis lacks the data, has
lost the projection (wiped, restarted: the ready marker is gone until the projector has rebuilt
it) or cannot be reached: a status read never fails because Redis does."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

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
from tally_gateway.config import PAGE_SIZE
from tally_gateway.deps import Deps
from tally_web import ApiError

log = logging.getLogger(__name__)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[bytes]) -> dict[str, str]:
    return {_text(flat[i]): _text(flat[i + 1]) for i in range(0, len(flat), 2)}


@dataclass(frozen=True, slots=True)
class Version:
    """Where a session's projection stands: its epoch (when Redis began projecting it, so a
    projection rebuilt from nothing is told apart) and its rev (a count of its visible
    changes). Clients hold it as text, `epoch.rev`, and send it back as `since`."""

    epoch: str
    rev: int

    def __str__(self) -> str:
        return f"{self.epoch}.{self.rev}"

    @classmethod
    def parse(cls, text: str) -> Version | None:
        epoch, dot, rev = text.partition(".")
        parts = (epoch, rev)
        if not (dot and all(p.isascii() and p.isdigit() and len(p) <= 19 for p in parts)):
            return None
        return cls(str(int(epoch)), int(rev))


@dataclass(frozen=True, slots=True)
class Read:
    """What to read of a session: its summary alone, a page of its jobs (oldest first, after
    `cursor`), or the jobs that changed after `since` (by change, oldest first)."""

    kind: Literal["summary", "page", "since"] = "summary"
    cursor: str = ""  # an order member (tally_contracts.projection.order_member); '' first page
    since: Version | None = None
    limit: int = PAGE_SIZE

    def key(self) -> str:
        """What the answer depends on besides the session's version (to keep answers by)."""
        return f"{self.kind}|{self.cursor}|{self.since or ''}|{self.limit}"


@dataclass(frozen=True, slots=True)
class SessionState:
    """A session's summary and the jobs a Read asked for, as of `version` (None when read from
    PostgreSQL) or later: job states are read just after the version, and may be newer.

    `position` is the id of the last entry of the session's event stream it includes (where an
    SSE snapshot stands). A page has `next_cursor` (None on the last one); a delta has the
    `deleted` job ids too, and `more` when there were more changes than its limit (its version
    is then where it stops: ask again from there). `reload`: the `since` asked for is too old
    (from an earlier projection, or another session's), and this is the first page instead."""

    version: str | None
    position: str | None
    summary: dict[str, Any]
    last_updated: str | None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    next_cursor: str | None = None
    deleted: list[str] = field(default_factory=list)
    delta: bool = False
    more: bool = False
    reload: bool = False


def _not_found(session_id: uuid.UUID) -> ApiError:
    return ApiError(404, "not_found", f"no session {session_id}")


async def session_state(
    deps: Deps,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    read: Read = Read(),
    known: str | None = None,
) -> SessionState | None:
    """The session as the projection has it: one short script (no longer than a page), then the
    page's job hashes in one pipeline. None when its version is still `known`. 404 for another
    tenant's or an unknown session; PostgreSQL when Redis cannot say."""
    since = read.since
    try:
        reply = await deps.session_script(
            keys=redis_keys.session_read_keys(session_id),
            args=[
                str(tenant_id),
                known or "",
                read.kind,
                str(since.rev) if since else read.cursor,
                since.epoch if since else "",
                read.limit,
            ],
        )
        kind = _text(reply[0])
        if kind == "same":
            return None
        if kind == "foreign":
            raise _not_found(session_id)
        if kind == "fresh":
            return await _fresh(deps, reply, read.limit)
    except RedisError as exc:
        log.warning("Redis unreachable (%s): reading PostgreSQL", exc)
    return await recorded_session(deps, tenant_id, session_id, read)


async def _fresh(deps: Deps, reply: list[Any], limit: int) -> SessionState:
    epoch, rev, position = _text(reply[1]), int(reply[2]), _text(reply[3]) or None
    fields = _pairs(reply[4])
    what, items = _text(reply[5]), [_text(item) for item in reply[6]]
    version = Version(epoch, rev)
    state = SessionState(
        str(version), position, summary_from_session(fields), fields.get("last_updated")
    )
    if what == "summary":
        return state
    if what == "delta":
        ids, revs = items[0::2], items[1::2]
        more = len(ids) > limit
        if more:  # the delta stops at its last change: the next one starts there
            ids, version = ids[:limit], Version(epoch, int(float(revs[limit - 1])))
        hashes = await _hashes(deps, ids)
        jobs = [job_from_projection(h) for h in hashes if h]
        deleted = [job_id for job_id, h in zip(ids, hashes, strict=True) if not h]
        return replace(
            state, version=str(version), jobs=jobs, deleted=deleted, delta=True, more=more
        )
    next_cursor = items[limit - 1] if len(items) > limit else None
    hashes = await _hashes(deps, [redis_keys.order_member_job(m) for m in items[:limit]])
    jobs = [job_from_projection(h) for h in hashes if h]  # deleted since the script: gone
    return replace(state, jobs=jobs, next_cursor=next_cursor, reload=what == "reload")


async def _hashes(deps: Deps, job_ids: list[str]) -> list[dict[str, str]]:
    """These jobs' hashes, in one pipeline of plain HGETALLs (Redis serves others between
    them); an empty one for a job that is gone."""
    if not job_ids:
        return []
    pipe = deps.redis.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hgetall(redis_keys.job_key(job_id))
    raws: list[dict[Any, Any]] = await pipe.execute()
    return [{_text(k): _text(v) for k, v in raw.items()} for raw in raws]


async def recorded_session(
    deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID, read: Read = Read()
) -> SessionState:
    """The session as PostgreSQL, the system of record, has it (slower, never stale, every job
    read for its summary). It has no versions: a `since` gets the first page, to reload."""
    if await deps.store.get_session(tenant_id, session_id) is None:
        raise _not_found(session_id)
    rows = await _records.session_jobs(deps.store, tenant_id, session_id)
    jobs = [job_from_record(row, None) for row in rows]
    updated = [j["updated_at"] for j in jobs if j["updated_at"]]
    state = SessionState(None, None, summary(jobs), max(updated) if updated else None)
    if read.kind == "summary":
        return state
    ordered = sorted(
        (redis_keys.order_member(row.created_at.timestamp(), row.id), job)
        for row, job in zip(rows, jobs, strict=True)
    )
    cursor = "" if read.kind == "since" else read.cursor
    after = [(member, job) for member, job in ordered if member > cursor]
    page = after[: read.limit]
    next_cursor = page[-1][0] if len(after) > read.limit else None
    return replace(
        state, jobs=[job for _, job in page], next_cursor=next_cursor, reload=read.kind == "since"
    )


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
