"""GET /v1/jobs (the dashboard's list), a job, its result, thumbnail and photo; cancel and
delete."""

from __future__ import annotations

import logging
import posixpath
import unicodedata
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Final, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query, Response
from redis.exceptions import RedisError

from tally_contracts import projection as redis_keys
from tally_contracts.statuses import FINAL, JobStatus
from tally_contracts.v1 import JobRef
from tally_db import ConflictError, Job
from tally_gateway import _keyset, _reads, _records
from tally_gateway._cancel import request_cancel
from tally_gateway._exports import coco_document
from tally_gateway.deps import DepsDep
from tally_gateway.schemas import JobCancel, JobDetail, JobPage, JobResultAnswer
from tally_storage import JobResult as StoredResult
from tally_storage import ObjectNotFoundError, keys
from tally_web import ApiError, CurrentTenant, WritingTenant
from tally_web.schemas import error_responses

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
DELETED_TTL_S = 48 * 3600  # as long as the projection keeps a job


Sort = Literal["created_at", "-created_at"]

# What downloads say about themselves: no sniffing their bytes into another type, and (photos:
# bytes as a client uploaded them, maybe a JPEG with HTML after it) nothing in them may run
# even when opened on its own.
DOWNLOAD_HEADERS: Final = {"X-Content-Type-Options": "nosniff"}
PHOTO_HEADERS: Final = DOWNLOAD_HEADERS | {
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=3600",
}


def content_disposition(disposition: str, filename: str) -> str:
    """RFC 6266: an ASCII `filename` for old clients (anything else, quotes and backslashes
    as `_`) and the name itself as `filename*` (UTF-8, percent-encoded)."""
    name = posixpath.basename(filename.replace("\\", "/")) or "download"
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    plain = "".join(c if c.isprintable() and c not in '"\\' else "_" for c in plain)
    encoded = quote(name, safe="")
    return f"{disposition}; filename=\"{plain or 'download'}\"; filename*=UTF-8''{encoded}"


def _stem(job: Job) -> str:
    return posixpath.splitext(posixpath.basename(job.filename))[0] or str(job.id)


