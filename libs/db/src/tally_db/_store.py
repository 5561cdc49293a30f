"""The repository: every read and write of the record store, each scoped by tenant."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Self

import asyncpg

from tally_db._migrate import Connection, migrate

API_KEY_PREFIX = "tly_"


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


@dataclass(frozen=True, slots=True)
class PendingMessage:
    id: int
    entry: OutboxEntry
    created_at: datetime


def digest(key: str) -> bytes:
    """API keys are 256 random bits: a plain SHA-256 is enough to store them safely."""
    return hashlib.sha256(key.encode()).digest()


def _job(row: asyncpg.Record) -> Job:
    return Job(**{name: row[name] for name in Job.__dataclass_fields__})


def _session(row: asyncpg.Record) -> Session:
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
        return _session(row)

    async def get_session(self, tenant_id: uuid.UUID, session_id: uuid.UUID) -> Session | None:
        row = await self._pool.fetchrow(
            "SELECT * FROM sessions WHERE tenant_id = $1 AND id = $2", tenant_id, session_id
        )
        return None if row is None else _session(row)

    async def list_sessions(self, tenant_id: uuid.UUID, limit: int = 50) -> list[Session]:
        rows = await self._pool.fetch(
            """SELECT * FROM sessions WHERE tenant_id = $1
               ORDER BY created_at DESC, id DESC LIMIT $2""",
            tenant_id,
            limit,
        )
        return [_session(r) for r in rows]

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
        messages: Sequence[OutboxEntry],
    ) -> bool:
        """Record a queued job's slice plan and queue its messages, in one transaction.

        False, and nothing written, when the job is not queued and unplanned: planned already (a
        redelivered message), cancelled, or not this tenant's.
        """
        async with self._pool.acquire() as connection, connection.transaction():
            status = await connection.execute(
                """UPDATE jobs SET total = $3, phase = 'planned', updated_at = now()
                   WHERE tenant_id = $1 AND id = $2 AND status = 'queued' AND phase = 'queued'""",
                tenant_id,
                job_id,
                total_slices,
            )
            if status != "UPDATE 1":
                return False
            await self._enqueue(connection, messages)
            return True

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

    # The outbox relay's side.

    @staticmethod
    async def _enqueue(connection: Connection, messages: Iterable[OutboxEntry]) -> None:
        await connection.executemany(
            """INSERT INTO outbox (exchange, routing_key, message_type, payload, headers)
               VALUES ($1, $2, $3, $4, $5::jsonb)""",
            [
                (m.exchange, m.routing_key, m.message_type, m.payload, json.dumps(m.headers))
                for m in messages
            ],
        )

    async def pending_messages(self, limit: int = 100) -> list[PendingMessage]:
        rows = await self._pool.fetch(
            """SELECT * FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1""", limit
        )
        return [
            PendingMessage(
                r["id"],
                OutboxEntry(
                    r["exchange"],
                    r["routing_key"],
                    r["message_type"],
                    r["payload"],
                    json.loads(r["headers"]),
                ),
                r["created_at"],
            )
            for r in rows
        ]

    async def mark_published(self, ids: Sequence[int]) -> None:
        await self._pool.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])", list(ids)
        )
