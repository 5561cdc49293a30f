"""GET /v1/usage: the tenant's photos, slices and bytes by UTC day, its queued work and its
limits (the quotas that uploads are checked against)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from tally_db import usage_days, usage_now, usage_totals
from tally_gateway.deps import DepsDep
from tally_gateway.schemas import Usage
from tally_web import ApiError, CurrentTenant
from tally_web.limits import QUOTAS
from tally_web.schemas import error_responses

router = APIRouter(prefix="/v1/usage", tags=["usage"])

DEFAULT_DAYS = 30
MAX_DAYS = 366
DAY = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


def _day(name: str, text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ApiError(422, "invalid_request", f"{name}: {text} is not a day") from None


def _range(first: date | None, last: date | None, today: date) -> tuple[date, date]:
    """The days asked for: both ends given, or the `DEFAULT_DAYS` days up to `to` (today when
    not given), or from `from` to today; 422 when `from` is after `to` or the range is longer
    than `MAX_DAYS`."""
    if last is None:
        last = today
    if first is None:
        first = last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise ApiError(422, "invalid_request", f"from ({first}) is after to ({last})")
    if (last - first).days + 1 > MAX_DAYS:
        raise ApiError(422, "invalid_request", f"ask for {MAX_DAYS} days at most")
    return first, last


@router.get("", response_model=Usage, responses=error_responses(401, 422))
async def get_usage(
    deps: DepsDep,
    tenant: CurrentTenant,
    from_: Annotated[
        str | None,
        Query(alias="from", pattern=DAY, description="the first UTC day, YYYY-MM-DD"),
    ] = None,
    to: Annotated[
        str | None, Query(pattern=DAY, description="the last UTC day (included), YYYY-MM-DD")
    ] = None,
) -> dict[str, Any]:
    """The tenant's usage by UTC day (default: the last 30 days, up to 366), its totals, the
    work it has queued now, and its limits."""
    first, last = _range(_day("from", from_), _day("to", to), datetime.now(UTC).date())
    now = await usage_now(deps.store.pool, tenant.id)
    days = await usage_days(deps.store.pool, tenant.id, first, last)
    limits = deps.limits.for_tenant(tenant)
    return {
        "tenant_id": tenant.id,
        "from": first,
        "to": last,
        "days": [
            {"day": d.day, "photos": d.photos, "slices": d.slices, "bytes": d.bytes} for d in days
        ],
        "totals": usage_totals(days),
        "queued": {"photos": now.queued_photos, "slices": now.queued_slices},
        "limits": {name: getattr(limits, name) for name in QUOTAS},
    }
