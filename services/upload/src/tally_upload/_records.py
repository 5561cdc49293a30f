"""The upload service's records: new jobs, written with the messages that announce them, and
the tenant's usage they add (checked against its quotas in the same transaction)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from tally_bus import Topology
from tally_contracts import sequence
from tally_contracts.events import job_event, timestamp
from tally_contracts.v1 import DetectionParams, JobEvent, JobRef, ModelRef, PhotoUploaded
from tally_db import Job, Model, OutboxEntry, Store, enqueue, job_from_row, usage_now
from tally_upload._quota import QuotaExceededError, first_breach
from tally_web.limits import Limits

SOURCE = "upload"  # the JobEvents' source
# Uploads of one tenant take turns between their quota check and their commit (the two-key
# form of the advisory lock, keyed by the tenant: no other lock of Tally's shares its space).
QUOTA_LOCK = 0x7A11_0003


@dataclass(frozen=True, slots=True)
class NewJob:
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    filename: str
    object_key: str
    width: int
    height: int
    planned_slices: int = 0  # SAHI's plan of the photo with its session's params
    size: int = 0  # bytes of the original
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    image_id: uuid.UUID = field(default_factory=uuid.uuid4)


def model_ref(model: Model) -> ModelRef:
    """The registry's record of `model` as the detectors need it."""
    return ModelRef(
        model_id=str(model.id),
        name=model.name,
        version=model.version,
        format=model.format,
        triton_name=model.triton_name,
        input_name=model.input_name,
        output_name=model.output_name,
        labels=list(model.labels),
        max_batch=0 if model.batched else 1,
    )


def detection_params(params: Mapping[str, Any], model: Model | None = None) -> DetectionParams:
    """A session's `params` and its model as the bus carries them to the orchestrator (no
    model: the built-in default's, as the detectors know it)."""
    return DetectionParams(
        slice_size=params["slice_size"],
        overlap=params["overlap"],
        confidence=params["confidence"],
        model=model_ref(model) if model is not None else None,
    )


def new_job_messages(
    job: NewJob,
    params: DetectionParams,
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
        params=params,
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
    store: Store,
    jobs: Sequence[NewJob],
    messages: Sequence[OutboxEntry],
    limits: Limits | None = None,
) -> list[Job]:
    """Insert jobs and their outbox messages, and count them (photos, planned slices, bytes)
    in their tenant's usage of the day (UTC), in one transaction: all of it, or none.

    With `limits`, the tenant's quotas are checked first under its advisory lock, so that two
    uploads of one tenant cannot both pass a nearly full quota: QuotaExceededError, and nothing
    written, when these jobs would go over one. (`jobs` are of one tenant.)"""
    async with store.transaction() as connection:
        if jobs and limits is not None:
            tenant_id = jobs[0].tenant_id
            await connection.execute(
                "SELECT pg_advisory_xact_lock($1, hashtext($2))", QUOTA_LOCK, str(tenant_id)
            )
            now = await usage_now(connection, tenant_id)
            slices = sum(job.planned_slices for job in jobs)
            breach = first_breach(now, limits, len(jobs), slices)
            if breach is not None:
                raise QuotaExceededError(breach)
        created = []
        for job in jobs:
            row = await connection.fetchrow(
                """INSERT INTO jobs (id, tenant_id, session_id, image_id, filename,
                                     object_key, width, height, planned_slices)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *""",
                job.id,
                job.tenant_id,
                job.session_id,
                job.image_id,
                job.filename,
                job.object_key,
                job.width,
                job.height,
                job.planned_slices,
            )
            assert row is not None
            created.append(job_from_row(row))
        # Counted on the day each job was created, the day its refund goes to if it is
        # cancelled or fails.
        days: dict[tuple[uuid.UUID, date], list[NewJob]] = {}
        for job, made in zip(jobs, created, strict=True):
            day = made.created_at.astimezone(UTC).date()
            days.setdefault((job.tenant_id, day), []).append(job)
        await connection.executemany(
            """INSERT INTO usage_daily AS u (tenant_id, day, photos, slices, bytes)
               VALUES ($1, $2, $3, $4, $5)
               ON CONFLICT (tenant_id, day) DO UPDATE SET photos = u.photos + excluded.photos,
                   slices = u.slices + excluded.slices, bytes = u.bytes + excluded.bytes""",
            [
                (
                    tenant_id,
                    day,
                    len(day_jobs),
                    sum(j.planned_slices for j in day_jobs),
                    sum(j.size for j in day_jobs),
                )
                for (tenant_id, day), day_jobs in days.items()
            ],
        )
        await enqueue(connection, messages)
        return created
