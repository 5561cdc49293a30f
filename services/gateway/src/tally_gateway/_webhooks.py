"""The gateway's SQL of webhooks: a tenant's endpoints, their secrets and their deliveries' log.
(What is delivered is recorded by the orchestrator, and sent by `tally-webhooks`.) Every query
is scoped by tenant."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

import asyncpg

from tally_contracts.webhooks import NOTIFY_CHANNEL, new_secret
from tally_db import Store

DISABLED_ON_REQUEST: Final = "disabled on request"

_ENDPOINT_FIELDS = """id, url, events, description, enabled, disabled_reason, failing_since,
                      created_at, updated_at"""
_DELIVERIES = """
    SELECT d.id, d.endpoint_id, d.event_id, v.type, d.status, d.next_attempt_at, d.created_at,
           coalesce((SELECT json_agg(json_build_object(
                         'attempt', a.attempt, 'at', a.at, 'status_code', a.status_code,
                         'latency_ms', a.latency_ms, 'error', a.error) ORDER BY a.attempt)
                     FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]') AS attempts
    FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id
    JOIN webhook_events v ON v.id = d.event_id
    WHERE e.tenant_id = $1 AND d.endpoint_id = $2"""


class TooManyEndpointsError(Exception):
    """The tenant has as many endpoints as it may."""


def endpoint_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "webhook_id": str(row["id"]),
        "url": row["url"],
        "events": list(row["events"]),
        "description": row["description"],
        "enabled": row["enabled"],
        "disabled_reason": row["disabled_reason"],
        "failing_since": row["failing_since"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def delivery_view(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "delivery_id": str(row["id"]),
        "webhook_id": str(row["endpoint_id"]),
        "event_id": row["event_id"],
        "event_type": row["type"],
        "status": row["status"],
        "attempts": json.loads(row["attempts"]),
        "next_attempt_at": row["next_attempt_at"],
        "created_at": row["created_at"],
    }


async def create(
    store: Store,
    tenant_id: uuid.UUID,
    url: str,
    events: Sequence[str],
    description: str,
    most: int,
) -> tuple[asyncpg.Record, str]:
    """A new endpoint with its first secret (returned: it is shown once); TooManyEndpointsError
    when the tenant has `most` already."""
    secret = new_secret()
    async with store.transaction() as connection:
        # One registration of a tenant at a time, so the count below is the count.
        await connection.execute("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE", tenant_id)
        count = await connection.fetchval(
            "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1", tenant_id
        )
        if count >= most:
            raise TooManyEndpointsError(f"a tenant may have {most} webhooks")
        row = await connection.fetchrow(
            f"""INSERT INTO webhook_endpoints (id, tenant_id, url, events, description)
                VALUES ($1, $2, $3, $4, $5) RETURNING {_ENDPOINT_FIELDS}""",
            uuid.uuid4(),
            tenant_id,
            url,
            sorted(set(events)),
            description,
        )
        assert row is not None
        await connection.execute(
            "INSERT INTO webhook_secrets (endpoint_id, secret) VALUES ($1, $2)", row["id"], secret
        )
    return row, secret


async def endpoints(store: Store, tenant_id: uuid.UUID) -> list[asyncpg.Record]:
    """The tenant's endpoints, newest first."""
    return list(
        await store.pool.fetch(
            f"""SELECT {_ENDPOINT_FIELDS} FROM webhook_endpoints WHERE tenant_id = $1
                ORDER BY created_at DESC, id DESC""",
            tenant_id,
        )
    )


async def endpoint(
    store: Store, tenant_id: uuid.UUID, endpoint_id: uuid.UUID
) -> asyncpg.Record | None:
    return await store.pool.fetchrow(
        f"SELECT {_ENDPOINT_FIELDS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2",
        tenant_id,
        endpoint_id,
    )


async def update(
    store: Store,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    *,
    url: str | None,
    events: Sequence[str] | None,
    description: str | None,
    enabled: bool | None,
) -> asyncpg.Record | None:
    """Change what is given. Enabling clears why it was disabled and its failures (its pending
    deliveries go on); disabling keeps them pending until it is enabled again."""
    return await store.pool.fetchrow(
        f"""UPDATE webhook_endpoints SET
                url = coalesce($3, url),
                events = coalesce($4, events),
                description = coalesce($5, description),
                enabled = coalesce($6, enabled),
                disabled_reason = CASE WHEN $6 IS NULL THEN disabled_reason
                                       WHEN $6 THEN NULL
                                       WHEN enabled THEN $7 ELSE disabled_reason END,
                failing_since = CASE WHEN $6 THEN NULL ELSE failing_since END,
                updated_at = now()
            WHERE tenant_id = $1 AND id = $2 RETURNING {_ENDPOINT_FIELDS}""",
        tenant_id,
        endpoint_id,
        url,
        None if events is None else sorted(set(events)),
        description,
        enabled,
        DISABLED_ON_REQUEST,
    )


async def delete(store: Store, tenant_id: uuid.UUID, endpoint_id: uuid.UUID) -> bool:
    """The endpoint, its secrets and its deliveries' log; False if there was none."""
    status = await store.pool.execute(
        "DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2", tenant_id, endpoint_id
    )
    return bool(status == "DELETE 1")


async def rotate_secret(
    store: Store, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, grace_s: float
) -> tuple[str, datetime] | None:
    """A new current secret; the secrets valid until now stay valid for `grace_s` more (both
    sign meanwhile). The new secret and when the old one expires; None without the endpoint."""
    secret = new_secret()
    async with store.transaction() as connection:
        found = await connection.fetchval(
            "SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            tenant_id,
            endpoint_id,
        )
        if found is None:
            return None
        expires: datetime = await connection.fetchval(
            "SELECT now() + $1 * interval '1 second'", grace_s
        )
        await connection.execute(
            "DELETE FROM webhook_secrets WHERE endpoint_id = $1 AND expires_at <= now()",
            endpoint_id,
        )
        await connection.execute(
            """UPDATE webhook_secrets SET expires_at = least(coalesce(expires_at, $2), $2)
               WHERE endpoint_id = $1""",
            endpoint_id,
            expires,
        )
        await connection.execute(
            "INSERT INTO webhook_secrets (endpoint_id, secret) VALUES ($1, $2)",
            endpoint_id,
            secret,
        )
    return secret, expires


async def deliveries(
    store: Store,
    tenant_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """A page of the endpoint's deliveries, newest first, each with its attempts."""
    if after is None:
        return list(
            await store.pool.fetch(
                _DELIVERIES + " ORDER BY d.created_at DESC, d.id DESC LIMIT $3",
                tenant_id,
                endpoint_id,
                limit,
            )
        )
    return list(
        await store.pool.fetch(
            _DELIVERIES
            + """ AND (d.created_at, d.id) < ($4, $5)
                              ORDER BY d.created_at DESC, d.id DESC LIMIT $3""",
            tenant_id,
            endpoint_id,
            limit,
            after[0],
            after[1],
        )
    )


async def replay(
    store: Store, tenant_id: uuid.UUID, endpoint_id: uuid.UUID, delivery_id: uuid.UUID
) -> asyncpg.Record | None:
    """Send the delivery's event again (with the same `webhook-id`), now, from the start of
    the retry schedule; its earlier attempts stay in its log. None without such a delivery."""
    async with store.transaction() as connection:
        replayed = await connection.fetchval(
            """UPDATE webhook_deliveries d
               SET status = 'pending', next_attempt_at = now(), schedule_from = d.attempts
               FROM webhook_endpoints e
               WHERE e.id = d.endpoint_id AND e.tenant_id = $1 AND d.endpoint_id = $2
                 AND d.id = $3
               RETURNING d.id""",
            tenant_id,
            endpoint_id,
            delivery_id,
        )
        if replayed is None:
            return None
        await connection.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
        return await connection.fetchrow(
            _DELIVERIES + " AND d.id = $3", tenant_id, endpoint_id, delivery_id
        )
