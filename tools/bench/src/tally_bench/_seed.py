"""The data the bench measures: records in PostgreSQL as upload and the orchestrator write them,
and JobEvents on the bus as the services emit them, folded by the real projector."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from redis.asyncio import Redis

from tally_bus import Bus, Topology
from tally_contracts import projection as redis_keys
from tally_contracts import sequence
from tally_contracts.events import job_event
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Store
from tally_orchestrator._records import Records
from tally_upload._records import NewJob, add_jobs

SLICES_PER_CHUNK = 16


@dataclass(frozen=True, slots=True)
class SeededSession:
    id: str
    jobs: list[JobRef]


@dataclass(frozen=True, slots=True)
class Seed:
    api_key: str
    tenant_id: str
    polled: SeededSession  # the 50-job session that pollers read
    fanout: list[SeededSession]  # scenario A's sessions
    hot: SeededSession  # scenario B's session
    probe: SeededSession  # scenario 4's probe job


async def _session(
    store: Store, tenant_id: uuid.UUID, name: str, jobs: int, planned_slices: int | None
) -> SeededSession:
    session = await store.create_session(tenant_id, name)
    created = await add_jobs(
        store,
        [
            NewJob(tenant_id, session.id, f"tray-{i:03d}.jpg", f"originals/{i}", 4000, 3000)
            for i in range(jobs)
        ],
        [],
    )
    if planned_slices:
        records = Records(store, Topology())  # plans without messages: no route is used
        for job in created:
            chunks = -(-planned_slices // SLICES_PER_CHUNK)
            await records.plan_job(tenant_id, job.id, planned_slices, chunks, [])
    refs = [
        JobRef(tenant_id=str(tenant_id), session_id=str(session.id), job_id=str(j.id))
        for j in created
    ]
    return SeededSession(str(session.id), refs)


async def seed_records(
    database_url: str, *, polled_jobs: int, fanout_sessions: int, fanout_jobs: int, hot_jobs: int
) -> Seed:
    """One tenant and its key; sessions and jobs as upload writes them. The fan-out, hot and
    probe jobs are planned with more slices than the run will ever finish, so every progress
    event changes what they show."""
    async with Store.open(database_url) as store:
        tenant = await store.create_tenant(f"bench-{uuid.uuid4().hex[:8]}")
        key = await store.create_api_key(tenant.id)
        polled = await _session(store, tenant.id, "polled", polled_jobs, None)
        fanout = [
            await _session(store, tenant.id, f"fanout-{i}", fanout_jobs, 1_000_000)
            for i in range(fanout_sessions)
        ]
        hot = await _session(store, tenant.id, "hot", hot_jobs, 1_000_000)
        probe = await _session(store, tenant.id, "probe", 1, 1_000_000)
    return Seed(key.key, str(tenant.id), polled, fanout, hot, probe)


def progress_event(job: JobRef, chunks_recorded: int, total_slices: int) -> JobEvent:
    """The orchestrator's progress event after `chunks_recorded` chunks, emitted now."""
    return job_event(
        job,
        sequence.progress(chunks_recorded),
        "orchestrator",
        progress=JobEvent.Progress(
            slices_done=min(total_slices, chunks_recorded * SLICES_PER_CHUNK),
            total_slices=total_slices,
        ),
    )


@dataclass(slots=True)
class History:
    events: list[JobEvent] = field(default_factory=list)

    @property
    def last_sequence(self) -> int:
        return max(e.sequence for e in self.events)


def history(job: JobRef, index: int, rng: random.Random, start: datetime) -> History:
    """A realistic life of one photo so far: queued (upload), planned (orchestrator), started
    (a detector), a progress event per recorded chunk, and for most jobs completed."""
    total = rng.choice((48, 96, 192, 432))
    chunks = total // SLICES_PER_CHUNK
    at = start + timedelta(seconds=index * 0.5)
    step = timedelta(milliseconds=700)
    events = [
        job_event(
            job,
            sequence.QUEUED,
            "upload",
            at=at,
            queued=JobEvent.Queued(
                image_id=str(uuid.uuid4()),
                filename=f"tray-{index:03d}.jpg",
                width=4000,
                height=3000,
            ),
        ),
        job_event(
            job,
            sequence.PLANNED,
            "orchestrator",
            at=at + step,
            planned=JobEvent.Planned(total_slices=total, chunk_count=chunks),
        ),
        job_event(
            job,
            sequence.STARTED,
            "detector",
            at=at + 2 * step,
            started=JobEvent.Started(chunk_index=0),
        ),
    ]
    completed = index % 5 < 3  # three in five done, the rest still processing
    recorded = chunks if completed else rng.randint(1, chunks - 1)
    for k in range(1, recorded + 1):
        events.append(
            job_event(
                job,
                sequence.progress(k),
                "orchestrator",
                at=at + (2 + k) * step,
                progress=JobEvent.Progress(slices_done=k * SLICES_PER_CHUNK, total_slices=total),
            )
        )
    if completed:
        seedlings = rng.randint(150, 600)
        warnings = ["low_confidence"] if index % 7 == 0 else []
        events.append(
            job_event(
                job,
                sequence.FINAL,
                "orchestrator",
                at=at + (3 + recorded) * step,
                completed=JobEvent.Completed(
                    counts={"seedling": seedlings, "weed": seedlings // 20},
                    detections=seedlings + seedlings // 20,
                    result_key=f"results/{job.job_id}.json",
                    warnings=warnings,
                ),
            )
        )
    return History(events)


async def publish_histories(bus: Bus, histories: Sequence[History]) -> None:
    """Each job's events in order (as its services emit them), jobs side by side."""

    async def one(h: History) -> None:
        for event in h.events:
            await bus.publish(bus.topology.job_event, event)

    await asyncio.gather(*(one(h) for h in histories))


async def wait_folded(redis: Redis, expected: dict[str, int], timeout_s: float = 60.0) -> None:
    """Until the projection shows each job (id → sequence) at least at that sequence."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        pipe = redis.pipeline(transaction=False)
        for job_id in expected:
            pipe.hget(redis_keys.job_key(job_id), "seq")
        seqs = await pipe.execute()
        behind = [
            job_id
            for (job_id, want), seq in zip(expected.items(), seqs, strict=True)
            if seq is None or int(seq) < want
        ]
        if not behind:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise RuntimeError(f"the projector has not folded {len(behind)} jobs in {timeout_s} s")
        await asyncio.sleep(0.1)
