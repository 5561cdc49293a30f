"""The model registry's read side and deletes: GET /v1/models (the tenant's own and the shared
ones, the default first), GET and DELETE /v1/models/{id}. New versions are uploaded to the
upload service (POST /v1/models); the registry's Triton controller loads and unloads them."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response
from pydantic import BaseModel

from tally_db import ConflictError, NotFoundError, delete_model, get_model, list_models
from tally_gateway.deps import DepsDep
from tally_web import ApiError, CurrentTenant, WritingTenant
from tally_web.schemas import ModelPublic, error_responses

router = APIRouter(prefix="/v1/models", tags=["models"])


class ModelList(BaseModel):
    models: list[ModelPublic]


def _not_found(model_id: uuid.UUID) -> ApiError:
    return ApiError(404, "not_found", f"no model {model_id}")


@router.get("", responses=error_responses(401, 422))
async def list_all(deps: DepsDep, tenant: CurrentTenant) -> ModelList:
    models = await list_models(deps.store.pool, tenant.id)
    return ModelList(models=[ModelPublic.of(model) for model in models])


@router.get("/{model_id}", responses=error_responses(401, 404, 422))
async def get_one(model_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> ModelPublic:
    model = await get_model(deps.store.pool, tenant.id, model_id)
    if model is None:
        raise _not_found(model_id)
    return ModelPublic.of(model)


@router.delete("/{model_id}", status_code=204, responses=error_responses(401, 403, 404, 409, 422))
async def delete_one(model_id: uuid.UUID, deps: DepsDep, tenant: WritingTenant) -> Response:
    """Delete one of the tenant's own versions (a shared model is the operators'); refused
    while a session with work left runs it. Its file goes; Triton unloads it."""
    visible = await get_model(deps.store.pool, tenant.id, model_id)
    if visible is None:
        raise _not_found(model_id)
    if visible.shared:
        raise ApiError(
            403, "shared_model", f"model {visible.reference} is shared: only an operator deletes it"
        )
    try:
        async with deps.store.transaction() as connection:
            model = await delete_model(connection, tenant.id, model_id)
    except NotFoundError:
        raise _not_found(model_id) from None
    except ConflictError as exc:
        raise ApiError(409, "model_in_use", str(exc)) from None
    if model.object_key is not None:
        await deps.objects.delete(model.object_key)
    return Response(status_code=204)
