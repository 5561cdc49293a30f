"""The upload service's records: new jobs, written with the messages that announce them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tally_bus import Topology
from tally_contracts import sequence
from tally_contracts.events import job_event, timestamp
from tally_contracts.v1 import DetectionParams, JobEvent, JobRef, PhotoUploaded
from tally_db import Job, OutboxEntry, Store, enqueue, job_from_row

SOURCE = "upload"  # the JobEvents' source


@dataclass(frozen=True, slots=True)
class NewJob:
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    filename: str
    object_key: str
    width: int
    height: int
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    image_id: uuid.UUID = field(default_factory=uuid.uuid4)


def new_job_messages(
    job: NewJob,
    params: Mapping[str, Any],
    routes: Topology,
    headers: Mapping[str, str] | None = None,
    at: datetime | None = None,
) -> list[OutboxEntry]:
    """What a new job announces: PhotoUploaded for the orchestrator (with the session's
    detection `params`) and the job's first event (sequence 1): queued. Both carry `headers` (the
    upload request's trace context, which continues in the consumers) and the moment `at` (now
    when None)."""
    moment = at or datetime.now(UTC)
    ref = JobRef(tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id))
    uploaded = PhotoUploaded(
        job=ref,
        image_id=str(job.image_id),
        filename=job.filename,
        object_key=job.object_key,
        width=job.width,
        height=job.height,
        params=DetectionParams(
            slice_size=params["slice_size"],
            overlap=params["overlap"],
            confidence=params["confidence"],
        ),
        uploaded_at=timestamp(moment),
    )
    queued = job_event(
        ref,
        sequence.QUEUED,
        SOURCE,
        at=moment,
        queued=JobEvent.Queued(
            image_id=str(job.image_id), filename=job.filename, width=job.width, height=job.height
        ),
    )
    return [
        OutboxEntry.of(routes.photo_uploaded, uploaded, headers),
        OutboxEntry.of(routes.job_event, queued, headers),
    ]


async def add_jobs(
    store: Store, jobs: Sequence[NewJob], messages: Sequence[OutboxEntry]
) -> list[Job]:
    """Insert jobs and their outbox messages in one transaction: all of it, or none."""
    async with store.transaction() as connection:
        created = []
        for job in jobs:
            row = await connection.fetchrow(
                """INSERT INTO jobs (id, tenant_id, session_id, image_id, filename,
                                     object_key, width, height)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *""",
                job.id,
                job.tenant_id,
                job.session_id,
                job.image_id,
                job.filename,
                job.object_key,
                job.width,
                job.height,
            )
            assert row is not None
            created.append(job_from_row(row))
        await enqueue(connection, messages)
        return created
