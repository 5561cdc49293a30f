"""TenantCache remembers live keys (a bounded number of them), never unknown ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tally_db import Tenant
from tally_web import TenantCache


class Lookup:
    """The record store's key lookup, counting the queries it answers."""

    def __init__(self, keys: dict[str, Tenant]) -> None:
        self.keys = keys
        self.queries: list[str] = []

    async def tenant_for_api_key(self, key: str) -> Tenant | None:
        self.queries.append(key)
        return self.keys.get(key)


def _tenant(name: str) -> Tenant:
    return Tenant(uuid.uuid4(), name, datetime.now(UTC))


async def test_a_live_key_is_looked_up_once_and_an_unknown_one_every_time() -> None:
    tenant = _tenant("a")
    lookup = Lookup({"tly_a": tenant})
    cache = TenantCache(lookup, ttl_s=60)
    assert [await cache.tenant_for_api_key("tly_a") for _ in range(3)] == [tenant] * 3
    assert [await cache.tenant_for_api_key("tly_x") for _ in range(2)] == [None, None]
    assert lookup.queries == ["tly_a", "tly_x", "tly_x"]


async def test_a_revoked_key_stops_at_once_without_a_ttl() -> None:
    lookup = Lookup({"tly_a": _tenant("a")})
    cache = TenantCache(lookup, ttl_s=0)
    assert await cache.tenant_for_api_key("tly_a") is not None
    del lookup.keys["tly_a"]  # revoked
    assert await cache.tenant_for_api_key("tly_a") is None


async def test_the_least_recently_used_key_leaves_when_the_cache_is_full() -> None:
    tenants = {f"tly_{n}": _tenant(str(n)) for n in range(3)}
    lookup = Lookup(tenants)
    cache = TenantCache(lookup, ttl_s=60, size=2)
    for key in ("tly_0", "tly_1", "tly_0", "tly_2"):  # tly_1 is the least recently used
        await cache.tenant_for_api_key(key)
    lookup.queries.clear()
    for key in ("tly_0", "tly_2", "tly_1"):
        assert await cache.tenant_for_api_key(key) == tenants[key]
    assert lookup.queries == ["tly_1"]