@router.get("", response_model=JobPage, responses=error_responses(401, 422))
async def list_jobs(
    deps: DepsDep,
    tenant: CurrentTenant,
    status: JobStatus | None = None,
    session_id: uuid.UUID | None = None,
    sort: Sort = "-created_at",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    """The tenant's jobs for dashboards: filtered, sorted by creation, a page at a time."""
    records = await _records.list_jobs(
        deps.store,
        tenant.id,
        status=status,
        session_id=session_id,
        newest_first=sort == "-created_at",
        after=_keyset.after(cursor) if cursor else None,
        limit=limit + 1,  # one more tells whether there is a next page
    )
    page, more = records[:limit], len(records) > limit
    views = await _reads.live_views(deps, tenant, page)
    settings = deps.settings
    busy = any(v["status"] == JobStatus.PROCESSING for v in views)
    return {
        "jobs": views,
        "next_cursor": _keyset.cursor(page[-1].created_at, page[-1].id) if more and page else None,
        "poll_interval_ms": settings.poll_interval_active_ms if busy else settings.poll_interval_ms,
    }


@router.get("/{job_id}", response_model=JobDetail, responses=error_responses(401, 404, 422))
async def get_job(job_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> dict[str, Any]:
    return await _reads.job(deps, tenant, job_id)


@router.get(
    "/{job_id}/result",
    response_model=JobResultAnswer,
    responses=error_responses(401, 404, 409, 422),  # 409: the job has not completed
)
async def get_result(
    job_id: uuid.UUID,
    deps: DepsDep,
    tenant: CurrentTenant,
    response: Response,
    fmt: Annotated[
        Literal["json", "coco"],
        Query(alias="format", description="`json`: Tally's own; `coco`: a COCO document"),
    ] = "json",
) -> dict[str, Any]:
    """Detections in original-image pixels and counts per label, once the job has completed;
    with `format=coco` the same as a COCO detection document of one image."""
    record = await _records.get_job(deps.store, tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    stored = await _records.get_result(deps.store, tenant.id, job_id)
    if stored is None:
        raise ApiError(409, "not_completed", f"job {job_id} is {record.status}, not completed")
    result = StoredResult.from_bytes(await deps.objects.get_bytes(stored["object_key"]))
    if fmt == "coco":
        disposition = content_disposition("attachment", f"{_stem(record)}.coco.json")
        response.headers.update(DOWNLOAD_HEADERS | {"Content-Disposition": disposition})
        return coco_document(record, result, datetime.now(UTC))
    body = result.model_dump()
    disposition = content_disposition("attachment", f"{_stem(record)}.result.json")
    response.headers.update(DOWNLOAD_HEADERS | {"Content-Disposition": disposition})
    return {
        "job_id": str(job_id),
        "width": body["width"],
        "height": body["height"],
        "counts": body["counts"],
        "detections": body["detections"],
        "model": body["model"],
    }


@router.get(
    "/{job_id}/thumbnail",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **error_responses(401, 404, 422)},
)
async def get_thumbnail(job_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> Response:
    record = await _records.get_job(deps.store, tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    key = keys.thumbnail(record.object_key)
    try:
        data = await deps.objects.get_bytes(key)
    except ObjectNotFoundError:
        raise ApiError(404, "not_found", f"job {job_id} has no thumbnail") from None
    disposition = content_disposition("inline", f"{_stem(record)}.thumbnail.jpg")
    headers = PHOTO_HEADERS | {"Content-Disposition": disposition}
    return Response(data, media_type="image/jpeg", headers=headers)


@router.get(
    "/{job_id}/photo",
    response_class=Response,
    responses={200: {"content": {"image/*": {}}}, **error_responses(401, 404, 422)},
)
async def get_photo(job_id: uuid.UUID, deps: DepsDep, tenant: CurrentTenant) -> Response:
    """The photo as uploaded (the job detail draws its detections on it)."""
    record = await _records.get_job(deps.store, tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    try:
        data = await deps.objects.get_bytes(record.object_key)
    except ObjectNotFoundError:
        raise ApiError(404, "not_found", f"job {job_id} has no photo any more") from None
    extension = posixpath.splitext(record.object_key)[1]
    media = keys.original_content_type(record.object_key)
    # Inline: the dashboard shows it in an <img>; a browser that opens it alone shows it too,
    # sandboxed. Named after the client's file, with the extension of what it is.
    name = f"{_stem(record)}{extension}"
    headers = PHOTO_HEADERS | {"Content-Disposition": content_disposition("inline", name)}
    return Response(data, media_type=media, headers=headers)


@router.delete(
    "/{job_id}",
    status_code=204,
    response_class=Response,
    responses=error_responses(401, 403, 404, 409, 422),  # 409: the job has not finished
)
async def delete_job(job_id: uuid.UUID, deps: DepsDep, tenant: WritingTenant) -> Response:
    """Delete a finished job: its record, result and files; it leaves every view (its
    `deleted` event reaches the projection through the outbox). 409 while it has not finished
    (cancel it first); 404 when there is no such job (deleted already)."""
    try:
        record = await _records.delete_job(
            deps.store, deps.bus.topology.job_event, tenant.id, job_id
        )
    except ConflictError as exc:
        raise ApiError(409, "not_final", str(exc)) from None
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    deps.relay.notify()
    try:  # reads see it gone at once, before the projector has folded its `deleted` event
        await deps.redis.set(redis_keys.tombstone_key(job_id), "1", ex=DELETED_TTL_S)
    except RedisError as exc:
        log.warning("job %s deleted; its tombstone not set (%s)", job_id, exc)
    for key in keys.job_objects(record.object_key):
        await deps.objects.delete(key)
    return Response(status_code=204)


@router.post(
    "/{job_id}/cancel",
    status_code=202,
    response_model=JobCancel,
    responses=error_responses(401, 403, 404, 409, 422),  # 409: the job has finished
)
async def cancel_job(job_id: uuid.UUID, deps: DepsDep, tenant: WritingTenant) -> dict[str, Any]:
    """Cancel a job that has not finished: 202 once the request is queued (the job turns
    `cancelled` within moments); 409 for a job that has already finished."""
    record = await _records.get_job(deps.store, tenant.id, job_id)
    if record is None:
        raise ApiError(404, "not_found", f"no job {job_id}")
    if record.status in FINAL:
        raise ApiError(409, "already_final", f"job {job_id} is {record.status} already")
    ref = JobRef(tenant_id=str(tenant.id), session_id=str(record.session_id), job_id=str(job_id))
    await request_cancel(deps, ref)
    return {"job_id": str(job_id), "status": "cancelling"}
