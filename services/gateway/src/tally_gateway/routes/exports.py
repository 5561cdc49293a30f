"""GET /v1/sessions/{sid}/export: a session's jobs and results as CSV, JSON Lines or one COCO
document, streamed: a page of jobs from PostgreSQL at a time, that page's result documents from
the object store a few at once, written out before the next page is read. What an export holds
in memory is a page, whatever the session's size."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import IO, Annotated, Final, Literal

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from tally_contracts.statuses import JobStatus
from tally_db import Caller
from tally_gateway import _records
from tally_gateway._exports import Coco, csv_header, csv_row, json_line
from tally_gateway._records import Exported
from tally_gateway.deps import Deps, DepsDep
from tally_gateway.routes.jobs import DOWNLOAD_HEADERS, content_disposition
from tally_gateway.schemas import CocoDocument
from tally_storage import JobResult as StoredResult
from tally_storage import ObjectNotFoundError
from tally_web import ApiError, CurrentCaller
from tally_web.ratelimit import READ_COST, caller_buckets, rate_limited
from tally_web.schemas import error_responses

router = APIRouter(prefix="/v1/sessions", tags=["exports"])

PAGE: Final = 50  # jobs read at once, and so the most result documents held at once
FETCHES: Final = 8  # result documents fetched from the object store at once
# An export's price in reads: one per 20 of the session's jobs (at least one), about what
# reading them a page at a time would cost; a bucket holds less than a big session's price, so
# a big export empties its key's read bucket (make bench-export: a 5,000-job export reads
# 5,000 result documents).
JOBS_PER_READ: Final = 20
SPOOL_BLOCK: Final = 64 * 1024

Format = Literal["csv", "json", "coco"]
MEDIA_TYPES: Final[dict[str, str]] = {
    "csv": "text/csv; charset=utf-8",
    "json": "application/x-ndjson",
    "coco": "application/json",
}
EXTENSIONS: Final[dict[str, str]] = {"csv": "csv", "json": "jsonl", "coco": "coco.json"}


def price(jobs: int) -> float:
    """An export's cost in reads, for a session of `jobs` jobs."""
    return max(READ_COST, jobs / JOBS_PER_READ)


@router.get(
    "/{session_id}/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "model": CocoDocument,
            "description": "the export: CSV, JSON Lines, or (`coco`) the COCO document",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/x-ndjson": {"schema": {"type": "string"}},
            },
        },
        **error_responses(401, 404, 422),
    },
)
async def export_session(
    session_id: uuid.UUID,
    deps: DepsDep,
    caller: CurrentCaller,
    fmt: Annotated[
        Format,
        Query(
            alias="format",
            description="`csv`: a row per job; `json`: JSON Lines, a job and its result per "
            "line; `coco`: one COCO detection document of the completed jobs",
        ),
    ] = "json",
) -> StreamingResponse:
    """The session's jobs (oldest first) and their results, streamed. An error after the
    answer has started (the object store gone) ends the body short: CSV and JSON Lines end
    after a whole line, COCO is then not a whole JSON document; the connection closes without
    the body's proper end, so a client tells a cut-off export from a complete one."""
    tenant = caller.tenant
    if await deps.store.get_session(tenant.id, session_id) is None:
        raise ApiError(404, "not_found", f"no session {session_id}")
    plan = await _records.export_plan(deps.store, tenant.id, session_id)
    await _charge(deps, caller, price(plan.jobs))
    if fmt == "csv":
        body = _csv(deps, tenant.id, session_id, plan.labels)
    elif fmt == "json":
        body = _json_lines(deps, tenant.id, session_id)
    else:
        body = _coco(deps, tenant.id, session_id, plan.labels)
    name = f"tally-session-{session_id}.{EXTENSIONS[fmt]}"
    headers = DOWNLOAD_HEADERS | {
        "Content-Disposition": content_disposition("attachment", name),
        "Cache-Control": "no-store",
    }
    return StreamingResponse(body, media_type=MEDIA_TYPES[fmt], headers=headers)


