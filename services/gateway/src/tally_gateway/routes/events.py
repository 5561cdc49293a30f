"""GET /v1/sessions/{sid}/events (Server-Sent Events) and POST /v1/stream-tokens."""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import AsyncGenerator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from tally_contracts import projection as redis_keys
from tally_db import Tenant
from tally_gateway import _reads, _tokens
from tally_gateway._leases import Cap, TooManyStreamsError
from tally_gateway._streams import (
    ORIGIN,
    EventStreamResponse,
    Frame,
    StreamId,
    entry_frame,
    format_id,
    frame,
    parse_id,
)
from tally_gateway._views import finished
from tally_gateway.deps import Deps, DepsDep
from tally_gateway.schemas import StreamToken
from tally_web import ApiError, CurrentCaller, caller_of, ratelimit
from tally_web.limits import Limits
from tally_web.schemas import error_responses

router = APIRouter(tags=["events"])
# Streams end at any time (a tab closed, a session done): soon there may be room again.
STREAMS_RETRY_AFTER_S = 5


class StreamTokenRequest(BaseModel):
    session_id: uuid.UUID


@router.post(
    "/v1/stream-tokens",
    status_code=201,
    response_model=StreamToken,
    responses=error_responses(401, 404, 422),
)
async def create_stream_token(
    body: StreamTokenRequest, deps: DepsDep, caller: CurrentCaller
) -> dict[str, Any]:
    """A token that lets an EventSource start this session's stream within the next minute,
    while the key that asked for it is live."""
    if await deps.store.get_session(caller.tenant.id, body.session_id) is None:
        raise ApiError(404, "not_found", f"no session {body.session_id}")
    ttl = deps.settings.stream_token_ttl_s
    expires_at = int(time.time()) + ttl
    grant = _tokens.StreamGrant(caller.tenant.id, body.session_id, caller.key_id, expires_at)
    return {
        "token": _tokens.issue(deps.settings.stream_token_key(), grant),
        "session_id": str(body.session_id),
        "expires_at": datetime.fromtimestamp(grant.expires_at, UTC).isoformat(),
        "expires_in": ttl,
    }


async def _stream_caller(
    request: Request, deps: Deps, session_id: uuid.UUID, access_token: str | None
) -> tuple[Tenant, uuid.UUID]:
    """The tenant and the key of a stream: the request's API key, or the key that minted its
    stream token (which must be live still)."""
    if access_token is None:
        caller = await caller_of(request, deps.callers)
        return caller.tenant, caller.key_id
    grant = _tokens.verify(deps.settings.stream_token_key(), access_token, time.time())
    if grant is None:
        raise ApiError(401, "unauthenticated", "the stream token is invalid or has expired")
    if grant.session_id != session_id:
        raise ApiError(403, "forbidden", "the stream token is for another session")
    tenant = await deps.store.get_tenant(grant.tenant_id)
    if tenant is None or not await deps.store.live_keys([grant.key_id]):
        raise ApiError(401, "unauthenticated", "the key that issued the stream token is revoked")
    # No key came with it (the rate limiter charged the address): the tenant's stream bucket
    # pays for the open, or one token would open streams without limit for its minute.
    buckets = ratelimit.tenant_buckets(tenant, "stream", deps.limiter.limits)
    decision = await deps.limiter.take(buckets, ratelimit.STREAM_COST)
    if not decision.allowed:
        raise ratelimit.rate_limited(decision, "stream")
    return tenant, grant.key_id


def _too_many_streams(cap: Cap, limits: Limits) -> ApiError:
    if cap == "key":
        message = f"this API key has {limits.streams_per_key} streams open, its limit"
    else:
        message = f"this tenant has {limits.streams_per_tenant} streams open, its limit"
    return ApiError(
        429,
        "too_many_streams",
        f"{message}; close one and try again",
        headers={"Retry-After": str(STREAMS_RETRY_AFTER_S)},
    )


@router.get(
    "/v1/sessions/{session_id}/events",
    response_class=Response,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "`snapshot`, then `job` and `summary` events, `done` last",
        },
        204: {"description": "the session has finished and the client has its last event"},
        # 403: a stream token for another session; 429: the key or tenant has its most streams
        **error_responses(401, 403, 404, 422, 429),
    },
)
async def sessionsession_event_stream(
    session_id: uuid.UUID,
    request: Request,
    deps: DepsDep,
    access_token: str | None = None,
    last_event_id: str | None = None,
) -> Response:
    """The session's events: a `snapshot` first (unless resuming), then `job` and `summary` as
    they happen, `done` last. `Last-Event-ID` (header, or `last_event_id` in the query) resumes
    after that event; an id the stream no longer has gets a fresh snapshot. A finished session
    answers a reconnect from its last event with 204, so EventSource stops. A key and a tenant
    may have only so many streams open at once (429 `too_many_streams` beyond), and a stream
    ends soon after its key is revoked."""
    tenant, key_id = await _stream_caller(request, deps, session_id, access_token)
    tenant_id = tenant.id
    sent = request.headers.get("last-event-id") or last_event_id
    # An id that is not one of ours resumes from nowhere: the stream has nothing that old.
    resume = (parse_id(sent) or ORIGIN) if sent else None
    state = await _reads.session_state(deps, tenant_id, session_id)  # 404 before any stream
    assert state is not None
    if resume is not None and state.position == format_id(resume) and finished(state.summary):
        return Response(status_code=204)
    limits = deps.limits.for_tenant(tenant)
    try:
        lease = await deps.streams.open(
            key_id, tenant_id, limits.streams_per_key, limits.streams_per_tenant
        )
    except TooManyStreamsError as exc:
        raise _too_many_streams(exc.cap, limits) from None
    return EventStreamResponse(
        session_event_stream(deps, tenant_id, session_id, resume),
        until=lease.ended,
        on_close=functools.partial(deps.streams.release, lease),
    )


