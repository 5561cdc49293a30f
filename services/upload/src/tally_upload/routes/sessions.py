"""POST /v1/sessions: a session is one upload batch."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from tally_upload.deps import DepsDep
from tally_web import WritingTenant
from tally_web.schemas import SessionParams, SessionPublic, error_responses

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


class SessionCreate(BaseModel):
    # No control characters: PostgreSQL refuses NUL in text (a 500 once), and the rest would
    # reach every screen and log that shows the name.
    name: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    params: SessionParams = Field(default_factory=SessionParams)


@router.post("", status_code=201, responses=error_responses(401, 403, 422))
async def create_session(
    deps: DepsDep,
    tenant: WritingTenant,
    body: Annotated[SessionCreate | None, Body()] = None,
) -> SessionPublic:
    request = body or SessionCreate()
    session = await deps.store.create_session(tenant.id, request.name, request.params.model_dump())
    return SessionPublic(
        session_id=session.id,
        name=session.name,
        params=SessionParams.model_validate(session.params),
        created_at=session.created_at,
    )
