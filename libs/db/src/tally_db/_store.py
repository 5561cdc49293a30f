"""The repository: every read and write of the record store, each scoped by tenant."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, Self

import asyncpg
from google.protobuf.message import Message

from tally_db._migrate import Connection, migrate

API_KEY_PREFIX = "tly_"
# One dispatcher at a time, whichever orchestrator replica gets it.
_DISPATCH_LOCK = 0x7A11_0002
_CHUNKS_OUT = """SELECT tenant_id, count(*) AS out FROM chunk_dispatch
                 WHERE dispatched_at IS NOT NULL GROUP BY tenant_id"""
FINAL_STATUSES = frozenset({"completed", "failed", "cancelled"})


class RouteLike(Protocol):
    """Where a message goes (tally_bus.Route has these)."""

    @property
    def exchange(self) -> str: ...
    @property
    def routing_key(self) -> str: ...


class NotFoundError(LookupError):
    pass


class ConflictError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Tenant:
    id: uuid.UUID
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: uuid.UUID
    tenant_id: uuid.UUID
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class NewApiKey:
    """A key as created: `key` is shown once and never stored."""

    key: str
    api_key: ApiKey


@dataclass(frozen=True, slots=True)
class Session:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    params: dict[str, Any]
    created_at: datetime


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


@dataclass(frozen=True, slots=True)
class Job:
    id: uuid.UUID
    tenant_id: uuid.UUID
    session_id: uuid.UUID
    image_id: uuid.UUID
    filename: str
    object_key: str
    width: int
    height: int
    status: str
    phase: str
    processed: int
    total: int
    chunk_count: int
    error_code: str | None
    error_message: str | None
    warnings: list[str]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A bus message to publish once the transaction that wrote it has committed."""

    exchange: str
    routing_key: str
    message_type: str
    payload: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, route: RouteLike, message: Message, headers: Mapping[str, str] | None = None
    ) -> Self:
        """The one way to make an entry: `message` to `route` (a tally_bus Route), with
        `headers` (the trace context, tally_bus.trace_headers(), where the writer has one)."""
        return cls(
            route.exchange,
            route.routing_key,
            message.DESCRIPTOR.full_name,
            message.SerializeToString(),
            dict(headers or {}),
        )


@dataclass(frozen=True, slots=True)
class PendingMessage:
    id: int
    entry: OutboxEntry
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Backlog:
    open_slices: int  # planned and not detected yet
    unplanned_jobs: int  # queued, not planned yet (their size is not known)
    mean_job_slices: float  # of planned jobs: what an unplanned one probably holds
    slices_done: int  # ever

    @property
    def pending_slices(self) -> float:
        return self.open_slices + self.unplanned_jobs * self.mean_job_slices


@dataclass(frozen=True, slots=True)
class PlannedChunk:
    """A chunk of a planned job, held back until the dispatcher sends `message`."""

    index: int
    slices: int
    message: OutboxEntry


@dataclass(frozen=True, slots=True)
class DispatchLimits:
    """How much work may be out with the detectors at once: `window` chunks in all, and per
    tenant `per_tenant` (or its entry in `tenants`)."""

    window: int
    per_tenant: int
    tenants: Mapping[uuid.UUID, int] = field(default_factory=dict)

    def of(self, tenant_id: uuid.UUID) -> int:
        return self.tenants.get(tenant_id, self.per_tenant)


@dataclass(frozen=True, slots=True)
class LostChunks:
    """What a sweep found of chunks out with the detectors too long: sent again, or (sent as
    often as allowed) their jobs, to fail."""

    redispatched: list[tuple[uuid.UUID, int]]
    exhausted: list[Job]


@dataclass(frozen=True, slots=True)
class OutboxClaim:
    """Pending outbox messages locked for one relay; it adds to `sent` what it published."""

    messages: list[PendingMessage]
    sent: list[int] = field(default_factory=list)


