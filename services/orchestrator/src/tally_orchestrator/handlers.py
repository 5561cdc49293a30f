"""Message handlers: plain async functions of a decoded message and the service's Deps."""

from __future__ import annotations

import asyncio
import logging
import uuid

from prometheus_client import Counter

from tally_bus import trace_headers
from tally_contracts import sequence
from tally_contracts.events import job_event
from tally_contracts.statuses import FINAL
from tally_contracts.v1 import (
    Cancel,
    ChunkResult,
    DetectChunk,
    JobEvent,
    JobRef,
    PhotoUploaded,
    SliceBox,
)
from tally_db import Job, OutboxEntry
from tally_inference import LABELS, SliceParams
from tally_orchestrator._planning import plan_chunks
from tally_orchestrator._records import SOURCE, PlannedChunk, job_ref
from tally_orchestrator._results import job_result, merge_chunks
from tally_orchestrator.deps import Deps
from tally_storage import ResultModel

log = logging.getLogger(__name__)
# Jobs failed for good, by the failure's code (stalled, chunk_lost, planning_failed, ...).
FAILED = Counter("tally_jobs_failed", "Jobs failed, by code", ["code"])


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
    routes, headers = deps.bus.topology, trace_headers()
    held = [
        PlannedChunk(
            index,
            len(chunk),
            OutboxEntry.of(
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
                    model=message.params.model if message.params.HasField("model") else None,
                ),
                headers,
            ),
        )
        for index, chunk in enumerate(chunks)
    ]
    planned = job_event(
        job,
        sequence.PLANNED,
        SOURCE,
        planned=JobEvent.Planned(total_slices=total, chunk_count=len(chunks)),
    )
    entries = [OutboxEntry.of(routes.job_event, planned, headers)]
    uploaded_at = await deps.records.plan_job(tenant_id, job_id, total, len(chunks), entries, held)
    if uploaded_at is not None:
        deps.relay.notify()
        deps.dispatcher.notify()
        deps.waits.planned(uploaded_at)
        deps.waits.notify()  # a tenant may have arrived: every share changes
        log.info("job %s: %d slices in %d chunks", job_id, total, len(chunks))
    else:
        log.info("job %s is planned already, cancelled or unknown: nothing to do", job_id)


async def handle_chunk_result(message: ChunkResult, deps: Deps) -> None:
    """Fan-in: record the chunk once (its progress announced with it), and when the job's last
    chunk is in, merge across slices, store the result and complete the job. A failed chunk
    fails the job."""
    job = message.job
    tenant_id, job_id = uuid.UUID(job.tenant_id), uuid.UUID(job.job_id)

    if message.WhichOneof("outcome") != "detections":
        failure = message.failure
        reason = f"chunk {message.chunk_index}: {failure.message or 'no outcome'}"
        await _fail(job, failure.code or "chunk_failed", reason, deps)
        return

    state = await deps.records.record_chunk(
        tenant_id,
        job_id,
        message.chunk_index,
        len(message.detections.slices),
        message.detections.SerializeToString(),
    )
    if state is None or state.status in FINAL:
        return
    deps.relay.notify()
    deps.dispatcher.notify()  # its slot is free
    if await deps.records.chunks_recorded(job_id) < state.chunk_count:
        return
    await _complete(message, state, deps)


async def _complete(message: ChunkResult, state: Job, deps: Deps) -> None:
    payloads = await deps.records.chunk_payloads(state.tenant_id, state.id)
    model = await deps.records.job_model(state.tenant_id, state.session_id)
    labels = model.labels if model is not None else LABELS
    merged = await asyncio.to_thread(merge_chunks, payloads, state.width, state.height, labels)
    result = job_result(
        state,
        merged,
        None
        if model is None
        else ResultModel(
            model_id=str(model.id), name=model.name, version=model.version, labels=list(labels)
        ),
    )
    await deps.objects.put_bytes(result.key, result.document.to_bytes(), "application/json")
    completed = job_event(
        message.job,
        sequence.FINAL,
        SOURCE,
        completed=JobEvent.Completed(
            counts=result.counts,
            detections=result.detections,
            result_key=result.key,
            warnings=result.warnings,
        ),
    )
    done = await deps.records.complete_job(
        state.tenant_id,
        state.id,
        result.counts,
        result.detections,
        result.key,
        result.warnings,
        [OutboxEntry.of(deps.bus.topology.job_event, completed, trace_headers())],
    )
    if done:
        deps.relay.notify()
        log.info("job %s completed: %s", state.id, result.counts)


async def handle_cancel(message: Cancel, deps: Deps) -> None:
    """Cancel a job, or every job of a session when the message names no job: what has not
    finished becomes `cancelled` (with its event, through the outbox) and stays so. Chunks still
    queued for it are skipped by the detectors (they see the gateway's cancel marker); results
    that still come in find the job final and are dropped. Repeating a cancel changes nothing."""
    job = message.job
    tenant_id, session_id = uuid.UUID(job.tenant_id), uuid.UUID(job.session_id)
    job_id = uuid.UUID(job.job_id) if job.job_id else None
    reason = message.reason or "cancelled on request"
    jobs = await deps.records.cancel_jobs(tenant_id, session_id, job_id, reason)
    if jobs:
        deps.relay.notify()
        deps.dispatcher.notify()
        deps.waits.notify()  # the work ahead of others shrank, or a tenant left
    log.info("session %s: cancelled %d jobs (%s)", session_id, len(jobs), reason)


async def _fail(job: JobRef, code: str, reason: str, deps: Deps) -> None:
    """Fail the job for good (once; a final job stays as it is), with its `failed` event."""
    failed = job_event(
        job, sequence.FINAL, SOURCE, failed=JobEvent.Failed(code=code, message=reason)
    )
    entries = [OutboxEntry.of(deps.bus.topology.job_event, failed, trace_headers())]
    if await deps.records.fail_job(
        uuid.UUID(job.tenant_id), uuid.UUID(job.job_id), code, reason, entries
    ):
        FAILED.labels(code).inc()
        deps.relay.notify()
        deps.dispatcher.notify()
        deps.waits.notify()


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
    jobs = await deps.records.stalled_jobs(quiet)
    for job in jobs:
        reason = f"no progress for {quiet:.0f} s: its remaining chunks were lost"
        await _fail(job_ref(job), "stalled", reason, deps)
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
    lost = await deps.records.lost_chunks(s.chunk_lost_after_s, s.chunk_max_dispatches)
    for job_id, index in lost.redispatched:
        log.warning("job %s: chunk %d lost with the detectors: sending it again", job_id, index)
    if lost.redispatched:
        deps.dispatcher.notify()
    for job in lost.exhausted:
        reason = (
            f"a chunk was sent to the detectors {s.chunk_max_dispatches} times "
            f"and never came back ({s.chunk_lost_after_s:.0f} s each)"
        )
        await _fail(job_ref(job), "chunk_lost", reason, deps)
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