async def _charge(deps: Deps, caller: Caller, cost: float) -> None:
    """Take what the export costs beyond the one read the rate limiter charged on the way in
    from the caller's read buckets; 429 when they lack room for it."""
    extra = cost - READ_COST
    if extra <= 0:
        return
    buckets = caller_buckets(caller, "read", deps.limiter.limits)
    decision = await deps.limiter.take(buckets, extra)
    if not decision.allowed:
        raise rate_limited(decision, "read")


async def _pages(
    deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID
) -> AsyncIterator[list[Exported]]:
    after: tuple[datetime, uuid.UUID] | None = None
    while True:
        page = await _records.export_page(deps.store, tenant_id, session_id, after, PAGE)
        if page:
            yield page
        if len(page) < PAGE:
            return
        after = (page[-1].job.created_at, page[-1].job.id)


async def _documents(deps: Deps, page: list[Exported]) -> list[tuple[Exported, bytes | None]]:
    """Each job of the page with its result document (None unless it completed), fetched
    `FETCHES` at once. A job whose document is gone was deleted since the page was read: it
    is left out, as a job deleted before the export began is."""
    gate = asyncio.Semaphore(FETCHES)

    async def fetch(entry: Exported) -> tuple[Exported, bytes | None] | None:
        if entry.result_key is None or entry.job.status != JobStatus.COMPLETED:
            return entry, None
        async with gate:
            try:
                return entry, await deps.objects.get_bytes(entry.result_key)
            except ObjectNotFoundError:
                return None

    async with asyncio.TaskGroup() as group:  # one failure cancels the page's other fetches
        tasks = [group.create_task(fetch(entry)) for entry in page]
    return [found for task in tasks if (found := task.result()) is not None]


async def _csv(
    deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID, labels: list[str]
) -> AsyncIterator[bytes]:
    """The CSV needs only PostgreSQL: the results' index holds the counts."""
    yield csv_header(labels)
    async for page in _pages(deps, tenant_id, session_id):
        yield b"".join(csv_row(e.job, e.counts, e.detections, labels) for e in page)


async def _json_lines(
    deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID
) -> AsyncIterator[bytes]:
    async for page in _pages(deps, tenant_id, session_id):
        documents = await _documents(deps, page)
        yield await asyncio.to_thread(_json_page, documents)  # parsing and encoding: CPU


def _json_page(documents: list[tuple[Exported, bytes | None]]) -> bytes:
    return b"".join(
        json_line(entry.job, None if data is None else StoredResult.from_bytes(data))
        for entry, data in documents
    )


async def _coco(
    deps: Deps, tenant_id: uuid.UUID, session_id: uuid.UUID, labels: list[str]
) -> AsyncIterator[bytes]:
    """One pass over the jobs: the annotations go out as each page's results come in, and each
    completed job's entry of `images` (a few dozen bytes) waits in a temporary file until they
    are all out; the categories come last, so a label first seen mid-export has its own too.
    Failed, cancelled and unfinished jobs have no image: COCO has nothing to say of them."""
    coco = Coco(f"Tally session {session_id}", datetime.now(UTC), labels)
    images: IO[bytes] = await asyncio.to_thread(tempfile.TemporaryFile)
    try:
        yield coco.head()
        async for page in _pages(deps, tenant_id, session_id):
            documents = await _documents(deps, page)
            annotations = await asyncio.to_thread(_coco_page, coco, documents, images)
            if annotations:
                yield annotations
        yield coco.between()
        await asyncio.to_thread(images.seek, 0)
        while block := await asyncio.to_thread(images.read, SPOOL_BLOCK):
            yield block
        yield coco.tail()
    finally:
        await asyncio.to_thread(images.close)


def _coco_page(
    coco: Coco, documents: list[tuple[Exported, bytes | None]], images: IO[bytes]
) -> bytes:
    """A page's annotations; its images appended to `images`, comma-separated."""
    annotations = []
    for entry, data in documents:
        if data is None:
            continue
        result = StoredResult.from_bytes(data)
        image_id = coco.next_image()
        annotations.append(coco.annotations(image_id, result))
        images.write((b"," if image_id > 1 else b"") + coco.image(image_id, entry.job, result))
    return b"".join(annotations)
