"""Tally's record store: PostgreSQL schema, migrations and a tenant-scoped repository."""

from tally_db._migrate import Connection, Migration, migrate, migrations
from tally_db._relay import OutboxRelay, Publish
from tally_db._store import (
    API_KEY_PREFIX,
    ApiKey,
    ConflictError,
    Job,
    NewApiKey,
    NotFoundError,
    OutboxClaim,
    OutboxEntry,
    PendingMessage,
    RouteLike,
    Session,
    Store,
    Tenant,
    digest,
    enqueue,
    job_from_row,
    session_from_row,
)

__all__ = [
    "API_KEY_PREFIX",
    "ApiKey",
    "ConflictError",
    "Connection",
    "Job",
    "Migration",
    "NewApiKey",
    "NotFoundError",
    "OutboxClaim",
    "OutboxEntry",
    "OutboxRelay",
    "PendingMessage",
    "Publish",
    "RouteLike",
    "Session",
    "Store",
    "Tenant",
    "digest",
    "enqueue",
    "job_from_row",
    "migrate",
    "migrations",
    "session_from_row",
]
