"""GET /v1/sessions/{sid} and GET /v1/sessions/{sid}/jobs (polling)."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.routing import APIRoute

from tally_contracts.statuses import FINAL, JobStatus
from tally_contracts.v1 import JobRef
from tally_db import Session
from tally_gateway import _reads, _records
from tally_gateway._cancel import request_cancel
from tally_gateway._views import finished
from tally_gateway.config import PAGE_MAX, PAGE_SIZE, Settings
from tally_gateway.deps import DepsDep, Poll, get_deps
from tally_gateway.schemas import PollBody, SessionCancel, SessionDetail, SessionList
from tally_web import ApiError, CurrentTenant, WritingTenant, caller_of
from tally_web.schemas import error_responses

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


def _session(session: Session) -> dict[str, Any]:
    return {
        "session_id": str(session.id),
        "name": session.name,
        "params": session.params,
        "created_at": session.created_at.isoformat(),
    }


@router.get("", response_model=SessionList, responses=error_responses(401, 422))
async def list_sessions(
    deps: DepsDep,
    tenant: CurrentTenant,
    active: bool = False,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> dict[str, Any]:
    """The tenant's sessions, newest first; `active=true`: only those with a job not finished
    (a dashboard resumes the first)."""
    found = await deps.store.list_sessions(tenant.id, limit, active=active)
    return {"sessions": [_session(s) for s in found]}


@router.get("/{session_id}", response_model=SessionDetail, responses=error_responses(401, 404, 422))
async def get_session(
    session_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant
) -> dict[str, Any]:
    session = await deps.store.get_session(tenant.id, session_id)
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    state = await _reads.session_state(deps, tenant.id, session_id)
    assert state is not None  # no known version: never "unchanged"
    return _session(session) | {"summary": state.summary}


def _poll_interval_ms(summary: dict[str, Any], settings: Settings) -> int:
    if summary[JobStatus.PROCESSING]:
        return settings.poll_interval_active_ms
    if finished(summary):
        return settings.poll_interval_idle_ms
    return settings.poll_interval_ms


_CURSOR = re.compile(r"\d{16}:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _read(request: Request) -> _reads.Read:
    """What a poll asks for: a page (`limit`, `cursor`) or a delta (`since`, `limit`); 422 in
    the envelope for anything else."""
    query = request.query_params
    limit_text = query.get("limit", str(PAGE_SIZE))
    if not (limit_text.isascii() and limit_text.isdigit() and len(limit_text) <= 5):
        limit_text = "0"
    limit = int(limit_text)
    if not 1 <= limit <= PAGE_MAX:
        raise ApiError(422, "invalid_request", f"limit must be a whole number from 1 to {PAGE_MAX}")
    cursor, since_text = query.get("cursor"), query.get("since")
    if cursor is not None and since_text is not None:
        raise ApiError(
            422, "invalid_request", "give since (the changes after a version) or cursor, not both"
        )
    if since_text is not None:
        since = _reads.Version.parse(since_text)
        if since is None:
            raise ApiError(
                422, "invalid_request", "since must be a version a poll gave (epoch.rev)"
            )
        return _reads.Read("since", since=since, limit=limit)
    if cursor is not None and not _CURSOR.fullmatch(cursor):
        raise ApiError(422, "invalid_request", "cursor must be a next_cursor a poll gave")
    return _reads.Read("page", cursor=cursor or "", limit=limit)


async def poll_jobs(request: Request) -> Response:
    """GET /v1/sessions/{sid}/jobs, the polling endpoint: a page of the session's jobs, or with
    `since` the jobs changed after that version; its cost follows the page (or the change), not
    the session's size: one short Redis script, then the page's jobs in one pipeline. The body
    is built once per version of the session and question (page, delta) and kept: a poll of an
    unchanged session costs one small Redis reply and sends the kept bytes. Its ETag is the
    body's digest, so it changes exactly when the body does; a poller that sends it back in
    If-None-Match gets 304.

    The hottest request Tally serves, so a PlainRoute: FastAPI's dependency resolution and
    validation cost about as much as the work itself (make bench-status)."""
    deps = get_deps(request)
    tenant = (await caller_of(request, deps.callers)).tenant
    session_id: uuid.UUID = request.path_params["session_id"]
    read = _read(request)
    key = f"{session_id}|{read.key()}"
    kept = deps.polls.get(key)
    state = await _reads.session_state(
        deps, tenant.id, session_id, read, kept.version if kept else None
    )
    if state is None:
        assert kept is not None
        poll = kept
    else:
        poll = _poll(state, session_id, read, deps.settings)
        if state.version is not None:
            deps.polls[key] = poll
    headers = {"ETag": poll.etag, "Cache-Control": "no-cache"}
    if poll.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(poll.body, media_type="application/json", headers=headers)


def _poll(
    state: _reads.SessionState, session_id: uuid.UUID, read: _reads.Read, settings: Settings
) -> Poll:
    answer: dict[str, Any] = {
        "session_id": str(session_id),
        "version": state.version,
        "jobs": state.jobs,
        "summary": state.summary,
        "last_updated": state.last_updated,
        "poll_interval_ms": _poll_interval_ms(state.summary, settings),
    }
    if state.delta:
        answer |= {"since": str(read.since), "deleted": state.deleted, "more": state.more}
    else:
        answer["next_cursor"] = state.next_cursor
        if read.kind == "since":
            answer |= {"since": str(read.since), "reload": True}
    body = json.dumps(answer, separators=(",", ":")).encode()
    return Poll(state.version or "", body, f'"{hashlib.sha256(body).hexdigest()[:32]}"')


class PlainRoute(APIRoute):
    """A route OpenAPI documents like any other, whose endpoint FastAPI does not wrap: it takes
    the Request and returns its Response itself (no dependency resolution, validation or
    serialisation), so the schema it answers is only declared, in `responses`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint: Callable[[Request], Coroutine[Any, Any, Response]] = self.endpoint
        return endpoint


