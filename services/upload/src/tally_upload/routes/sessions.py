"""POST /v1/sessions: a session is one upload batch."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body
from pydantic import BaseModel, Field

from tally_db import ConflictError, Model, NotFoundError, default_model, resolve_model
from tally_upload.deps import Deps, DepsDep
from tally_web import ApiError, WritingTenant
from tally_web.schemas import SessionParams, SessionPublic, error_responses

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])


class SessionCreate(BaseModel):
    # No control characters: PostgreSQL refuses NUL in text (a 500 once), and the rest would
    # reach every screen and log that shows the name.
    name: str = Field(default="", max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")
    params: SessionParams = Field(default_factory=SessionParams)


@router.post("", status_code=201, responses=error_responses(401, 403, 404, 409, 422))
async def create_session(
    deps: DepsDep,
    tenant: WritingTenant,
    body: Annotated[SessionCreate | None, Body()] = None,
) -> SessionPublic:
    """A session, on the model `params.model` names (404 when the tenant has none of that
    name, 409 while it is not ready) or the default. A static-shape model's input size is the
    session's slice size."""
    request = body or SessionCreate()
    params = request.params
    model = await _model(deps, tenant.id, params.model)
    if model.input_size is not None:
        if "slice_size" in params.model_fields_set and params.slice_size != model.input_size:
            raise ApiError(
                422,
                "invalid_request",
                f"model {model.reference} takes slices of {model.input_size} pixels only; "
                f"leave slice_size out or make it {model.input_size}",
            )
        params = params.model_copy(update={"slice_size": model.input_size})
    params = params.model_copy(update={"model": model.reference})
    session = await deps.store.create_session(
        tenant.id, request.name, params.model_dump(), model_id=model.id
    )
    return SessionPublic(
        session_id=session.id,
        name=session.name,
        params=SessionParams.model_validate(session.params),
        created_at=session.created_at,
    )


async def _model(deps: Deps, tenant_id: uuid.UUID, reference: str | None) -> Model:
    if reference is None:
        return await default_model(deps.store.pool)
    try:
        return await resolve_model(deps.store.pool, tenant_id, reference)
    except NotFoundError:
        raise ApiError(
            404, "model_not_found", f"no model {reference!r} (GET /v1/models lists them)"
        ) from None
    except ConflictError as exc:  # a ValueError too: before the next one
        raise ApiError(409, "model_not_ready", str(exc)) from None
    except ValueError as exc:
        raise ApiError(422, "invalid_request", str(exc)) from None
