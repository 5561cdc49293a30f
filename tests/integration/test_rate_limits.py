"""The rate limiter's Lua script on a real Redis: buckets shared by every replica, a key and its
tenant taken from together or not at all, idle buckets dropped, and a Redis that stops answering
and comes back (through the tests' fault-injecting proxy)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis
from tests.faults import FaultProxy

from tally_db import Caller, Tenant
from tally_web import RateLimiter
from tally_web.ratelimit import caller_buckets

pytestmark = pytest.mark.integration
REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(REDIS_URL)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.flushdb()
        await client.aclose()


def _tenant(**limits: float) -> Tenant:
    return Tenant(uuid.uuid4(), "t", datetime.now(UTC), dict(limits))


def _key(tenant: Tenant) -> Caller:
    return Caller(tenant, uuid.uuid4(), "write")


# Rates slow enough that nothing refills within a test.
SLOW = {"read_rate": 0.001, "tenant_read_rate": 0.001}


async def test_two_replicas_take_from_one_bucket(redis: Redis) -> None:
    one, two = RateLimiter(redis), RateLimiter(redis)  # two gateway processes
    caller = _key(_tenant(read_burst=4, **SLOW))
    buckets = caller_buckets(caller, "read", one.limits)
    answers = []
    for limiter in (one, two, one, two, one, two):
        answers.append((await limiter.take(buckets, 1)).allowed)
    assert answers == [True, True, True, True, False, False]
    refused = await two.take(buckets, 1)
    assert refused.refused_by == buckets[0]
    assert refused.retry_after_s > 0
    assert refused.headers()["Retry-After"] == str(int(-(-refused.retry_after_s // 1)))


async def test_a_key_is_refused_once_its_tenant_is_spent_and_nothing_is_taken(
    redis: Redis,
) -> None:
    limiter = RateLimiter(redis)
    tenant = _tenant(read_burst=10, tenant_read_burst=3, **SLOW)
    first, second = _key(tenant), _key(tenant)
    for _ in range(3):
        assert (await limiter.take(caller_buckets(first, "read", limiter.limits), 1)).allowed
    refused = await limiter.take(caller_buckets(second, "read", limiter.limits), 1)
    assert not refused.allowed
    key_bucket, tenant_bucket = caller_buckets(second, "read", limiter.limits)
    assert refused.refused_by == tenant_bucket
    # The second key's bucket was never written: the refusal took nothing from it.
    assert not await redis.exists(key_bucket.key)
    # Another class has its own buckets.
    assert (await limiter.take(caller_buckets(second, "write", limiter.limits), 1)).allowed


async def test_a_bucket_expires_once_it_would_be_full_again(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    caller = _key(_tenant(read_burst=10, read_rate=5, tenant_read_burst=10, tenant_read_rate=5))
    key_bucket, _ = caller_buckets(caller, "read", limiter.limits)
    await limiter.take([key_bucket], 4)
    ttl_ms = await redis.pttl(key_bucket.key)
    assert 0 < ttl_ms <= 4 / 5 * 1000 + 1000  # refilled in 0.8 s, plus a second's grace
    assert float(await redis.hget(key_bucket.key, "t") or 0) == pytest.approx(6, abs=0.1)


async def test_a_debit_takes_what_is_left_and_never_refuses(redis: Redis) -> None:
    limiter = RateLimiter(redis)
    caller = _key(_tenant(read_burst=2, **SLOW))
    buckets = caller_buckets(caller, "read", limiter.limits)
    await limiter.take(buckets, 1.5)
    await limiter.debit(buckets, 5)
    assert float(await redis.hget(buckets[0].key, "t") or -1) == pytest.approx(0, abs=0.01)
    assert not (await limiter.take(buckets, 0.2)).allowed


async def test_with_redis_away_the_limit_holds_locally_and_redis_takes_over_again(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stops answering (a blackholed route: no error, no reply): after the limiter's
    timeout each request is limited in this process, at the same rates; once Redis answers
    again its bucket, as it was left, decides again."""
    with FaultProxy(("127.0.0.1", 6379)) as proxy:
        through = Redis.from_url(f"redis://127.0.0.1:{proxy.port}/13")
        try:
            limiter = RateLimiter(through, retry_s=0.0)
            caller = _key(_tenant(read_burst=3, **SLOW))
            buckets = caller_buckets(caller, "read", limiter.limits)
            assert (await limiter.take(buckets, 1)).allowed  # in Redis: 2 left there
            proxy.blackhole()
            local = [(await limiter.take(buckets, 1)).allowed for _ in range(5)]
            assert local == [True, True, True, False, False]  # the same limit, this process's
            during = limiter.local
            proxy.restore()
            back = [(await limiter.take(buckets, 1)).allowed for _ in range(3)]
            assert back == [True, True, False]  # Redis's bucket again, as it was left
            assert (during, limiter.local) == (True, False)
        finally:
            await through.aclose()
    messages = [r.getMessage() for r in caplog.records if r.name == "tally_web.ratelimit"]
    assert sum("Redis failed (TimeoutError)" in m for m in messages) == 1
    assert sum("answers again" in m for m in messages) == 1
