"""POST /v1/sessions/{sid}/photos: take photos, refuse bad ones, queue a job per good one."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from opentelemetry import propagate, trace
from prometheus_client import Counter
from starlette.datastructures import UploadFile

from tally_bus import trace_headers
from tally_db import OutboxEntry, Session, Tenant, usage_now
from tally_storage import keys
from tally_upload._intake import AcceptedPhoto, RejectedPhoto, check_photo, status_for
from tally_upload._quota import (
    Costed,
    QuotaExceededError,
    first_breach,
    planned_slices,
    within_bounds,
)
from tally_upload._records import NewJob, add_jobs, detection_params, new_job_messages
from tally_upload.deps import Deps, DepsDep
from tally_upload.schemas import PhotosAccepted, PhotosRefused
from tally_web import ApiError, WritingTenant, envelope
from tally_web.limits import Limits
from tally_web.schemas import ErrorEnvelope, error_responses

router = APIRouter(prefix="/v1/sessions", tags=["photos"])

PHOTOS = Counter("tally_upload_photos_total", "Photos received, by outcome", ["outcome", "code"])
# Per-tenant load, for dashboards (a label per tenant: as many series as tenants).
TENANT_PHOTOS = Counter("tally_tenant_photos", "Photos accepted, by tenant", ["tenant"])
TENANT_BYTES = Counter(
    "tally_tenant_photo_bytes", "Bytes of photos accepted, by tenant", ["tenant"]
)
READ_CHUNK = 1024 * 1024
tracer = trace.get_tracer("tally_upload")


async def _read_capped(upload: UploadFile, limit: int) -> bytes | None:
    """The file's bytes, or None once it is over `limit` (the rest is not read)."""
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(READ_CHUNK):
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


async def _intake(upload: UploadFile, deps: Deps) -> AcceptedPhoto | RejectedPhoto:
    settings = deps.settings
    filename = upload.filename or "unnamed"
    data = await _read_capped(upload, settings.max_file_bytes)
    if data is None:
        mb = settings.max_file_bytes / 1024 / 1024
        return RejectedPhoto(filename, "file_too_large", f"the file is over {mb:.0f} MB")
    return await asyncio.to_thread(
        check_photo, filename, data, settings.max_pixels, settings.thumbnail_size
    )


@router.post(
    "/{session_id}/photos",
    status_code=202,
    response_model=PhotosAccepted,
    responses={
        **error_responses(400, 401, 403, 404),  # 400: no `file` part, or too many; 403: read key
        413: {"model": PhotosRefused, "description": "every file is over the size limit"},
        415: {"model": PhotosRefused, "description": "no file is a supported image"},
        422: {
            "model": PhotosRefused | ErrorEnvelope,
            "description": "every file refused (unreadable, over the pixel limit, planning "
            "more slices than a photo may, past the request's pixel limit, or refused for "
            "different reasons); or the request itself is invalid",
        },
        429: {
            "model": ErrorEnvelope,
            "description": "`quota_exceeded`: the photos would go over one of the tenant's "
            "quotas (queued work, slices a day or a month); nothing was stored",
            "headers": {
                "Retry-After": {
                    "description": "seconds until the quota may have room",
                    "schema": {"type": "integer"},
                }
            },
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            }
                        },
                        "required": ["file"],
                    }
                }
            },
        }
    },
)
async def upload_photos(
    session_id: uuid.UUID, request: Request, deps: DepsDep, tenant: WritingTenant
) -> PhotosAccepted | JSONResponse:
    # The trace of this request continues through the outbox, the bus, Triton and the projector.
    with tracer.start_as_current_span(
        "POST /v1/sessions/{sid}/photos",
        context=propagate.extract(dict(request.headers)),
        kind=trace.SpanKind.SERVER,
        attributes={"tally.tenant_id": str(tenant.id), "tally.session_id": str(session_id)},
    ):
        return await _upload_photos(session_id, request, deps, tenant)


