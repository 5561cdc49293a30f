"""Tally's record store: PostgreSQL schema, migrations and a tenant-scoped repository."""

from tally_db._migrate import Migration, migrate, migrations
from tally_db._relay import OutboxRelay, Publish
from tally_db._store import (
    API_KEY_PREFIX,
    FINAL_STATUSES,
    ApiKey,
    Backlog,
    ConflictError,
    Job,
    NewApiKey,
    NewJob,
    NotFoundError,
    OutboxClaim,
    OutboxEntry,
    PendingMessage,
    Session,
    Store,
    Tenant,
    digest,
)

__all__ = [
    "API_KEY_PREFIX",
    "FINAL_STATUSES",
    "ApiKey",
    "Backlog",
    "ConflictError",
    "Job",
    "Migration",
    "NewApiKey",
    "NewJob",
    "NotFoundError",
    "OutboxClaim",
    "OutboxEntry",
    "OutboxRelay",
    "PendingMessage",
    "Publish",
    "Session",
    "Store",
    "Tenant",
    "digest",
    "migrate",
    "migrations",
]
