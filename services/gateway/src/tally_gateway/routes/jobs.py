"""GET /v1/jobs/{id}, its result and its thumbnail."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from tally_contracts.v1 import JobRef
from tally_db import FINAL_STATUSES, Job
from tally_gateway import _reads
from tally_gateway._cancel import request_cancel
from tally_gateway.deps import DepsDep
from tally_storage import ObjectNotFoundError
from tally_web import ApiError, CurrentTenant

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


Sort = Literal["created_at", "-created_at"]
Status = Literal["queued", "processing", "completed", "failed", "cancelled"]


def _cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), str(job.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _after(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, job_id = json.loads(raw)
        return datetime.fromisoformat(created_at), uuid.UUID(job_id)
    except (ValueError, TypeError, binascii.Error):
        raise ApiError(422, "invalid_cursor", "the cursor is not one this API gave") from None


@router.get("")
async def list_jobs(
    deps: DepsDep,
    tenant: CurrentTenant,
    status: Status | None = None,
    session_id: uuid.UUID | None = None,
    sort: Sort = "-created_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The tenant's jobs for dashboards: filtered, sorted by creation, a page at a time."""
    records = await deps.store.list_jobs(
        tenant.id,
        status=status,
        session_id=session_id,
        newest_first=sort == "-created_at",
        after=_after(cursor) if cursor else None,
        limit=limit + 1,  # one more tells whether there is a next page
    )
    page, more = records[:limit], len(records) > limit
    return {
        "jobs": await _reads.live_views(deps, tenant, page),
        "next_cursor": _cursor(page[-1]) if more and page else None,
    }


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


@router.post("/{job_id}/cancel", status_code=202)
async def cancel_job(job_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> dict[str, Any]:
    """Cancel a job that has not finished: 202 once the request is queued (the job turns
    `cancelled` within moments); 409 for a job that has already finished."""
    record = await deps.store.get_job(tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    if record.status in FINAL_STATUSES:
        raise ApiError(409, "already_final", f"job {job_id} is {record.status} already")
    ref = JobRef(tenant_id=str(tenant.id), session_id=str(record.session_id), job_id=str(job_id))
    await request_cancel(deps, ref)
    return {"job_id": str(job_id), "status": "cancelling"}