async def _upload_photos(
    session_id: uuid.UUID, request: Request, deps: Deps, tenant: Tenant
) -> PhotosAccepted | JSONResponse:
    session = await deps.store.get_session(tenant.id, session_id)
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    accepted: list[AcceptedPhoto] = []
    rejected: list[RejectedPhoto] = []
    # The form's spooled files are closed when the block ends.
    async with request.form(max_files=deps.settings.max_files_per_request) as form:
        uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        if not uploads:
            raise ApiError(400, "no_files", "send one or more multipart parts named 'file'")
        for upload in uploads:
            outcome = await _intake(upload, deps)
            if isinstance(outcome, AcceptedPhoto):
                accepted.append(outcome)
            else:
                rejected.append(outcome)
    limits = deps.limits.for_tenant(tenant)
    params = detection_params(session.params)
    costs = await asyncio.to_thread(
        lambda: [planned_slices(p.width, p.height, params) for p in accepted]
    )
    kept, refused = within_bounds(
        [Costed(p, n) for p, n in zip(accepted, costs, strict=True)], limits, params.slice_size
    )
    rejected += refused
    for r in rejected:
        PHOTOS.labels("rejected", r.code).inc()

    rejections = [r.to_json() for r in rejected]
    if not kept:
        status = status_for(rejected)
        codes = {r.code for r in rejected}
        code = codes.pop() if len(codes) == 1 else "photos_rejected"
        body = envelope(
            code, "no file in the request is an acceptable photo", jobs=[], rejected=rejections
        )
        return JSONResponse(body, status_code=status)

    try:
        # Checked here before anything is stored, and again, race-safe, as the jobs are added.
        usage = await usage_now(deps.store.pool, tenant.id)
        breach = first_breach(usage, limits, len(kept), sum(c.slices for c in kept))
        if breach is not None:
            raise QuotaExceededError(breach)
        jobs = await _store(session, kept, deps, limits)
    except QuotaExceededError as exc:
        PHOTOS.labels("refused", "quota_exceeded").inc(len(kept))
        return JSONResponse(
            envelope("quota_exceeded", exc.breach.message),
            status_code=429,
            headers={"Retry-After": str(exc.breach.retry_after_s)},
        )
    PHOTOS.labels("accepted", "").inc(len(jobs))
    TENANT_PHOTOS.labels(str(tenant.id)).inc(len(jobs))
    TENANT_BYTES.labels(str(tenant.id)).inc(sum(j.size for j in jobs))
    payload: dict[str, Any] = {
        "session_id": str(session.id),
        "jobs": [
            {
                "job_id": str(j.id),
                "image_id": str(j.image_id),
                "filename": j.filename,
                "status": "queued",
                "planned_slices": j.planned_slices,
            }
            for j in jobs
        ],
        "planned_slices": sum(j.planned_slices for j in jobs),
        "rejected": rejections,
    }
    return PhotosAccepted.model_validate(payload)


async def _store(
    session: Session, photos: list[Costed], deps: Deps, limits: Limits
) -> list[NewJob]:
    """Originals and thumbnails to S3, then job rows, their messages and the tenant's usage in
    one transaction (QuotaExceededError, and nothing kept, if the tenant's quotas were filled
    meanwhile)."""
    jobs: list[NewJob] = []
    messages: list[OutboxEntry] = []
    written: list[str] = []
    try:
        for costed in photos:
            photo = costed.photo
            job_id = uuid.uuid4()
            original = keys.original(session.tenant_id, session.id, job_id, photo.extension)
            thumbnail = keys.thumbnail(original)
            await deps.objects.put_bytes(original, photo.data, photo.content_type)
            written.append(original)
            await deps.objects.put_bytes(thumbnail, photo.thumbnail, "image/jpeg")
            written.append(thumbnail)
            job = NewJob(
                session.tenant_id,
                session.id,
                photo.filename,
                original,
                photo.width,
                photo.height,
                planned_slices=costed.slices,
                size=len(photo.data),
                id=job_id,
            )
            # The upload request's trace continues in the consumers.
            messages += new_job_messages(job, session.params, deps.bus.topology, trace_headers())
            jobs.append(job)
        await add_jobs(deps.store, jobs, messages, limits)
    except BaseException:
        # Nothing was committed: do not leave objects that no job points to.
        for key in written:
            with contextlib.suppress(Exception):
                await deps.objects.delete(key)
        raise
    deps.relay.notify()
    return jobs
