"""GET /v1/sessions/{sid} and GET /v1/sessions/{sid}/jobs (polling)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter

from tally_gateway import _reads
from tally_gateway._views import summary
from tally_gateway.deps import DepsDep
from tally_web import ApiError, CurrentTenant

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


@router.get("/{session_id}")
async def get_session(
    session_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant
) -> dict[str, Any]:
    session = await deps.store.get_session(tenant.id, session_id)
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    jobs = await _reads.session_jobs(deps, tenant, session_id)
    return {
        "session_id": str(session.id),
        "name": session.name,
        "params": session.params,
        "created_at": session.created_at.isoformat(),
        "summary": summary(jobs),
    }


@router.get("/{session_id}/jobs")
async def poll_jobs(session_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> dict[str, Any]:
    jobs = await _reads.session_jobs(deps, tenant, session_id)
    updated = [j["updated_at"] for j in jobs if j["updated_at"]]
    return {
        "session_id": str(session_id),
        "jobs": jobs,
        "summary": summary(jobs),
        "last_updated": max(updated) if updated else None,
        "poll_interval_ms": deps.settings.poll_interval_ms,
    }
