"""CallerCache remembers live keys and unknown ones (a bounded number of each)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tally_db import Caller, Tenant
from tally_web import CallerCache


class Lookup:
    """The record store's key lookup, counting the queries it answers."""

    def __init__(self, keys: dict[str, Caller]) -> None:
        self.keys = keys
        self.queries: list[str] = []

    async def caller_for_api_key(self, key: str) -> Caller | None:
        self.queries.append(key)
        return self.keys.get(key)


def _caller(name: str) -> Caller:
    return Caller(Tenant(uuid.uuid4(), name, datetime.now(UTC)), uuid.uuid4(), "write")


async def test_a_live_key_and_an_unknown_one_are_each_looked_up_once() -> None:
    caller = _caller("a")
    lookup = Lookup({"tly_a": caller})
    cache = CallerCache(lookup, ttl_s=60, unknown_ttl_s=60)
    assert [await cache.caller_for_api_key("tly_a") for _ in range(3)] == [caller] * 3
    assert [await cache.caller_for_api_key("tly_x") for _ in range(3)] == [None] * 3
    assert lookup.queries == ["tly_a", "tly_x"]


async def test_an_unknown_key_is_asked_again_once_its_interval_is_over() -> None:
    lookup = Lookup({})
    cache = CallerCache(lookup, ttl_s=60, unknown_ttl_s=0)
    assert await cache.caller_for_api_key("tly_new") is None
    lookup.keys["tly_new"] = _caller("new")  # created since
    assert await cache.caller_for_api_key("tly_new") is not None


async def test_a_revoked_key_stops_at_once_without_a_ttl() -> None:
    lookup = Lookup({"tly_a": _caller("a")})
    cache = CallerCache(lookup, ttl_s=0)
    assert await cache.caller_for_api_key("tly_a") is not None
    del lookup.keys["tly_a"]  # revoked
    assert await cache.caller_for_api_key("tly_a") is None


async def test_forgetting_a_key_makes_the_next_request_look_it_up() -> None:
    lookup = Lookup({})
    cache = CallerCache(lookup, ttl_s=60, unknown_ttl_s=60)
    assert await cache.caller_for_api_key("tly_a") is None
    lookup.keys["tly_a"] = _caller("a")
    cache.forget("tly_a")
    assert await cache.caller_for_api_key("tly_a") is not None


async def test_the_least_recently_used_key_leaves_when_the_cache_is_full() -> None:
    callers = {f"tly_{n}": _caller(str(n)) for n in range(3)}
    lookup = Lookup(callers)
    cache = CallerCache(lookup, ttl_s=60, size=2)
    for key in ("tly_0", "tly_1", "tly_0", "tly_2"):  # tly_1 is the least recently used
        await cache.caller_for_api_key(key)
    lookup.queries.clear()
    for key in ("tly_0", "tly_2", "tly_1"):
        assert await cache.caller_for_api_key(key) == callers[key]
    assert lookup.queries == ["tly_1"]


async def test_it_tells_whether_a_lookup_would_cost_a_query() -> None:
    cache = CallerCache(Lookup({"tly_a": _caller("a")}), ttl_s=60, unknown_ttl_s=60)
    assert not cache.remembers("tly_a")
    assert not cache.remembers("tly_x")
    await cache.caller_for_api_key("tly_a")
    await cache.caller_for_api_key("tly_x")
    assert cache.remembers("tly_a")
    assert cache.remembers("tly_x")