router.add_api_route(
    "/{session_id:uuid}/jobs",
    poll_jobs,
    methods=["GET"],
    route_class_override=PlainRoute,
    response_class=Response,
    summary="Poll a session's jobs",
    description="A page of the session's jobs (oldest first; `limit`, default "
    f"{PAGE_SIZE}, at most {PAGE_MAX}; `cursor`: a page's `next_cursor`) and its "
    "summary, with an `ETag`; a poll that sends it back in `If-None-Match` gets 304 while "
    "nothing has changed. With `since` (a version an answer gave) only the jobs changed after "
    "it and those deleted, or `reload` with the first page when that version is too old.",
    responses={
        200: {
            "model": PollBody,
            "description": "the session's jobs and summary, with an `ETag`",
            "headers": {"ETag": {"schema": {"type": "string"}}},
        },
        304: {"description": "unchanged since the `If-None-Match` ETag"},
        **error_responses(401, 404, 422),
    },
    openapi_extra={
        "parameters": [
            {
                "name": "session_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "format": "uuid"},
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": PAGE_MAX},
            },
            {"name": "cursor", "in": "query", "schema": {"type": "string"}},
            {"name": "since", "in": "query", "schema": {"type": "string"}},
            {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
        ]
    },
)

# And HEAD, which Starlette answers for each GET route it serves itself (documented as GET).
router.add_api_route(
    "/{session_id:uuid}/jobs",
    poll_jobs,
    methods=["HEAD"],
    route_class_override=PlainRoute,
    include_in_schema=False,
)


def _etags(header: str) -> set[str]:
    """The entity tags of an If-None-Match header (weak ones compare equal, as RFC 9110 says)."""
    return {tag.strip().removeprefix("W/") for tag in header.split(",") if tag.strip()}


@router.post(
    "/{session_id}/cancel",
    status_code=202,
    response_model=SessionCancel,
    responses=error_responses(401, 403, 404, 422),
)
async def cancel_session(
    session_id: uuid.UUID, deps: DepsDep, tenant: WritingTenant
) -> dict[str, Any]:
    """Cancel every job of the session that has not finished (202 once queued); jobs that have
    finished keep their results."""
    if await deps.store.get_session(tenant.id, session_id) is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    open_jobs = [
        j
        for j in await _records.session_jobs(deps.store, tenant.id, session_id)
        if j.status not in FINAL
    ]
    await request_cancel(deps, JobRef(tenant_id=str(tenant.id), session_id=str(session_id)))
    return {"session_id": str(session_id), "status": "cancelling", "jobs": len(open_jobs)}
