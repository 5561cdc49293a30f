"""The record store's shared part, each read and write scoped by tenant: the pool and its
transactions, tenants and API keys, sessions, the outbox, and the row types. SQL that one
service alone runs lives in that service (tally_orchestrator._records, tally_upload._records)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, Self, get_args

import asyncpg
from google.protobuf.message import Message

from tally_db._migrate import Connection, migrate

API_KEY_PREFIX = "tly_"
Scope = Literal["read", "write"]
SCOPES: tuple[Scope, ...] = get_args(Scope)


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
    # The tenant's own limits where they differ from the services' defaults, by name.
    limits: Mapping[str, float] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: uuid.UUID
    tenant_id: uuid.UUID
    prefix: str
    created_at: datetime
    revoked_at: datetime | None
    scope: Scope = "write"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: a live key, its scope and its tenant."""

    tenant: Tenant
    key_id: uuid.UUID
    scope: Scope


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
    # The registry's model it runs (tally_db.Model); None: the default (sessions made before
    # the registry).
    model_id: uuid.UUID | None = None


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
class OutboxClaim:
    """Pending outbox messages locked for one relay; it adds to `sent` what it published."""

    messages: list[PendingMessage]
    sent: list[int] = field(default_factory=list)


def _tenant(row: asyncpg.Record) -> Tenant:
    return Tenant(row["id"], row["name"], row["created_at"], json.loads(row["limits"]))


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
        row["id"],
        row["tenant_id"],
        row["name"],
        json.loads(row["params"]),
        row["created_at"],
        row.get("model_id"),
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
        if not name.strip() or len(name) > 200 or any(c < " " or c == "\x7f" for c in name):
            # PostgreSQL refuses NUL in text; the rest would reach every log and screen.
            raise ValueError("a tenant name is 1-200 characters, none of them control characters")
        try:
            row = await self._pool.fetchrow(
                "INSERT INTO tenants (id, name) VALUES ($1, $2) RETURNING *", uuid.uuid4(), name
            )
        except asyncpg.UniqueViolationError:
            raise ConflictError(f"a tenant named {name!r} exists") from None
        assert row is not None
        return _tenant(row)

    async def get_tenant(self, tenant_id: uuid.UUID) -> Tenant | None:
        row = await self._pool.fetchrow("SELECT * FROM tenants WHERE id = $1", tenant_id)
        return None if row is None else _tenant(row)

    async def set_tenant_limits(
        self, tenant_id: uuid.UUID, limits: Mapping[str, float | None]
    ) -> Tenant:
        """Set (a number) or clear (None: back to the default) some of a tenant's limits."""
        row = await self._pool.fetchrow(
            """UPDATE tenants SET limits = jsonb_strip_nulls(limits || $2::jsonb)
               WHERE id = $1 RETURNING *""",
            tenant_id,
            json.dumps(dict(limits)),
        )
        if row is None:
            raise NotFoundError(f"no tenant {tenant_id}")
        return _tenant(row)

    async def create_api_key(self, tenant_id: uuid.UUID, scope: Scope = "write") -> NewApiKey:
        key = API_KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            row = await self._pool.fetchrow(
                """INSERT INTO api_keys (id, tenant_id, prefix, digest, scope)
                   VALUES ($1, $2, $3, $4, $5)
                   RETURNING id, tenant_id, prefix, created_at, revoked_at, scope""",
                uuid.uuid4(),
                tenant_id,
                key[:12],
                digest(key),
                scope,
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

    async def caller_for_api_key(self, key: str) -> Caller | None:
        """The live key `key`, with its tenant; None for an unknown or revoked one."""
        row = await self._pool.fetchrow(
            """SELECT t.*, k.id AS key_id, k.scope
               FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
               WHERE k.digest = $1 AND k.revoked_at IS NULL""",
            digest(key),
        )
        return None if row is None else Caller(_tenant(row), row["key_id"], row["scope"])

    async def live_keys(self, key_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of `key_ids` are live (not revoked): open streams ask, now and then."""
        rows = await self._pool.fetch(
            "SELECT id FROM api_keys WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL",
            list(key_ids),
        )
        return {row["id"] for row in rows}

    # Sessions.

    async def create_session(
        self,
        tenant_id: uuid.UUID,
        name: str = "",
        params: Mapping[str, Any] | None = None,
        model_id: uuid.UUID | None = None,
    ) -> Session:
        row = await self._pool.fetchrow(
            """INSERT INTO sessions (id, tenant_id, name, params, model_id)
               VALUES ($1, $2, $3, $4::jsonb, $5)
               RETURNING *""",
            uuid.uuid4(),
            tenant_id,
            name,
            json.dumps(dict(params or {})),
            model_id,
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

    # Jobs.

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
