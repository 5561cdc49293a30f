"""Open streams without Redis: the caps still hold (per process), and revoked keys' streams end
after one query for all of them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable

import pytest
from redis.asyncio import Redis

from tally_gateway._leases import StreamLeases, TooManyStreamsError


class Keys:
    """The record store's live_keys, counting how often it is asked."""

    def __init__(self) -> None:
        self.revoked: set[uuid.UUID] = set()
        self.asked: list[set[uuid.UUID]] = []

    async def live_keys(self, key_ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        ids = set(key_ids)
        self.asked.append(ids)
        return ids - self.revoked


@pytest.fixture
async def unreachable() -> AsyncIterator[Redis]:
    redis = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    try:
        yield redis
    finally:
        await redis.aclose()


async def test_without_redis_the_caps_hold_on_this_process(unreachable: Redis) -> None:
    leases = StreamLeases(unreachable, Keys(), key_check_s=30, lease_s=90)
    key, other_key, tenant = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        first = await leases.open(key, tenant, per_key=2, per_tenant=3)
        await leases.open(key, tenant, per_key=2, per_tenant=3)
        with pytest.raises(TooManyStreamsError) as refused:
            await leases.open(key, tenant, per_key=2, per_tenant=3)
        assert refused.value.cap == "key"
        await leases.open(other_key, tenant, per_key=2, per_tenant=3)
        with pytest.raises(TooManyStreamsError) as refused:
            await leases.open(other_key, tenant, per_key=2, per_tenant=3)
        assert refused.value.cap == "tenant"
        await leases.release(first)
        await leases.open(key, tenant, per_key=2, per_tenant=3)
        assert len(leases.streams) == 3
    finally:
        await leases.close()


async def test_one_query_checks_every_open_streams_key_and_ends_the_revoked_ones(
    unreachable: Redis,
) -> None:
    keys = Keys()
    leases = StreamLeases(unreachable, keys, key_check_s=30, lease_s=90)
    revoked, live, tenant = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    try:
        gone = [await leases.open(revoked, tenant, 10, 10) for _ in range(3)]
        kept = [await leases.open(live, tenant, 10, 10) for _ in range(3)]
        await leases.check_keys()
        assert keys.asked == [{revoked, live}]
        assert not any(s.ended.done() for s in gone + kept)
        keys.revoked.add(revoked)
        await leases.check_keys()
        assert keys.asked[1:] == [{revoked, live}]  # one query for six streams
        assert all(s.ended.done() for s in gone)
        assert not any(s.ended.done() for s in kept)
    finally:
        await leases.close()
