"""GET /v1/jobs/{id}, its result and its thumbnail."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Response

from tally_gateway import _reads
from tally_gateway.deps import DepsDep
from tally_storage import ObjectNotFoundError
from tally_web import ApiError, CurrentTenant

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get("/{job_id}")
async def get_job(job_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> dict[str, Any]:
    return await _reads.job(deps, tenant, job_id)


@router.get("/{job_id}/result")
async def get_result(job_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> dict[str, Any]:
    """Detections in original-image pixels and counts per label, once the job has completed."""
    record = await deps.store.get_job(tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    stored = await deps.store.get_result(tenant.id, job_id)
    if stored is None:
        raise ApiError(409, "not_completed", f"job {job_id} is {record.status}, not completed")
    body: dict[str, Any] = json.loads(await deps.objects.get_bytes(stored["object_key"]))
    return {
        "job_id": str(job_id),
        "width": body["width"],
        "height": body["height"],
        "counts": body["counts"],
        "detections": body["detections"],
    }


@router.get("/{job_id}/thumbnail")
async def get_thumbnail(job_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> Response:
    record = await deps.store.get_job(tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    key = record.object_key.rsplit("/", 1)[0] + "/thumbnail.jpg"
    try:
        data = await deps.objects.get_bytes(key)
    except ObjectNotFoundError:
        raise ApiError(404, "not_found", f"job {job_id} has no thumbnail") from None
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )
