"""Message handlers: plain async functions of a decoded message and the service's Deps."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from tally_bus import trace_headers
from tally_contracts.v1 import DetectChunk, JobEvent, PhotoUploaded, SliceBox
from tally_db import OutboxEntry
from tally_inference import SliceParams
from tally_orchestrator._planning import plan_chunks
from tally_orchestrator.deps import Deps

log = logging.getLogger(__name__)

PLANNED_SEQUENCE = 2  # after upload's `queued` (1); the orchestrator is the job's second writer


async def handle_photo_uploaded(message: PhotoUploaded, deps: Deps) -> None:
    """Plan the photo's slices and queue its chunks for the detectors, exactly once per job.

    The plan, the DetectChunks and the `planned` event are committed together (outbox), so a
    crash can neither lose the dispatch nor dispatch twice; a redelivered PhotoUploaded finds the
    job planned and changes nothing.
    """
    job = message.job
    tenant_id, job_id = uuid.UUID(job.tenant_id), uuid.UUID(job.job_id)
    params = SliceParams(message.params.slice_size, message.params.overlap)
    chunks = plan_chunks(message.width, message.height, params, deps.settings.chunk_slices)
    total = sum(len(c) for c in chunks)
    routes = deps.bus.topology
    headers = trace_headers()

    entries = [
        OutboxEntry(
            routes.detect_chunk.exchange,
            routes.detect_chunk.routing_key,
            DetectChunk.DESCRIPTOR.full_name,
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
            ).SerializeToString(),
            headers,
        )
        for index, chunk in enumerate(chunks)
    ]
    now = Timestamp()
    now.FromDatetime(datetime.now(UTC))
    planned = JobEvent(
        event_id=uuid.uuid4().hex,
        job=job,
        sequence=PLANNED_SEQUENCE,
        emitted_at=now,
        source="orchestrator",
        planned=JobEvent.Planned(total_slices=total, chunk_count=len(chunks)),
    )
    entries.append(
        OutboxEntry(
            routes.job_event.exchange,
            routes.job_event.routing_key,
            JobEvent.DESCRIPTOR.full_name,
            planned.SerializeToString(),
            headers,
        )
    )
    if await deps.store.plan_job(tenant_id, job_id, total, entries):
        deps.relay.notify()
        log.info("job %s: %d slices in %d chunks", job_id, total, len(chunks))
    else:
        log.info("job %s is planned already, cancelled or unknown: nothing to do", job_id)