def digest(key: str) -> bytes:
    """API keys are 256 random bits: a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(key.encode()).digest()


def _entry(row: asyncpg.Record) -> OutboxEntry:
    """The message an outbox or chunk_dispatch row holds."""
    return OutboxEntry(
        row["exchange"],
        row["routing_key"],
        row["message_type"],
        row["payload"],
        json.loads(row["headers"]),
    )


def _pending(row: asyncpg.Record) -> PendingMessage:
    return PendingMessage(row["id"], _entry(row), row["created_at"])


def job_from_row(row: asyncpg.Record) -> Job:
    """A `jobs` row (extra columns are ignored) as a Job."""
    return Job(**{name: row[name] for name in Job.__dataclass_fields__})


_job = job_from_row


async def enqueue(connection: Connection, messages: Iterable[OutboxEntry]) -> None:
    """Write `messages` to the outbox in the caller's transaction: they go out (through the
    relay) if and only if it commits."""
    await connection.executemany(
        """INSERT INTO outbox (exchange, routing_key, message_type, payload, headers)
           VALUES ($1, $2, $3, $4, $5::jsonb)""",
        [
            (m.exchange, m.routing_key, m.message_type, m.payload, json.dumps(m.headers))
            for m in messages
        ],
    )


def session_from_row(row: asyncpg.Record) -> Session:
    return Session(
        row["id"], row["tenant_id"], row["name"], json.loads(row["params"]), row["created_at"]
    )


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, dsn: str, *, run_migrations: bool = True, min_size: int = 1, max_size: int = 10
    ) -> AsyncIterator[Self]:
        pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
        try:
            if run_migrations:
                async with pool.acquire() as connection:
                    await migrate(connection)
            yield cls(pool)
        finally:
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        """The connection pool, for the services' own reads and transactions."""
        return self._pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Connection]:
        """A connection in a transaction: committed when the block ends, rolled back when it
        raises."""
        async with self._pool.acquire() as connection, connection.transaction():
            yield connection

    async def ping(self) -> bool:
        return bool(await self._pool.fetchval("SELECT true"))

    # Tenants and API keys (administration).

    async def create_tenant(self, name: str) -> Tenant:
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING *", uuid.uuid4(), name
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError(f"a tenant named {name!r} exists") from None
        assert row is not None
        return Tenant(row["id"], row["name"], row["created_at"])

    async def create_api_key(self, tenant_id: uuid.UUID) -> NewApiKey:
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            row = await self._pool.fetchrow(
                """INSERT INTO api_keys (id, tenant_id, prefix, digest) VALUES ($1, $2, $3, $4)
                   RETURNING id, tenant_id, prefix, created_at, revoked_at""",
                uuid.uuid4(),
                tenant_id,
                key[:12],
                digest(key),
            )
        except asyncpg.ForeignKeyViolationError:
            raise NotFoundError(f"no tenant {tenant_id}") from None
        assert row is not None
        return NewApiKey(key, ApiKey(**dict(row)))

    async def revoke_api_key(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> bool:
        status = await self._pool.execute(
            """UPDATE api_keys SET revoked_at = now()
               WHERE tenant_id = $1 AND id = $2 AND revoked_at IS NULL""",
            tenant_id,
            key_id,
        )
        return status.endswith(" 1")

    async def tenant_for_api_key(self, key: str) -> Tenant | None:
        """The tenant of a live key; None for an unknown or revoked one."""
        row = await self._pool.fetchrow(
            """SELECT t.id, t.name, t.created_at
               FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
               WHERE k.digest = $1 AND k.revoked_at IS NULL""",
            digest(key),
        )
        return None if row is None else Tenant(row["id"], row["name"], row["created_at"])

    # Sessions.

    async def create_session(
        self, tenant_id: uuid.UUID, name: str = "", params: Mapping[str, Any] | None = None
    ) -> Session:
        row = await self._pool.fetchrow(
            """INSERT INTO sessions (id, tenant_id, name, params) VALUES ($1, $2, $3, $4::jsonb)
               RETURNING *""",
            uuid.uuid4(),
            tenant_id,
            name,
            json.dumps(dict(params or {})),
        )
        assert row is not None
        return session_from_row(row)

    async def get_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Session | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2", tenant_id, session_id
        )
        return None if row is None else session_from_row(row)

    async def list_sessions(
        self, tenant_id: uuid.UUID, limit: int = 50, *, active: bool = False
    ) -> list[Session]:
        """The tenant's sessions, newest first; `active`: only those with a job not finished."""
        rows = await self._pool.fetch(
            """SELECT * FROM sessions s WHERE tenant_id = $1
                 AND (NOT $3 OR EXISTS (SELECT 1 FROM jobs j
                                        WHERE j.tenant_id = s.tenant_id AND j.session_id = s.id
                                          AND j.status IN ('queued', 'processing')))
               ORDER BY created_at DESC, id DESC LIMIT $2""",
            tenant_id,
            limit,
            active,
        )
        return [session_from_row(r) for r in rows]

    # Jobs, with the outbox message that announces them.

    async def add_jobs(self, jobs: Sequence[NewJob], messages: Sequence[OutboxEntry]) -> list[Job]:
        """Insert jobs and their outbox messages in one transaction: all of it, or none."""
        async with self._pool.acquire() as connection, connection.transaction():
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
                created.append(_job(row))
            await self._enqueue(connection, messages)
            return created

    async def plan_job(
        self,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
        total_slices: int,
        chunk_count: int,
        messages: Sequence[OutboxEntry],
        chunks: Sequence[PlannedChunk] = (),
    ) -> bool:
        """Record a queued job's slice plan, hold its `chunks` for the dispatcher and queue its
        `messages`, in one transaction.

        False, and nothing written, when the job is not queued and unplanned: planned already (a
        redelivered message), cancelled, or not this tenant's.
        """
        async with self._pool.acquire() as connection, connection.transaction():
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
                return False
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
            await self._enqueue(connection, messages)
            return True

    async def dispatch(self, limits: DispatchLimits) -> list[tuple[uuid.UUID, int]]:
        """Send held chunks to the detectors (through the outbox) while fewer than
        `limits.window` are out, tenants taking turns one chunk at a time, the one served
        longest ago first, each within its own limit; a tenant's chunks go in upload order.
        Returns the (job, chunk) sent, in order. One caller at a time: another replica's call
        returns nothing while this one runs."""
        async with self._pool.acquire() as connection, connection.transaction():
            if not await connection.fetchval(
                "SELECT pg_try_advisory_xact_lock($1)", _DISPATCH_LOCK
            ):
                return []
            out = {r["tenant_id"]: int(r["out"]) for r in await connection.fetch(_CHUNKS_OUT)}
            free = limits.window - sum(out.values())
            if free <= 0:
                return []
            # Tenants with chunks waiting (a loose index scan: one probe per tenant, however
            # long their backlogs), the one served longest ago first.
            tenants = await connection.fetch(
                """WITH RECURSIVE waiting AS (
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
            )
            queues: list[tuple[uuid.UUID, list[asyncpg.Record]]] = []
            for row in tenants:
                tenant_id = row["tenant_id"]
                allowance = min(free, limits.of(tenant_id) - out.get(tenant_id, 0))
                if allowance <= 0:
                    continue
                chunks = await connection.fetch(
                    """SELECT * FROM chunk_dispatch
                       WHERE tenant_id = $1 AND dispatched_at IS NULL
                       ORDER BY job_created_at, job_id, chunk_index LIMIT $2""",
                    tenant_id,
                    allowance,
                )
                queues.append((tenant_id, list(chunks)))
                if len(queues) >= free:  # every later tenant would get nothing this round
                    break
            chosen: list[asyncpg.Record] = []
            served: dict[uuid.UUID, int] = {}  # tenant -> position of its last chunk
            while len(chosen) < free and any(chunks for _, chunks in queues):
                for tenant_id, chunks in queues:
                    if chunks and len(chosen) < free:
                        chosen.append(chunks.pop(0))
                        served[tenant_id] = len(chosen)
            if not chosen:
                return []
            sent = [(r["job_id"], r["chunk_index"]) for r in chosen]
            await connection.execute(
                """UPDATE chunk_dispatch SET dispatched_at = now(), dispatches = dispatches + 1
                   WHERE (job_id, chunk_index) IN
                         (SELECT * FROM unnest($1::uuid[], $2::integer[]))""",
                [job for job, _ in sent],
                [index for _, index in sent],
            )
            base = await connection.fetchval(
                "SELECT coalesce(max(last_turn), 0) FROM dispatch_turns"
            )
            await connection.executemany(
                """INSERT INTO dispatch_turns (tenant_id, last_turn) VALUES ($1, $2)
                   ON CONFLICT (tenant_id) DO UPDATE SET last_turn = excluded.last_turn""",
                [(tenant_id, base + position) for tenant_id, position in served.items()],
            )
            await self._enqueue(connection, [_entry(r) for r in chosen])
            return sent

    async def lost_chunks(self, after_s: float, max_dispatches: int) -> LostChunks:
        """Chunks out with the detectors for more than `after_s` without a result (the caller
        knows nothing is waiting for a detector, so they were lost): those sent fewer than
        `max_dispatches` times wait to be sent again; the jobs of the others are returned (to
        fail)."""
        async with self._pool.acquire() as connection, connection.transaction():
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
                   AND status NOT IN ('completed', 'failed', 'cancelled')""",
                after_s,
                max_dispatches,
            )
            return LostChunks(
                [(r["job_id"], r["chunk_index"]) for r in rows], [_job(r) for r in jobs]
            )

    async def chunks_out(self) -> dict[uuid.UUID, int]:
        """Chunks out with the detectors now, per tenant (an operator's figure)."""
        return {r["tenant_id"]: int(r["out"]) for r in await self._pool.fetch(_CHUNKS_OUT)}

    async def record_chunk(
        self,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
        chunk_index: int,
        slices: int,
        payload: bytes,
        progress: Callable[[Job, int], Sequence[OutboxEntry]],
    ) -> Job | None:
        """Store one chunk's detections, once, and advance the job's progress.

        Returns the job as it stands after this call (None when it is not this tenant's). A
        chunk recorded before changes nothing. `progress(job, chunks_recorded)` builds the
        messages announcing the new state; they commit with it.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            # The row lock serialises chunk results of one job across orchestrator replicas.
            row = await connection.fetchrow(
                "SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, job_id
            )
            if row is None:
                return None
            job = _job(row)
            if job.status in FINAL_STATUSES:
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
            job = _job(row)
            await self._enqueue(connection, progress(job, int(row["done"])))
            return job

    async def chunk_payloads(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> list[bytes]:
        rows = await self._pool.fetch(
            """SELECT c.payload FROM chunk_results c JOIN jobs j ON j.id = c.job_id
               WHERE j.tenant_id = $1 AND c.job_id = $2 ORDER BY c.chunk_index""",
            tenant_id,
            job_id,
        )
        return [r["payload"] for r in rows]

    async def chunks_recorded(self, job_id: uuid.UUID) -> int:
        count = await self._pool.fetchval(
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
        async with self._pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                """UPDATE jobs SET status = 'completed', phase = 'done', processed = total,
                                  warnings = $3, completed_at = now(), updated_at = now()
                   WHERE tenant_id = $1 AND id = $2
                     AND status NOT IN ('completed', 'failed', 'cancelled')""",
                tenant_id,
                job_id,
                list(warnings),
            )
            if status != "UPDATE 1":
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
            await self._enqueue(connection, messages)
            return True

    async def fail_job(
        self,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
        code: str,
        message: str,
        messages: Sequence[OutboxEntry],
    ) -> bool:
        """Mark a job failed, once; False if it had reached a final status already."""
        async with self._pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                """UPDATE jobs SET status = 'failed', phase = 'done', error_code = $3,
                                  error_message = $4, completed_at = now(), updated_at = now()
                   WHERE tenant_id = $1 AND id = $2
                     AND status NOT IN ('completed', 'failed', 'cancelled')""",
                tenant_id,
                job_id,
                code,
                message,
            )
            if status != "UPDATE 1":
                return False
            # Its other chunks are not sent; those out finish, and their results are dropped.
            await connection.execute("DELETE FROM chunk_dispatch WHERE job_id = $1", job_id)
            await self._enqueue(connection, messages)
            return True

    async def cancel_jobs(
        self,
        tenant_id: uuid.UUID,
        session_id: uuid.UUID,
        job_id: uuid.UUID | None,
        reason: str,
        messages_for: Callable[[Job], Sequence[OutboxEntry]],
    ) -> list[Job]:
        """Cancel the session's jobs that have not finished (or just `job_id`), with the outbox
        messages `messages_for` gives for each, in one transaction; return those cancelled."""
        async with self._pool.acquire() as connection, connection.transaction():
            rows = await connection.fetch(
                """UPDATE jobs SET status = 'cancelled', phase = 'done', error_code = 'cancelled',
                                  error_message = $4, completed_at = now(), updated_at = now()
                   WHERE tenant_id = $1 AND session_id = $2 AND ($3::uuid IS NULL OR id = $3)
                     AND status NOT IN ('completed', 'failed', 'cancelled')
                   RETURNING *""",
                tenant_id,
                session_id,
                job_id,
                reason,
            )
            jobs = sorted((_job(row) for row in rows), key=lambda j: (j.created_at, j.id))
            await connection.execute(
                "DELETE FROM chunk_dispatch WHERE job_id = ANY($1::uuid[])", [j.id for j in jobs]
            )
            await self._enqueue(connection, [m for job in jobs for m in messages_for(job)])
            return jobs

    async def delete_job(
        self,
        tenant_id: uuid.UUID,
        job_id: uuid.UUID,
        messages_for: Callable[[Job], Sequence[OutboxEntry]],
    ) -> Job | None:
        """Delete a finished job and everything recorded of it (result, chunks), with the
        messages `messages_for` gives, in one transaction; return it as it was. None when it is
        not this tenant's; ConflictError while it has not finished (cancel it first)."""
        async with self._pool.acquire() as connection, connection.transaction():
            row = await connection.fetchrow(
                "SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE", tenant_id, job_id
            )
            if row is None:
                return None
            job = _job(row)
            if job.status not in FINAL_STATUSES:
                raise ConflictError(f"job {job_id} is {job.status}: cancel it first")
            await connection.execute("DELETE FROM jobs WHERE id = $1", job_id)
            await self._enqueue(connection, messages_for(job))
            return job

    async def backlog(self) -> Backlog:
        """Work not done yet, all tenants (an operator's figure, for autoscaling), and the slices
        done so far (grows with every recorded chunk: its rate is the throughput)."""
        row = await self._pool.fetchrow(
            """SELECT coalesce(sum(greatest(total - processed, 0))
                        FILTER (WHERE status IN ('queued', 'processing') AND total > 0), 0)
                        AS open_slices,
                      count(*) FILTER (WHERE status IN ('queued', 'processing') AND total = 0)
                        AS unplanned,
                      coalesce(avg(total) FILTER (WHERE total > 0), 0) AS mean_total,
                      coalesce(sum(processed), 0) AS done
               FROM jobs"""
        )
        assert row is not None
        return Backlog(
            int(row["open_slices"]),
            int(row["unplanned"]),
            float(row["mean_total"]),
            int(row["done"]),
        )

    async def stalled_jobs(self, quiet_s: float, limit: int = 100) -> list[Job]:
        """Jobs being processed that have not moved for `quiet_s` seconds, all tenants (the
        orchestrator's sweep; queued jobs may wait behind a backlog, so they are not here)."""
        rows = await self._pool.fetch(
            """SELECT * FROM jobs j
               WHERE status = 'processing' AND updated_at < now() - $1 * interval '1 second'
                 AND NOT EXISTS (SELECT 1 FROM chunk_dispatch d
                                 WHERE d.job_id = j.id AND d.dispatched_at IS NULL)
               ORDER BY updated_at LIMIT $2""",
            quiet_s,
            limit,
        )
        return [_job(row) for row in rows]

    async def get_result(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> dict[str, Any] | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM results WHERE tenant_id = $1 AND job_id = $2", tenant_id, job_id
        )
        if row is None:
            return None
        return {
            "counts": json.loads(row["counts"]),
            "detections": row["detections"],
            "object_key": row["object_key"],
        }

    async def get_job(self, tenant_id: uuid.UUID, job_id: uuid.UUID) -> Job | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM jobs WHERE tenant_id = $1 AND id = $2", tenant_id, job_id
        )
        return None if row is None else _job(row)

    async def session_jobs(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> list[Job]:
        rows = await self._pool.fetch(
            """SELECT * FROM jobs WHERE tenant_id = $1 AND session_id = $2
               ORDER BY created_at, id""",
            tenant_id,
            session_id,
        )
        return [_job(r) for r in rows]

    async def list_jobs(
        self,
        tenant_id: uuid.UUID,
        *,
        status: str | None = None,
        session_id: uuid.UUID | None = None,
        newest_first: bool = True,
        after: tuple[datetime, uuid.UUID] | None = None,
        limit: int = 50,
    ) -> list[Job]:
        """A page of the tenant's jobs in creation order; `after` is the (created_at, id) of the
        previous page's last job (keyset pagination: stable while jobs are added)."""
        direction, compare = ("DESC", "<") if newest_first else ("ASC", ">")
        conditions: list[str] = ["tenant_id = $1"]
        args: list[object] = [tenant_id]
        if status is not None:
            args.append(status)
            conditions.append(f"status = ${len(args)}")
        if session_id is not None:
            args.append(session_id)
            conditions.append(f"session_id = ${len(args)}")
        if after is not None:
            args += [after[0], after[1]]
            conditions.append(f"(created_at, id) {compare} (${len(args) - 1}, ${len(args)})")
        args.append(limit)
        rows = await self._pool.fetch(
            f"""SELECT * FROM jobs WHERE {" AND ".join(conditions)}
                ORDER BY created_at {direction}, id {direction} LIMIT ${len(args)}""",
            *args,
        )
        return [_job(r) for r in rows]

    # The outbox relay's side.

    @staticmethod
    async def _enqueue(connection: Connection, messages: Iterable[OutboxEntry]) -> None:
        await enqueue(connection, messages)

    @contextlib.asynccontextmanager
    async def claim_pending(self, limit: int = 100) -> AsyncIterator[OutboxClaim]:
        """The oldest pending outbox messages, locked for this caller until the block ends:
        every relay (each service that writes the outbox runs one) skips what another holds,
        so each message goes out once. What the caller put in `claim.sent` is marked published
        when the block ends, however it ends; the rest is pending again."""
        async with self._pool.acquire() as connection:
            transaction = connection.transaction()
            await transaction.start()
            committed = False
            try:
                rows = await connection.fetch(
                    """SELECT * FROM outbox WHERE published_at IS NULL
                       ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED""",
                    limit,
                )
                claim = OutboxClaim([_pending(r) for r in rows])
                try:
                    yield claim
                finally:  # an error in the block still commits what went out before it
                    if claim.sent:
                        await connection.execute(
                            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
                            claim.sent,
                        )
                    await transaction.commit()
                    committed = True
            finally:
                if not committed:
                    await transaction.rollback()

    async def pending_count(self) -> int:
        count: int = await self._pool.fetchval(
            "SELECT count(*) FROM outbox WHERE published_at IS NULL"
        )
        return count
