"""The orchestrator's records: its reads and writes of PostgreSQL.

Each write is one transaction over a job's row, its chunks held for dispatch (`chunk_dispatch`)
and their results (`chunk_results`), with the outbox messages announcing what changed: the
caller's (plan, result, failure) or, where the transaction decides what changed (progress,
cancellations), the JobEvents it builds itself. A job's final transition also records the
webhook events its tenant asked for (`_webhook_events`), in the same transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from tally_bus import Topology, trace_headers
from tally_contracts import sequence
from tally_contracts.events import job_event
from tally_contracts.statuses import ACTIVE, FINAL
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Job, Model, OutboxEntry, Store, enqueue, job_from_row, session_model
from tally_orchestrator import _webhook_events
from tally_orchestrator._turns import DispatchLimits, allowances, take_turns

SOURCE = "orchestrator"  # the JobEvents' source
# One dispatcher at a time, whichever orchestrator replica gets it.
DISPATCH_LOCK = 0x7A11_0002
# The statuses as SQL parameters (`status = ANY($n)`): one definition, tally_contracts.statuses.
_FINAL = sorted(s.value for s in FINAL)
_ACTIVE = sorted(s.value for s in ACTIVE)

_CHUNKS_OUT = """SELECT tenant_id, count(*) AS out FROM chunk_dispatch
                 WHERE dispatched_at IS NOT NULL GROUP BY tenant_id"""
# Tenants with chunks waiting (a loose index scan: one probe per tenant, however long their
# backlogs), the one served longest ago first.
_WAITING_TENANTS = """
    WITH RECURSIVE waiting AS (
        (SELECT tenant_id FROM chunk_dispatch WHERE dispatched_at IS NULL
         ORDER BY tenant_id LIMIT 1)
        UNION ALL
        SELECT (SELECT c.tenant_id FROM chunk_dispatch c
                WHERE c.dispatched_at IS NULL AND c.tenant_id > w.tenant_id
                ORDER BY c.tenant_id LIMIT 1)
        FROM waiting w WHERE w.tenant_id IS NOT NULL)
    SELECT w.tenant_id FROM waiting w
    LEFT JOIN dispatch_turns t ON t.tenant_id = w.tenant_id
    WHERE w.tenant_id IS NOT NULL
    ORDER BY t.last_turn NULLS FIRST, w.tenant_id"""


# A job that ends unprocessed (cancelled, failed) gives its tenant back the slices it planned and
# did not process (never fewer than none), in the usage of the day it was created: what the
# daily and monthly quotas count. A completed job keeps its planned count.
_REFUND = """
    UPDATE usage_daily u SET slices = u.slices - r.slices
    FROM (SELECT tenant_id, (created_at AT TIME ZONE 'UTC')::date AS day,
                 sum(greatest(planned_slices - processed, 0)) AS slices
          FROM jobs WHERE id = ANY($1::uuid[]) GROUP BY 1, 2) r
    WHERE u.tenant_id = r.tenant_id AND u.day = r.day AND r.slices > 0"""


@dataclass(frozen=True, slots=True)
class Backlog:
    open_slices: int  # planned and not detected yet
    unplanned_jobs: int  # queued, not planned yet (their size is not known)
    mean_job_slices: float  # of planned jobs: what an unplanned one probably holds
    slices_done: int  # ever
    newest_upload: datetime | None  # when the newest photo arrived (None: none yet)

    @property
    def pending_slices(self) -> float:
        return self.open_slices + self.unplanned_jobs * self.mean_job_slices


@dataclass(frozen=True, slots=True)
class OpenJobRow:
    """An open job, as the wait model needs it: whose, its slices left (a photo not planned
    yet: the slices it was planned at upload) and whether it is planned."""

    tenant_id: uuid.UUID
    session_id: uuid.UUID
    job_id: uuid.UUID
    slices_left: int
    planned: bool


@dataclass(frozen=True, slots=True)
class PlannedChunk:
    """A chunk of a planned job, held back until the dispatcher sends `message`."""

    index: int
    slices: int
    message: OutboxEntry


@dataclass(frozen=True, slots=True)
class LostChunks:
    """What a sweep found of chunks out with the detectors too long: sent again, or (sent as
    often as allowed) their jobs, to fail."""

    redispatched: list[tuple[uuid.UUID, int]]
    exhausted: list[Job]


def job_ref(job: Job) -> JobRef:
    return JobRef(tenant_id=str(job.tenant_id), session_id=str(job.session_id), job_id=str(job.id))


def _held_message(row: asyncpg.Record) -> OutboxEntry:
    """The DetectChunk a chunk_dispatch row holds."""
    return OutboxEntry(
        row["exchange"],
        row["routing_key"],
        row["message_type"],
        row["payload"],
        json.loads(row["headers"]),
    )


class Records:
    """The orchestrator's transactions on `store`; the JobEvents they build go to `topology`'s
    job_event route, with the current trace context."""

    def __init__(self, store: Store, topology: Topology) -> None:
        self._store = store
        self._events = topology.job_event

    def _announce(self, event: JobEvent) -> OutboxEntry:
        return OutboxEntry.of(self._events, event, trace_headers())

    async def plan_job(
        self,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
        total_slices: int,
        chunk_count: int,
        messages: Sequence[OutboxEntry],
        chunks: Sequence[PlannedChunk] = (),
    ) -> datetime | None:
        """Record a queued job's slice plan, hold its `chunks` for the dispatcher and queue its
        `messages`, in one transaction; return when the job was uploaded.

        None, and nothing written, when the job is not queued and unplanned: planned already (a
        redelivered message), cancelled, or not this tenant's.
        """
        async with self._store.transaction() as connection:
            created_at = await connection.fetchval(
                """UPDATE jobs SET total = $3, chunk_count = $4, phase = 'planned',
                                  updated_at = now()
                   WHERE tenant_id = $1 AND id = $2 AND status = 'queued' AND phase = 'queued'
                   RETURNING created_at""",
                tenant_id,
                job_id,
                total_slices,
                chunk_count,
            )
            if created_at is None:
                return None
            await connection.executemany(
                """INSERT INTO chunk_dispatch (job_id, chunk_index, tenant_id, slices, exchange,
                                               routing_key, message_type, payload, headers,
                                               job_created_at)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10)""",
                [
                    (
                        job_id,
                        c.index,
                        tenant_id,
                        c.slices,
                        c.message.exchange,
                        c.message.routing_key,
                        c.message.message_type,
                        c.message.payload,
                        json.dumps(c.message.headers),
                        created_at,
                    )
                    for c in chunks
                ],
            )
            await enqueue(connection, messages)
            return created_at  # type: ignore[no-any-return]

    async def dispatch(self, limits: DispatchLimits) -> list[tuple[uuid.UUID, int]]:
        """Send held chunks to the detectors (through the outbox) while fewer than
        `limits.window` are out, tenants taking turns one chunk at a time, the one served
        longest ago first, each within its own limit; a tenant's chunks go in upload order
        (`_turns.take_turns`). Returns the (job, chunk) sent, in order. One caller at a time:
        another replica's call returns nothing while this one runs."""
        async with self._store.transaction() as connection:
            if not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", DISPATCH_LOCK):
                return []
            out = {r["tenant_id"]: int(r["out"]) for r in await connection.fetch(_CHUNKS_OUT)}
            if limits.free(out) <= 0:
                return []
            turns = [r["tenant_id"] for r in await connection.fetch(_WAITING_TENANTS)]
            waiting: dict[uuid.UUID, list[asyncpg.Record]] = {}
            for tenant_id, allowed in allowances(turns, out, limits).items():
                waiting[tenant_id] = await connection.fetch(
                    """SELECT * FROM chunk_dispatch
                       WHERE tenant_id = $1 AND dispatched_at IS NULL
                       ORDER BY job_created_at, job_id, chunk_index LIMIT $2""",
                    tenant_id,
                    allowed,
                )
            chosen = take_turns(turns, out, limits, waiting)
            if not chosen:
                return []
            sent = [(r["job_id"], r["chunk_index"]) for _, r in chosen]
            await connection.execute(
                """UPDATE chunk_dispatch SET dispatched_at = now(), dispatches = dispatches + 1
                   WHERE (job_id, chunk_index) IN
                         (SELECT * FROM unnest($1::uuid[], $2::integer[]))""",
                [job for job, _ in sent],
                [index for _, index in sent],
            )
            # Each tenant served is stamped with the position of its last chunk in this round.
            served = {tenant_id: position for position, (tenant_id, _) in enumerate(chosen, 1)}
            base = await connection.fetchval(
                "SELECT coalesce(max(last_turn), 0) FROM dispatch_turns"
            )
            await connection.executemany(
                """INSERT INTO dispatch_turns (tenant_id, last_turn) VALUES ($1, $2)
                   ON CONFLICT (tenant_id) DO UPDATE SET last_turn = excluded.last_turn""",
                [(tenant_id, base + position) for tenant_id, position in served.items()],
            )
            await enqueue(connection, [_held_message(r) for _, r in chosen])
            return sent

    async def lost_chunks(self, after_s: float, max_dispatches: int) -> LostChunks:
        """Chunks out with the detectors for more than `after_s` without a result (the caller
        knows nothing is waiting for a detector, so they were lost): those sent fewer than
        `max_dispatches` times wait to be sent again; the jobs of the others are returned (to
        fail)."""
        async with self._store.transaction() as connection:
            rows = await connection.fetch(
                """UPDATE chunk_dispatch SET dispatched_at = NULL
                   WHERE dispatched_at < now() - $1 * interval '1 second' AND dispatches < $2
                   RETURNING job_id, chunk_index""",
                after_s,
                max_dispatches,
            )
            jobs = await connection.fetch(
                """SELECT * FROM jobs WHERE id IN (
                       SELECT job_id FROM chunk_dispatch
                       WHERE dispatched_at < now() - $1 * interval '1 second'
                         AND dispatches >= $2)
                   AND status <> ALL($3::text[])""",
                after_s,
                max_dispatches,
                _FINAL,
            )
            return LostChunks(
                [(r["job_id"], r["chunk_index"]) for r in rows], [job_from_row(r) for r in jobs]
            )

    async def chunks_out(self) -> dict[uuid.UUID, int]:
        """Chunks out with the detectors now, per tenant (an operator's figure)."""
        rows = await self._store.pool.fetch(_CHUNKS_OUT)
        return {r["tenant_id"]: int(r["out"]) for r in rows}

    async def record_chunk(
        self,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
        chunk_index: int,
        slices: int,
        payload: bytes,
    ) -> Job | None:
        """Store one chunk's detections, once, advance the job's progress and announce it (a
        `progress` event, committed with it).

        Returns the job as it stands after this call (None when it is not this tenant's). A
        chunk recorded before, or a job that reached a final status, changes nothing.
        """
        async with self._store.transaction() as connection:
            # The row lock serialises chunk results of one job across orchestrator replicas.
            row = await connection.fetchrow(
                "SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, job_id
            )
            if row is None:
                return None
            job = job_from_row(row)
            if job.status in FINAL:
                return job
            inserted = await connection.execute(
                """INSERT INTO chunk_results (job_id, chunk_index, slices, payload)
                   VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING""",
                job_id,
                chunk_index,
                slices,
                payload,
            )
            if inserted != "INSERT 0 1":
                return job
            await connection.execute(
                "DELETE FROM chunk_dispatch WHERE job_id = $1 AND chunk_index = $2",
                job_id,
                chunk_index,
            )
            row = await connection.fetchrow(
                """UPDATE jobs SET
                       processed = (SELECT coalesce(sum(slices), 0) FROM chunk_results
                                    WHERE job_id = $1),
                       status = 'processing', phase = 'detecting',
                       started_at = coalesce(started_at, now()), updated_at = now()
                   WHERE id = $1
                   RETURNING *, (SELECT count(*) FROM chunk_results WHERE job_id = $1) AS done""",
                job_id,
            )
            assert row is not None
            job = job_from_row(row)
            progress = job_event(
                job_ref(job),
                sequence.progress(int(row["done"])),
                SOURCE,
                progress=JobEvent.Progress(slices_done=job.processed, total_slices=job.total),
            )
            await enqueue(connection, [self._announce(progress)])
            return job

    async def chunk_payloads(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> list[bytes]:
        rows = await self._store.pool.fetch(
            """SELECT c.payload FROM chunk_results c JOIN jobs j ON j.id = c.job_id
               WHERE j.tenant_id = $1 AND c.job_id = $2 ORDER BY c.chunk_index""",
            tenant_id,
            job_id,
        )
        return [r["payload"] for r in rows]

    async def job_model(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Model | None:
        """The model the job's session runs, deleted or not (None: a session from before the
        registry, on the built-in default)."""
        session = await self._store.get_session(tenant_id, session_id)
        return None if session is None else await session_model(self._store.pool, session)

    async def chunks_recorded(self, job_id: uuid.UUID) -> int:
        count = await self._store.pool.fetchval(
            "SELECT count(*) FROM chunk_results WHERE job_id = $1", job_id
        )
        return int(count)

    async def complete_job(
        self,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
        counts: Mapping[str, int],
        detections: int,
        result_key: str,
        warnings: Sequence[str],
        messages: Sequence[OutboxEntry],
    ) -> bool:
        """Mark a job completed with its result, once; False if it had reached a final status."""
        async with self._store.transaction() as connection:
            session_id = await connection.fetchval(
                """UPDATE jobs SET status = 'completed', phase = 'done', processed = total,
                                  warnings = $3, completed_at = now(), updated_at = now()
                   WHERE tenant_id = $1 AND id = $2 AND status <> ALL($4::text[])
                   RETURNING session_id""",
                tenant_id,
                job_id,
                list(warnings),
                _FINAL,
            )
            if session_id is None:
                return False
            await connection.execute(
                """INSERT INTO results (job_id, tenant_id, counts, detections, object_key)
                   VALUES ($1, $2, $3::jsonb, $4, $5)""",
                job_id,
                tenant_id,
                json.dumps(dict(counts)),
                detections,
                result_key,
            )
            await connection.execute("DELETE FROM chunk_results WHERE job_id = $1", job_id)
            await connection.execute("DELETE FROM chunk_dispatch WHERE job_id = $1", job_id)
            await enqueue(connection, messages)
            await _webhook_events.record(connection, tenant_id, session_id, [job_id])
            return True

    async def fail_job(
        self,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
        code: str,
        message: str,
        messages: Sequence[OutboxEntry],
    ) -> bool:
        """Mark a job failed, once, refunding its unprocessed slices; False if it had reached
        a final status already."""
        async with self._store.transaction() as connection:
            session_id = await connection.fetchval(
                """UPDATE jobs SET status = 'failed', phase = 'done', error_code = $3,
                                  error_message = $4, completed_at = now(), updated_at = now()
                   WHERE tenant_id = $1 AND id = $2 AND status <> ALL($5::text[])
                   RETURNING session_id""",
                tenant_id,
                job_id,
                code,
                message,
                _FINAL,
            )
            if session_id is None:
                return False
            await connection.execute(_REFUND, [job_id])
            # Its other chunks are not sent; those out finish, and their results are dropped.
            await connection.execute("DELETE FROM chunk_dispatch WHERE job_id = $1", job_id)
            await enqueue(connection, messages)
            await _webhook_events.record(connection, tenant_id, session_id, [job_id])
            return True

    async def cancel_jobs(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        job_id: uuid.UUID | None,
        reason: str,
    ) -> list[Job]:
        """Cancel the session's jobs that have not finished (or just `job_id`), each with its
        `cancelled` event and the refund of its unprocessed slices, in one transaction; return
        those cancelled."""
        async with self._store.transaction() as connection:
            rows = await connection.fetch(
                """UPDATE jobs SET status = 'cancelled', phase = 'done', error_code = 'cancelled',
                                  error_message = $4, completed_at = now(), updated_at = now()
                   WHERE tenant_id = $1 AND session_id = $2 AND ($3::uuid IS NULL OR id = $3)
                     AND status <> ALL($5::text[])
                   RETURNING *""",
                tenant_id,
                session_id,
                job_id,
                reason,
                _FINAL,
            )
            jobs = sorted((job_from_row(row) for row in rows), key=lambda j: (j.created_at, j.id))
            await connection.execute(_REFUND, [j.id for j in jobs])
            await connection.execute(
                "DELETE FROM chunk_dispatch WHERE job_id = ANY($1::uuid[])", [j.id for j in jobs]
            )
            cancelled = JobEvent.Cancelled(reason=reason)
            await enqueue(
                connection,
                [
                    self._announce(
                        job_event(job_ref(job), sequence.FINAL, SOURCE, cancelled=cancelled)
                    )
                    for job in jobs
                ],
            )
            await _webhook_events.record(connection, tenant_id, session_id, [j.id for j in jobs])
            return jobs

    async def backlog(self) -> Backlog:
        """Work not done yet, all tenants (an operator's figure, for autoscaling), the slices
        done so far (grows with every recorded chunk: its rate is the throughput) and when the
        newest photo arrived (photos arriving take a machine the detectors may share)."""
        row = await self._store.pool.fetchrow(
            """SELECT coalesce(sum(greatest(total - processed, 0))
                        FILTER (WHERE status = ANY($1::text[]) AND total > 0), 0)
                        AS open_slices,
                      count(*) FILTER (WHERE status = ANY($1::text[]) AND total = 0)
                        AS unplanned,
                      coalesce(avg(total) FILTER (WHERE total > 0), 0) AS mean_total,
                      coalesce(sum(processed), 0) AS done,
                      max(created_at) AS newest
               FROM jobs""",
            _ACTIVE,
        )
        assert row is not None
        return Backlog(
            int(row["open_slices"]),
            int(row["unplanned"]),
            float(row["mean_total"]),
            int(row["done"]),
            row["newest"],
        )

    async def open_jobs(self) -> list[OpenJobRow]:
        """Every open job, all tenants, each tenant's in upload order (the order its chunks are
        dispatched in): what the wait model divides the detectors among."""
        rows = await self._store.pool.fetch(
            """SELECT tenant_id, session_id, id,
                      greatest(CASE WHEN total > 0 THEN total ELSE planned_slices END
                               - processed, 0) AS left, total > 0 AS planned
               FROM jobs WHERE status = ANY($1::text[])
               ORDER BY tenant_id, created_at, id""",
            _ACTIVE,
        )
        return [
            OpenJobRow(r["tenant_id"], r["session_id"], r["id"], int(r["left"]), r["planned"])
            for r in rows
        ]

    async def sent_chunks(self) -> list[tuple[uuid.UUID, int]]:
        """Every chunk sent and not recorded yet, all tenants, the earliest sent first: (its
        job, its slices). As many as the dispatch window holds."""
        rows = await self._store.pool.fetch(
            """SELECT job_id, slices FROM chunk_dispatch WHERE dispatched_at IS NOT NULL
               ORDER BY dispatched_at, job_created_at, job_id, chunk_index"""
        )
        return [(r["job_id"], int(r["slices"])) for r in rows]

    async def stalled_jobs(self, quiet_s: float, limit: int = 100) -> list[Job]:
        """Jobs being processed that have not moved for `quiet_s` seconds, all tenants (the
        orchestrator's sweep; queued jobs may wait behind a backlog, so they are not here)."""
        rows = await self._store.pool.fetch(
            """SELECT * FROM jobs j
               WHERE status = 'processing' AND updated_at < now() - $1 * interval '1 second'
                 AND NOT EXISTS (SELECT 1 FROM chunk_dispatch d
                                 WHERE d.job_id = j.id AND d.dispatched_at IS NULL)
               ORDER BY updated_at LIMIT $2""",
            quiet_s,
            limit,
        )
        return [job_from_row(row) for row in rows]
