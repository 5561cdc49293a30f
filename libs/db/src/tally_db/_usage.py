"""What a tenant uses: its queued work and its usage by UTC day (`usage_daily`). One definition
of each, read by the upload service (its quotas), the gateway (`GET /v1/usage`) and the
operator's `tally admin usage`."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import TypeAlias

import asyncpg

from tally_db._migrate import Connection

# A pooled connection, one in a transaction, or the pool itself (a read on its own).
Reader: TypeAlias = "Connection | asyncpg.Pool[asyncpg.Record]"
# Today as the usage rows count days: in UTC, on the database's clock (the clock that stamps
# jobs.created_at, which refunds go by).
TODAY = "(now() AT TIME ZONE 'UTC')::date"


@dataclass(frozen=True, slots=True)
class UsageNow:
    """What the quotas count: the work queued and not processed yet, and the slices planned
    today and this month (UTC), refunds taken off."""

    queued_photos: int
    queued_slices: int
    daily_slices: int
    monthly_slices: int
    today: date


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: date
    photos: int = 0
    slices: int = 0
    bytes: int = 0


def usage_totals(days: Sequence[UsageDay]) -> dict[str, int]:
    """The photos, slices and bytes of `days` together."""
    return {
        "photos": sum(d.photos for d in days),
        "slices": sum(d.slices for d in days),
        "bytes": sum(d.bytes for d in days),
    }


async def usage_now(connection: Reader, tenant_id: uuid.UUID) -> UsageNow:
    """The tenant's queued work (its queued and processing jobs: the slices planned less those
    processed, and their count) and its slices today and this month, in one round trip."""
    row = await connection.fetchrow(
        f"""WITH today AS (SELECT {TODAY} AS day)
            SELECT q.photos, q.slices, u.daily, u.monthly, today.day AS today
            FROM today,
                 (SELECT count(*) AS photos,
                         coalesce(sum(greatest(planned_slices - processed, 0)), 0) AS slices
                  -- the active statuses as jobs_tenant_active's predicate lists them
                  FROM jobs WHERE tenant_id = $1 AND status IN ('queued', 'processing')) q,
                 (SELECT coalesce(sum(slices) FILTER (WHERE day = (SELECT day FROM today)), 0)
                           AS daily,
                         coalesce(sum(slices), 0) AS monthly
                  FROM usage_daily
                  WHERE tenant_id = $1
                    AND day >= date_trunc('month', (SELECT day FROM today))::date) u""",
        tenant_id,
    )
    assert row is not None
    return UsageNow(
        int(row["photos"]),
        int(row["slices"]),
        int(row["daily"]),
        int(row["monthly"]),
        row["today"],
    )


async def usage_days(
    connection: Reader, tenant_id: uuid.UUID, first: date, last: date
) -> list[UsageDay]:
    """The tenant's usage each day from `first` to `last` (both included, oldest first), days
    without any as zeros."""
    rows = await connection.fetch(
        """SELECT d.day::date AS day, coalesce(u.photos, 0) AS photos,
                  coalesce(u.slices, 0) AS slices, coalesce(u.bytes, 0) AS bytes
           FROM generate_series($2::date, $3::date, interval '1 day') AS d (day)
           LEFT JOIN usage_daily u ON u.tenant_id = $1 AND u.day = d.day::date
           ORDER BY d.day""",
        tenant_id,
        first,
        last,
    )
    return [UsageDay(r["day"], int(r["photos"]), int(r["slices"]), int(r["bytes"])) for r in rows]
