"""POST /v1/sessions: a session is one upload batch."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from tally_upload.deps import DepsDep
from tally_web import CurrentTenant

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


class SessionParams(BaseModel):
    slice_size: int = Field(default=512, ge=256, le=2048, multiple_of=32)
    overlap: float = Field(default=0.25, ge=0.0, le=0.5)
    confidence: float = Field(default=0.35, gt=0.0, lt=1.0)


class SessionCreate(BaseModel):
    name: str = Field(default="", max_length=200)
    params: SessionParams = Field(default_factory=SessionParams)


class SessionPublic(BaseModel):
    session_id: uuid.UUID
    name: str
    params: SessionParams
    created_at: datetime


@router.post("", status_code=201)
async def create_session(
    deps: DepsDep,
    tenant: CurrentTenant,
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
