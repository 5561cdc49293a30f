"""POST /v1/sessions/{sid}/photos: take photos, refuse bad ones, queue a job per good one."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from opentelemetry import propagate, trace
from prometheus_client import Counter

from tally_bus import trace_headers
from tally_db import OutboxEntry, Session, Tenant
from tally_inference import ImageError, inspect_image
from tally_storage import keys
from tally_upload._budget import BudgetBusyError, release_freed_memory
from tally_upload._intake import (
    AcceptedPhoto,
    RejectedPhoto,
    check_photo,
    safe_filename,
    status_for,
)
from tally_upload._multipart import FilePart, Limits, boundary_of, read_files
from tally_upload._records import NewJob, add_jobs, new_job_messages
from tally_upload.config import Settings
from tally_upload.deps import Deps, DepsDep
from tally_upload.schemas import PhotosAccepted, PhotosRefused
from tally_web import ApiError, WritingTenant, envelope
from tally_web.schemas import ErrorEnvelope, error_responses

router = APIRouter(prefix="/v1/sessions", tags=["photos"])

PHOTOS = Counter("tally_upload_photos_total", "Photos received, by outcome", ["outcome", "code"])
# Per-tenant load, for dashboards (a label per tenant: as many series as tenants).
TENANT_PHOTOS = Counter("tally_tenant_photos", "Photos accepted, by tenant", ["tenant"])
TENANT_BYTES = Counter(
    "tally_tenant_photo_bytes", "Bytes of photos accepted, by tenant", ["tenant"]
)
tracer = trace.get_tracer("tally_upload")
T = TypeVar("T")
# After a decode this large, freed memory goes back to the system (a few ms; small ones would
# only pay for it).
TRIM_AFTER_PIXELS = 10_000_000


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_file_bytes=settings.max_file_bytes,
        max_files=settings.max_files_per_request,
        max_request_bytes=settings.max_request_bytes,
    )


async def _intake(part: FilePart, deps: Deps) -> AcceptedPhoto | RejectedPhoto:
    settings = deps.settings
    filename = safe_filename(part.filename)
    if part.data is None:
        mb = settings.max_file_bytes / 1024 / 1024
        return RejectedPhoto(filename, "file_too_large", f"the file is over {mb:.0f} MB")
    data = part.data
    try:
        # The header alone says what the decode will cost, and refuses what is over the limits.
        info = await asyncio.to_thread(inspect_image, data, settings.max_pixels)
    except ImageError as exc:
        return RejectedPhoto(filename, exc.code, exc.message)
    pixels = info.width * info.height
    try:
        async with deps.budget.hold(pixels, settings.decode_wait_s):
            return await _to_the_end(_check, filename, data, settings, pixels)
    except BudgetBusyError:
        return RejectedPhoto(
            filename, "busy", "too many photos are being checked at once: send this one again"
        )


def _check(
    filename: str, data: bytes, settings: Settings, pixels: int
) -> AcceptedPhoto | RejectedPhoto:
    """The decode and its clean-up, in one worker thread."""
    outcome = check_photo(filename, data, settings.max_pixels, settings.thumbnail_size)
    if pixels >= TRIM_AFTER_PIXELS:
        release_freed_memory()
    return outcome


async def _to_the_end(function: Callable[..., T], *args: Any) -> T:
    """`function(*args)` in a worker thread. A caller cancelled meanwhile still waits for the
    thread to finish before it goes on (and so lets go of the budget): the decode's memory is
    only free then."""
    work = asyncio.ensure_future(asyncio.to_thread(function, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        await asyncio.wait([work])
        raise


@router.post(
    "/{session_id}/photos",
    status_code=202,
    response_model=PhotosAccepted,
    responses={
        # 400: no `file` part, another field, too many parts, a malformed body; 403: a read key
        **error_responses(400, 401, 403, 404),
        413: {
            "model": PhotosRefused | ErrorEnvelope,
            "description": "every file is over the size limit; or the request is over its limit "
            "(`request_too_large`, refused by its Content-Length before it is read)",
        },
        415: {
            "model": PhotosRefused | ErrorEnvelope,
            "description": "no file is a supported image; or the body is not multipart/form-data",
        },
        422: {
            "model": PhotosRefused | ErrorEnvelope,
            "description": "every file refused (unreadable, over the pixel limit, or refused "
            "for different reasons); or the request itself is invalid",
        },
        503: {
            "model": PhotosRefused,
            "description": "every file waited too long for room to be decoded (`busy`): send "
            "them again after `Retry-After` seconds",
            "headers": {"Retry-After": {"schema": {"type": "integer"}}},
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
    limits = _limits(deps.settings)
    boundary = boundary_of(request.headers, limits)  # refuses by the headers, before the body
    session = await deps.store.get_session(tenant.id, session_id)
    if session is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    accepted: list[AcceptedPhoto] = []
    rejected: list[RejectedPhoto] = []
    if boundary is not None:
        # Each file is checked as soon as its part has ended; a refused one's bytes go at once.
        async with contextlib.aclosing(read_files(boundary, request.stream(), limits)) as parts:
            async for part in parts:
                outcome = await _intake(part, deps)
                if isinstance(outcome, AcceptedPhoto):
                    accepted.append(outcome)
                else:
                    rejected.append(outcome)
    if not accepted and not rejected:
        raise ApiError(400, "no_files", "send one or more multipart parts named 'file'")
    for r in rejected:
        PHOTOS.labels("rejected", r.code).inc()

    rejections = [r.to_json() for r in rejected]
    if not accepted:
        status = status_for(rejected)
        codes = {r.code for r in rejected}
        code = codes.pop() if len(codes) == 1 else "photos_rejected"
        body = envelope(
            code, "no file in the request is an acceptable photo", jobs=[], rejected=rejections
        )
        # Busy files may be sent again as they are, once the decodes ahead of them are done.
        headers = {"Retry-After": str(math.ceil(deps.settings.decode_wait_s))}
        return JSONResponse(body, status_code=status, headers=headers if status == 503 else None)

    jobs = await _store(session, accepted, deps)
    PHOTOS.labels("accepted", "").inc(len(jobs))
    TENANT_PHOTOS.labels(str(tenant.id)).inc(len(jobs))
    TENANT_BYTES.labels(str(tenant.id)).inc(sum(len(photo.data) for photo in accepted))
    payload: dict[str, Any] = {
        "session_id": str(session.id),
        "jobs": [
            {
                "job_id": str(j.id),
                "image_id": str(j.image_id),
                "filename": j.filename,
                "status": "queued",
            }
            for j in jobs
        ],
        "rejected": rejections,
    }
    return PhotosAccepted.model_validate(payload)


async def _store(session: Session, photos: list[AcceptedPhoto], deps: Deps) -> list[NewJob]:
    """Originals and thumbnails to S3, then job rows and their messages in one transaction."""
    jobs: list[NewJob] = []
    messages: list[OutboxEntry] = []
    written: list[str] = []
    try:
        for photo in photos:
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
                id=job_id,
            )
            # The upload request's trace continues in the consumers.
            messages += new_job_messages(job, session.params, deps.bus.topology, trace_headers())
            jobs.append(job)
        await add_jobs(deps.store, jobs, messages)
    except BaseException:
        # Nothing was committed: do not leave objects that no job points to.
        for key in written:
            with contextlib.suppress(Exception):
                await deps.objects.delete(key)
        raise
    deps.relay.notify()
    return jobs
