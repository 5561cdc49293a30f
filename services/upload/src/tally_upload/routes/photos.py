"""POST /v1/sessions/{sid}/photos: take photos, refuse bad ones, queue a job per good one."""

from __future__ import annotations

import asyncio
import contextlib
import math
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from opentelemetry import propagate, trace
from prometheus_client import Counter

from tally_bus import trace_headers
from tally_contracts.v1 import DetectionParams
from tally_db import OutboxEntry, Session, Tenant, session_model, usage_now
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
from tally_upload._multipart import FilePart, PartLimits, boundary_of, read_files
from tally_upload._quota import (
    Costed,
    QuotaExceededError,
    first_breach,
    planned_slices,
    within_bounds,
)
from tally_upload._records import NewJob, add_jobs, detection_params, new_job_messages
from tally_upload.config import Settings
from tally_upload.deps import Deps, DepsDep
from tally_upload.schemas import PhotosAccepted, PhotosRefused
from tally_web import ApiError, WritingTenant
from tally_web.limits import Limits
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


def _limits(settings: Settings) -> PartLimits:
    return PartLimits(
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
) -> PhotosAccepted:
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
) -> PhotosAccepted:
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
    tenant_limits = deps.limits.for_tenant(tenant)
    # The session's model as recorded when it was made (None: a session from before the
    # registry, on the built-in default). A deleted model is still this session's.
    model = await session_model(deps.store.pool, session)
    params = detection_params(session.params, model)
    costs = await asyncio.to_thread(
        lambda: [planned_slices(p.width, p.height, params) for p in accepted]
    )
    kept, refused = within_bounds(
        [Costed(p, n) for p, n in zip(accepted, costs, strict=True)],
        tenant_limits,
        params.slice_size,
    )
    rejected += refused
    for r in rejected:
        PHOTOS.labels("rejected", r.code).inc()

    rejections = [r.to_json() for r in rejected]
    if not kept:
        status = status_for(rejected)
        codes = {r.code for r in rejected}
        code = codes.pop() if len(codes) == 1 else "photos_rejected"
        # Busy files may be sent again as they are, once the decodes ahead of them are done.
        retry = {"Retry-After": str(math.ceil(deps.settings.decode_wait_s))}
        raise ApiError(
            status,
            code,
            "no file in the request is an acceptable photo",
            headers=retry if status == 503 else None,
            jobs=[],
            rejected=rejections,
        )

    try:
        # Checked here before anything is stored, and again, race-safe, as the jobs are added.
        usage = await usage_now(deps.store.pool, tenant.id)
        breach = first_breach(usage, tenant_limits, len(kept), sum(c.slices for c in kept))
        if breach is not None:
            raise QuotaExceededError(breach)
        jobs = await _store(session, params, kept, deps, tenant_limits)
    except QuotaExceededError as exc:
        PHOTOS.labels("refused", "quota_exceeded").inc(len(kept))
        raise ApiError(
            429,
            "quota_exceeded",
            exc.breach.message,
            headers={"Retry-After": str(exc.breach.retry_after_s)},
        ) from None
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
    session: Session,
    params: DetectionParams,
    photos: list[Costed],
    deps: Deps,
    limits: Limits,
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
            messages += new_job_messages(job, params, deps.bus.topology, trace_headers())
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