async def session_event_stream(
    deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID, resume: StreamId | None
) -> AsyncGenerator[bytes]:
    """The bytes of one client's stream: `retry:`, its catch-up, then live events (a snapshot
    again if it falls behind) and heartbeats, until `done`."""
    settings = deps.settings
    yield f"retry: {settings.sse_retry_ms}\n\n".encode()
    async with deps.feeds.subscribe(str(session_id)) as (feed, subscriber):
        last, chunk, done = await _catch_up(deps, tenant_id, session_id, resume, feed.position)
        yield chunk
        # What was sent is not held while the stream waits (a snapshot may be large, and
        # thousands of streams wait at once).
        del chunk
        while not done:
            items = await subscriber.next_frames(settings.sse_heartbeat_s)
            if subscriber.lagged:
                subscriber.lagged = False  # frames from now on queue again
                last, chunk, done = await _snapshot(
                    deps, tenant_id, session_id, feed.position, "lagged"
                )
            elif items is None:
                chunk = b": heartbeat\n\n"
            else:
                last, chunk, done = _after(items, last)
            del items
            if chunk:
                yield chunk
            del chunk


def _after(items: list[Frame], last: StreamId) -> tuple[StreamId, bytes, bool]:
    """The frames newer than `last`, up to and including `done`."""
    out = []
    for item in items:
        if item.id <= last:
            continue
        out.append(item.data)
        last = item.id
        if item.kind == "done":
            return last, b"".join(out), True
    return last, b"".join(out), False


async def _catch_up(
    deps: Deps,
    tenant_id: uuid.UUID,
    session_id: uuid.UUID,
    resume: StreamId | None,
    start: StreamId,
) -> tuple[StreamId, bytes, bool]:
    """What a client lacks when it (re)connects: the entries after its Last-Event-ID while the
    stream still has them all, else a snapshot."""
    if resume is None:
        return await _snapshot(deps, tenant_id, session_id, start, "connect")
    key = redis_keys.session_events_key(session_id)
    pipe = deps.redis.pipeline(transaction=False)
    pipe.xrange(key, count=1)
    pipe.xrevrange(key, count=1)
    pipe.xrange(key, min=f"({format_id(resume)}")
    first, last, entries = await pipe.execute()
    oldest = parse_id(first[0][0].decode()) if first else None
    newest = parse_id(last[0][0].decode()) if last else None
    # Gone (expired, Redis wiped), trimmed past it, or an id this stream never gave.
    if oldest is None or newest is None or not oldest <= resume <= newest:
        return await _snapshot(deps, tenant_id, session_id, start, "resume")
    frames = [entry_frame(str(session_id), raw_id, raw) for raw_id, raw in entries]
    return _after(frames, resume)


async def _snapshot(
    deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID, start: StreamId, reason: str
) -> tuple[StreamId, bytes, bool]:
    """The session as it is now, as one `snapshot` event (and `done` when it has finished) whose
    id is the stream position it includes: its summary and its first page of jobs, so a
    subscriber to a session of thousands of jobs costs a page, not the session. The rest of the
    jobs it reads over HTTP (`GET …/jobs?cursor=` from `next_cursor`) if it wants them, while the
    stream brings their changes; of two copies of a job, the higher `revision` is newer."""
    try:
        first_page = _reads.Read("page", limit=deps.settings.sse_snapshot_jobs)
        state = await _reads.session_state(deps, tenant_id, session_id, first_page)
    except ApiError:  # the session went away while its stream was open
        return start, b"", True
    assert state is not None
    position = parse_id(state.position) or start
    data = {
        "session_id": str(session_id),
        "reason": reason,
        "version": state.version,
        "jobs": state.jobs,
        "next_cursor": state.next_cursor,
        "summary": state.summary,
    }
    out = frame(position, "snapshot", data)
    if finished(state.summary):
        done = {"session_id": str(session_id), "summary": state.summary}
        return position, out + frame(position, "done", done), True
    return position, out, False
