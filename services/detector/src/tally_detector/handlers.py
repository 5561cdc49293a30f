"""Message handlers: plain async functions of a decoded message and the service's Deps."""

from __future__ import annotations

import asyncio
import functools
import logging
import time

import numpy as np
from numpy.typing import NDArray

from tally_contracts import cancellation, sequence
from tally_contracts.events import job_event
from tally_contracts.v1 import (
    ChunkDetections,
    ChunkFailure,
    ChunkResult,
    DetectChunk,
    Detection,
    JobEvent,
    SliceBox,
    SliceDetections,
)
from tally_detector.deps import Deps
from tally_inference import (
    LABELS,
    DetectParams,
    ImageError,
    SlicedDetector,
    SliceParams,
    SliceResult,
    decode_checked_image,
)
from tally_storage import ObjectNotFoundError

log = logging.getLogger(__name__)


class JobCancelledError(Exception):
    """The chunk's job (or its session) was cancelled: stop working on it."""


async def _cancelled(message: DetectChunk, deps: Deps) -> bool:
    """Whether the gateway has marked the chunk's job or session cancelled (one round trip)."""
    marked = await deps.redis.exists(
        cancellation.job_key(message.job.job_id), cancellation.session_key(message.job.session_id)
    )
    return bool(marked)


class ChunkFailedError(Exception):
    """A chunk that can never succeed (missing or unreadable photo, inconsistent request)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


async def _photo(message: DetectChunk, deps: Deps) -> NDArray[np.uint8]:
    return await deps.photos.get(message.object_key, functools.partial(_load, message, deps))


async def _load(message: DetectChunk, deps: Deps) -> NDArray[np.uint8]:
    try:
        data = await deps.objects.get_bytes(message.object_key)
    except ObjectNotFoundError:
        raise ChunkFailedError("original_missing", "the photo is not in the object store") from None
    try:
        # The upload checked every byte of the photo before storing it.
        photo = await asyncio.to_thread(decode_checked_image, data)
    except ImageError as exc:
        raise ChunkFailedError("image_unreadable", exc.message) from None
    height, width = photo.shape[:2]
    if (width, height) != (message.width, message.height):
        raise ChunkFailedError(
            "size_mismatch",
            f"the stored photo is {width}x{height}, the job says {message.width}x{message.height}",
        )
    return photo


def _result(message: DetectChunk, parts: list[SliceResult]) -> ChunkDetections:
    labels = list(message.model.labels) or LABELS
    return ChunkDetections(
        slices=[
            SliceDetections(
                slice=SliceBox(
                    x1=p.slice_box[0], y1=p.slice_box[1], x2=p.slice_box[2], y2=p.slice_box[3]
                ),
                detections=[
                    Detection(
                        x1=float(b[0]),
                        y1=float(b[1]),
                        x2=float(b[2]),
                        y2=float(b[3]),
                        score=float(s),
                        label=labels[int(c)],
                    )
                    for b, s, c in zip(p.boxes, p.scores, p.classes, strict=True)
                ],
            )
            for p in parts
        ]
    )


def _started(message: DetectChunk) -> JobEvent:
    """The job is being worked on: `processing` from the first chunk any detector starts."""
    return job_event(
        message.job,
        sequence.STARTED,
        "detector",
        started=JobEvent.Started(chunk_index=message.chunk_index),
    )


def _params(message: DetectChunk, deps: Deps) -> tuple[SliceParams, DetectParams]:
    """The chunk's slicing and detection parameters; a ChunkFailedError when the message holds
    values they refuse (a permanent error: retrying the same message fails the same way)."""
    try:
        batch = deps.settings.batch_size
        if message.model.max_batch:  # a graph of fixed batch: one slice a request
            batch = min(batch, message.model.max_batch)
        return SliceParams(slice_size=message.slice_size), DetectParams(
            confidence=message.confidence,
            batch_size=batch,
            max_in_flight=deps.settings.max_in_flight,
        )
    except ValueError as exc:
        log.warning("job %s chunk %d: %s", message.job.job_id, message.chunk_index, exc)
        raise ChunkFailedError(
            "invalid_request",
            f"the detection parameters cannot be used (slice_size {message.slice_size}, "
            f"confidence {message.confidence:g})",
        ) from None


async def handle_detect_chunk(message: DetectChunk, deps: Deps) -> ChunkResult | None:
    """Announce `started`, run the model on the chunk's slices and return the ChunkResult for
    the orchestrator (the consumer publishes it, confirmed, to `chunk_result`). A chunk that can
    never succeed is answered with a failure result; a transient error (Triton away) raises, so
    the message returns to the queue. A chunk of a cancelled job or session is dropped
    unstarted, or stopped between two batches: no result."""
    if await _cancelled(message, deps):
        log.info("job %s cancelled: chunk %d skipped", message.job.job_id, message.chunk_index)
        return None
    started = time.perf_counter()
    result = ChunkResult(
        job=message.job,
        chunk_index=message.chunk_index,
        attempt=message.attempt,
        detector_id=deps.settings.detector_id,
    )
    await deps.bus.publish(deps.bus.topology.job_event, _started(message))
    try:
        model = await deps.model_for(message.model)
        detector = SlicedDetector(model, *_params(message, deps))
        photo = await _photo(message, deps)
        boxes = [(s.x1, s.y1, s.x2, s.y2) for s in message.slices]

        async def between_batches(_done: int) -> None:
            if await _cancelled(message, deps):
                raise JobCancelledError(message.job.job_id)

        parts = await detector.infer_slices(photo, boxes, between_batches)
        result.detections.CopyFrom(_result(message, parts))
    except ChunkFailedError as exc:
        log.warning("job %s chunk %d failed: %s", message.job.job_id, message.chunk_index, exc)
        result.failure.CopyFrom(ChunkFailure(code=exc.code, message=str(exc), retryable=False))
    except JobCancelledError:
        log.info("job %s cancelled: chunk %d stopped", message.job.job_id, message.chunk_index)
        return None  # the orchestrator has cancelled the job, or is about to
    result.inference_seconds = time.perf_counter() - started
    return result


async def give_up_chunk(message: DetectChunk, reason: str, deps: Deps) -> None:
    """The bus will not try the chunk again (it failed every attempt, or its detectors died
    holding it): tell the orchestrator, which fails the job with the reason. The chunk waits in
    the dead-letter queue (`tally admin dlq`)."""
    result = ChunkResult(
        job=message.job,
        chunk_index=message.chunk_index,
        attempt=message.attempt,
        detector_id=deps.settings.detector_id,
    )
    result.failure.CopyFrom(ChunkFailure(code="chunk_failed", message=reason, retryable=False))
    await deps.bus.publish(deps.bus.topology.chunk_result, result)
