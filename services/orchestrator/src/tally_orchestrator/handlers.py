"""Message handlers: plain async functions of a decoded message and the service's Deps."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from tally_bus import Route, trace_headers
from tally_contracts import sequence
from tally_contracts.v1 import (
    Cancel,
    ChunkDetections,
    ChunkResult,
    DetectChunk,
    JobEvent,
    JobRef,
    PhotoUploaded,
    SliceBox,
)
from tally_db import FINAL_STATUSES, Job, OutboxEntry, PlannedChunk
from tally_inference import LABELS, DetectParams, SliceParams, SliceResult, merge_detections
from tally_orchestrator._planning import plan_chunks
from tally_orchestrator.deps import Deps
from tally_storage import JobResult, StoredDetection, keys

log = logging.getLogger(__name__)
# Jobs failed for good, by the failure's code (stalled, chunk_lost, planning_failed, ...).
FAILED = Counter("tally_jobs_failed", "Jobs failed, by code", ["code"])


def _event(job: JobRef, sequence: int, **kind: Any) -> JobEvent:
    now = Timestamp()
    now.FromDatetime(datetime.now(UTC))
    return JobEvent(
        event_id=uuid.uuid4().hex,
        job=job,
        sequence=sequence,
        emitted_at=now,
        source="orchestrator",
        **kind,
    )


def _entry(route: Route[Message], message: Message) -> OutboxEntry:
    return OutboxEntry(
        route.exchange,
        route.routing_key,
        message.DESCRIPTOR.full_name,
        message.SerializeToString(),
        trace_headers(),
    )


async def handle_photo_uploaded(message: PhotoUploaded, deps: Deps) -> None:
    """Plan the photo's slices and hold its chunks for the dispatcher, exactly once per job.

    The plan, the held DetectChunks and the `planned` event are committed together (outbox), so
    a crash can neither lose the dispatch nor dispatch twice; a redelivered PhotoUploaded finds
    the job planned and changes nothing.
    """
    job = message.job
    tenant_id, job_id = uuid.UUID(job.tenant_id), uuid.UUID(job.job_id)
    params = SliceParams(message.params.slice_size, message.params.overlap)
    settings = deps.settings
    chunks = plan_chunks(
        message.width, message.height, params, settings.chunk_slices, settings.chunk_batch
    )
    total = sum(len(c) for c in chunks)
    routes = deps.bus.topology
    held = [
        PlannedChunk(
            index,
            len(chunk),
            _entry(
                routes.detect_chunk,
                DetectChunk(
                    job=job,
                    chunk_index=index,
                    chunk_count=len(chunks),
                    attempt=1,
                    object_key=message.object_key,
                    width=message.width,
                    height=message.height,
                    slices=[SliceBox(x1=b[0], y1=b[1], x2=b[2], y2=b[3]) for b in chunk],
                    slice_size=params.slice_size,
                    confidence=message.params.confidence,
                    total_slices=total,
                ),
            ),
        )
        for index, chunk in enumerate(chunks)
    ]
    planned = _event(
        job,
        sequence.PLANNED,
        planned=JobEvent.Planned(total_slices=total, chunk_count=len(chunks)),
    )
    entries = [_entry(routes.job_event, planned)]
    if await deps.store.plan_job(tenant_id, job_id, total, len(chunks), entries, held):
        deps.relay.notify()
        deps.dispatcher.notify()
        log.info("job %s: %d slices in %d chunks", job_id, total, len(chunks))
    else:
        log.info("job %s is planned already, cancelled or unknown: nothing to do", job_id)


def _slice_results(payloads: list[bytes]) -> list[SliceResult]:
    parts = []
    for payload in payloads:
        for found in ChunkDetections.FromString(payload).slices:
            box = (found.slice.x1, found.slice.y1, found.slice.x2, found.slice.y2)
            detections = list(found.detections)
            parts.append(
                SliceResult(
                    box,
                    np.array([[d.x1, d.y1, d.x2, d.y2] for d in detections], np.float32).reshape(
                        -1, 4
                    ),
                    np.array([d.score for d in detections], np.float32),
                    np.array([LABELS.index(d.label) for d in detections], np.int64),
                )
            )
    return parts


async def handle_chunk_result(message: ChunkResult, deps: Deps) -> None:
    """Fan-in: record the chunk once, announce progress, and when the job's last chunk is in,
    merge across slices, store the result and complete the job. A failed chunk fails the job."""
    job = message.job
    tenant_id, job_id = uuid.UUID(job.tenant_id), uuid.UUID(job.job_id)
    events = deps.bus.topology.job_event

    if message.WhichOneof("outcome") != "detections":
        failure = message.failure
        reason = f"chunk {message.chunk_index}: {failure.message or 'no outcome'}"
        await _fail(job, failure.code or "chunk_failed", reason, deps)
        return

    def progress(state: Job, chunks_done: int) -> list[OutboxEntry]:
        event = _event(
            job,
            sequence.progress(chunks_done),
            progress=JobEvent.Progress(slices_done=state.processed, total_slices=state.total),
        )
        return [_entry(events, event)]

    state = await deps.store.record_chunk(
        tenant_id,
        job_id,
        message.chunk_index,
        len(message.detections.slices),
        message.detections.SerializeToString(),
        progress,
    )
    if state is None or state.status in FINAL_STATUSES:
        return
    deps.relay.notify()
    deps.dispatcher.notify()  # its slot is free
    if await deps.store.chunks_recorded(job_id) < state.chunk_count:
        return
    await _complete(message, state, deps)


async def _complete(message: ChunkResult, state: Job, deps: Deps) -> None:
    payloads = await deps.store.chunk_payloads(state.tenant_id, state.id)
    parts = _slice_results(payloads)
    merged = await asyncio.to_thread(
        merge_detections, parts, state.width, state.height, DetectParams()
    )
    result_key = keys.result(state.object_key)
    body = JobResult(
        job_id=str(state.id),
        width=state.width,
        height=state.height,
        counts=merged.counts,
        detections=[StoredDetection.model_validate(d.to_json()) for d in merged.detections],
    )
    await deps.objects.put_bytes(result_key, body.to_bytes(), "application/json")
    warnings = [] if merged.detections else ["no_detections"]
    completed = _event(
        message.job,
        sequence.FINAL,
        completed=JobEvent.Completed(
            counts=merged.counts,
            detections=len(merged.detections),
            result_key=result_key,
            warnings=warnings,
        ),
    )
    done = await deps.store.complete_job(
        state.tenant_id,
        state.id,
        merged.counts,
        len(merged.detections),
        result_key,
        warnings,
        [_entry(deps.bus.topology.job_event, completed)],
    )
    if done:
        deps.relay.notify()
        log.info("job %s completed: %s", state.id, merged.counts)


async def handle_cancel(message: Cancel, deps: Deps) -> None:
    """Cancel a job, or every job of a session when the message names no job: what has not
    finished becomes `cancelled` (with its event, through the outbox) and stays so. Chunks still
    queued for it are skipped by the detectors (they see the gateway's cancel marker); results
    that still come in find the job final and are dropped. Repeating a cancel changes nothing."""
    job = message.job
    tenant_id, session_id = uuid.UUID(job.tenant_id), uuid.UUID(job.session_id)
    job_id = uuid.UUID(job.job_id) if job.job_id else None
    reason = message.reason or "cancelled on request"
    events = deps.bus.topology.job_event

    def cancelled(state: Job) -> list[OutboxEntry]:
        ref = JobRef(tenant_id=job.tenant_id, session_id=job.session_id, job_id=str(state.id))
        event = _event(ref, sequence.FINAL, cancelled=JobEvent.Cancelled(reason=reason))
        return [_entry(events, event)]

    jobs = await deps.store.cancel_jobs(tenant_id, session_id, job_id, reason, cancelled)
    if jobs:
        deps.relay.notify()
        deps.dispatcher.notify()
    log.info("session %s: cancelled %d jobs (%s)", session_id, len(jobs), reason)


async def _fail(job: JobRef, code: str, reason: str, deps: Deps) -> None:
    """Fail the job for good (once; a final job stays as it is), with its `failed` event."""
    failed = _event(job, sequence.FINAL, failed=JobEvent.Failed(code=code, message=reason))
    entries = [_entry(deps.bus.topology.job_event, failed)]
    if await deps.store.fail_job(
        uuid.UUID(job.tenant_id), uuid.UUID(job.job_id), code, reason, entries
    ):
        FAILED.labels(code).inc()
        deps.relay.notify()
        deps.dispatcher.notify()


async def give_up_photo(message: PhotoUploaded, reason: str, deps: Deps) -> None:
    """A photo that could not be planned after every attempt: its job fails with the reason."""
    await _fail(message.job, "planning_failed", f"the photo could not be planned: {reason}", deps)


async def give_up_result(message: ChunkResult, reason: str, deps: Deps) -> None:
    """A chunk result that could not be recorded after every attempt: its job fails."""
    text = f"chunk {message.chunk_index}: its result could not be recorded: {reason}"
    await _fail(message.job, "result_failed", text, deps)


async def fail_stalled(deps: Deps) -> int:
    """Fail jobs that have been `processing` without progress for `stalled_after_s`: none is
    left `processing` forever (its chunks were lost, its detectors vanished and the broker gave
    them up). Safe on every replica at once: a job fails once. Returns how many it failed."""
    quiet = deps.settings.stalled_after_s
    jobs = await deps.store.stalled_jobs(quiet)
    for job in jobs:
        ref = JobRef(
            tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id)
        )
        reason = f"no progress for {quiet:.0f} s: its remaining chunks were lost"
        await _fail(ref, "stalled", reason, deps)
        log.warning("job %s failed: %s", job.id, reason)
    return len(jobs)


async def recover_lost(deps: Deps) -> int:
    """Send again the chunks out with the detectors for `chunk_lost_after_s` without a result,
    and fail the jobs of those sent `chunk_max_dispatches` times already. Only when no chunk
    waits in the detectors' queue and detectors consume it: otherwise a chunk out that long may
    still be waiting its turn (no detector running yet, after a scale to zero). Returns how
    many chunks went back to the dispatcher."""
    s = deps.settings
    state = await deps.bus.queue_state(deps.bus.topology.chunks_queue)
    if state.ready or not state.consumers:
        return 0
    lost = await deps.store.lost_chunks(s.chunk_lost_after_s, s.chunk_max_dispatches)
    for job_id, index in lost.redispatched:
        log.warning("job %s: chunk %d lost with the detectors: sending it again", job_id, index)
    if lost.redispatched:
        deps.dispatcher.notify()
    for job in lost.exhausted:
        ref = JobRef(
            tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id)
        )
        reason = (
            f"a chunk was sent to the detectors {s.chunk_max_dispatches} times "
            f"and never came back ({s.chunk_lost_after_s:.0f} s each)"
        )
        await _fail(ref, "chunk_lost", reason, deps)
        log.warning("job %s failed: %s", job.id, reason)
    return len(lost.redispatched)


async def sweep_stalled(deps: Deps) -> None:
    """recover_lost and fail_stalled every `stalled_check_s`, until cancelled."""
    while True:
        try:
            await recover_lost(deps)
            await fail_stalled(deps)
        except Exception as exc:  # the database is away: next time
            log.warning("stalled-job sweep failed: %s", exc)
        await asyncio.sleep(deps.settings.stalled_check_s)
