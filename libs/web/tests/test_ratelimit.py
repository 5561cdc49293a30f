"""Rate limits without Redis: the cost table, the per-process buckets on a fake clock, the
RateLimit fields, and a limiter whose Redis is unreachable still refusing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from redis.asyncio import Redis

from tally_db import Caller, Tenant
from tally_stack import free_port
from tally_web.limits import Limits
from tally_web.ratelimit import (
    Bucket,
    Charge,
    LocalBuckets,
    RateLimiter,
    address_buckets,
    caller_buckets,
    charge_for,
    client_address,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _bucket(name: str, rate: float, burst: float) -> Bucket:
    return Bucket(f"k:{name}", name, f"this {name}", rate, burst)


def _caller(limits: dict[str, float] | None = None) -> Caller:
    tenant = Tenant(uuid.uuid4(), "t", datetime.now(UTC), limits or {})
    return Caller(tenant, uuid.uuid4(), "write")


def test_the_cost_table() -> None:
    assert charge_for("GET", "/v1/jobs/x", {}, conditional=False) == Charge("read", 1.0)
    poll = charge_for("GET", "/v1/sessions/s/jobs", {}, conditional=True)
    assert poll is not None
    assert (poll.klass, poll.cost) == ("read", 0.2)
    assert poll.unless_304 == pytest.approx(0.8)
    assert charge_for("GET", "/v1/jobs", {"limit": "200"}, False) == Charge("read", 50.0)
    assert charge_for("GET", "/v1/jobs", {}, False) == Charge("read", 12.5)
    assert charge_for("GET", "/v1/jobs", {"limit": "2"}, False) == Charge("read", 1.0)
    assert charge_for("GET", "/v1/jobs", {"limit": "9999"}, False) == Charge("read", 50.0)
    assert charge_for("GET", "/v1/jobs", {"limit": "x"}, False) == Charge("read", 12.5)
    # A session's pages: one read per default page of 100 jobs, a bad limit (a 422) one read.
    page = "/v1/sessions/s/jobs"
    assert charge_for("GET", page, {"limit": "1000"}, False) == Charge("read", 10.0)
    assert charge_for("GET", page, {"limit": "250", "since": "1.2"}, False) == Charge("read", 2.5)
    assert charge_for("GET", page, {"limit": "20"}, False) == Charge("read", 1.0)
    assert charge_for("GET", page, {"limit": "9" * 40}, False) == Charge("read", 1.0)
    big = charge_for("GET", page, {"limit": "500"}, conditional=True)
    assert big is not None
    assert big.cost == 0.2
    assert big.unless_304 == pytest.approx(4.8)
    assert charge_for("POST", "/v1/sessions", {}, False) == Charge("write", 1.0)
    assert charge_for("DELETE", "/v1/jobs/x", {}, False) == Charge("write", 1.0)
    assert charge_for("POST", "/v1/stream-tokens", {}, False) == Charge("stream", 1.0)
    assert charge_for("GET", "/v1/sessions/s/events", {}, False) == Charge("stream", 1.0)
    for free in ("/healthz", "/readyz", "/metrics", "/", "/dashboard/app.js", "/openapi.json"):
        assert charge_for("GET", free, {}, False) is None


def test_a_bucket_serves_its_burst_then_refills_at_its_rate() -> None:
    clock = Clock()
    local = LocalBuckets(clock)
    bucket = _bucket("key", rate=2.0, burst=3.0)
    assert [local.take([bucket], 1).allowed for _ in range(4)] == [True, True, True, False]
    refused = local.take([bucket], 1)
    assert refused.retry_after_s == pytest.approx(0.5)
    clock.now += 0.5
    assert local.take([bucket], 1).allowed
    assert not local.take([bucket], 1).allowed
    clock.now += 60  # idle: full again, never more than the burst
    assert [local.take([bucket], 1).allowed for _ in range(4)] == [True, True, True, False]


def test_a_request_needs_room_in_both_buckets_and_takes_nothing_when_one_lacks() -> None:
    local = LocalBuckets(Clock())
    key, tenant = _bucket("key", 1.0, 5.0), _bucket("tenant", 1.0, 2.0)
    assert local.take([key, tenant], 1).allowed
    assert local.take([key, tenant], 1).allowed
    refused = local.take([key, tenant], 1)
    assert not refused.allowed
    assert refused.refused_by == tenant
    # The key's bucket was not charged for the refused request: 3 left.
    assert local.take([key], 1).levels[0].tokens == pytest.approx(2.0)


def test_a_request_dearer_than_the_bucket_needs_it_full_and_a_debit_empties_it() -> None:
    clock = Clock()
    local = LocalBuckets(clock)
    bucket = _bucket("key", 1.0, 3.0)
    assert local.take([bucket], 10).allowed
    assert not local.take([bucket], 0.5).allowed
    clock.now += 3
    local.take([bucket], 0.2)
    local.take([bucket], 100, debit=True)  # the rest of what was served
    assert local.take([bucket], 0.1).retry_after_s == pytest.approx(0.1)


def test_the_ratelimit_fields_name_each_bucket_and_a_refusal_says_when_to_retry() -> None:
    local = LocalBuckets(Clock())
    key, tenant = _bucket("read-key", 2.0, 3.0), _bucket("read-tenant", 4.0, 10.0)
    allowed = local.take([key, tenant], 1)
    assert allowed.headers() == {
        "RateLimit-Policy": '"read-key";q=3;w=2, "read-tenant";q=10;w=3',
        "RateLimit": '"read-key";r=2;t=1, "read-tenant";r=9;t=1',
    }
    local.take([key, tenant], 2)
    refused = local.take([key, tenant], 3)
    assert refused.headers()["Retry-After"] == "2"  # 1.5 s, in whole seconds up
    assert refused.headers()["RateLimit"].startswith('"read-key";r=0;t=2')


def test_a_key_and_its_tenant_have_buckets_of_the_tenants_own_limits() -> None:
    caller = _caller({"write_burst": 7, "tenant_write_rate": 3})
    key, tenant = caller_buckets(caller, "write", Limits())
    assert (key.burst, key.rate, tenant.rate) == (7, Limits().write_rate, 3)
    # One hash slot (the tenant's id between braces), one bucket per key and class.
    slot = f"{{{caller.tenant.id}}}"
    assert key.key.startswith(f"tally:ratelimit:{slot}:write:key:{caller.key_id}")
    assert tenant.key == f"tally:ratelimit:{slot}:write:tenant"
    assert address_buckets("10.0.0.1", Limits())[0].rate == Limits().read_rate


def test_the_client_address_is_the_edges_forwarded_one_only_from_inside() -> None:
    forwarded = [(b"x-forwarded-for", b"203.0.113.9")]
    assert client_address({"client": ("127.0.0.1", 1), "headers": forwarded}) == "203.0.113.9"
    assert client_address({"client": ("10.1.2.3", 1), "headers": forwarded}) == "203.0.113.9"
    # From outside, X-Forwarded-For is whatever the client wrote: the peer counts.
    assert client_address({"client": ("8.8.4.4", 1), "headers": forwarded}) == "8.8.4.4"
    assert client_address({"client": ("127.0.0.1", 1), "headers": []}) == "127.0.0.1"


async def test_with_redis_unreachable_the_limits_hold_in_this_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    redis = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        limiter = RateLimiter(redis, Limits(read_burst=3, read_rate=0.001))
        buckets = caller_buckets(_caller(), "read", limiter.limits)
        answers = [(await limiter.take(buckets, 1)).allowed for _ in range(5)]
        assert answers == [True, True, True, False, False]
        assert limiter.local
        failures = [r for r in caplog.records if "Redis failed" in r.getMessage()]
        assert len(failures) == 1  # once per outage, not once per request
    finally:
        await redis.aclose()


class Script:
    """The Lua script's answers, from LocalBuckets on the test's clock, counting its calls."""

    def __init__(self, clock: Clock) -> None:
        self.local = LocalBuckets(clock)
        self.calls = 0

    async def __call__(self, keys: list[str], args: list[str | float]) -> list[object]:
        self.calls += 1
        buckets = [
            Bucket(key, key, key, float(args[2 + 2 * i]), float(args[3 + 2 * i]))
            for i, key in enumerate(keys)
        ]
        decision = self.local.take(buckets, float(args[0]), debit=args[1] == "debit")
        out: list[object] = [int(decision.allowed), str(decision.retry_after_s)]
        for level in decision.levels:
            out += [str(level.tokens), int(level.room)]
        return out


class FakeRedis:
    def __init__(self, script: Script) -> None:
        self.script = script

    def register_script(self, _: str) -> Script:
        return self.script


async def test_a_spent_bucket_refuses_without_a_round_trip_until_it_may_have_room() -> None:
    clock = Clock()
    script = Script(clock)
    limiter = RateLimiter(FakeRedis(script), clock=clock)  # type: ignore[arg-type]
    bucket = _bucket("read-key", rate=1.0, burst=2.0)
    assert [(await limiter.take([bucket], 1)).allowed for _ in range(3)] == [True, True, False]
    assert script.calls == 3
    again = await limiter.take([bucket], 1)
    assert not again.allowed
    assert again.retry_after_s == pytest.approx(1.0)
    assert script.calls == 3  # refused here: the bucket cannot have a token yet
    clock.now += 0.5
    assert not (await limiter.take([bucket], 1)).allowed
    assert script.calls == 3
    assert (await limiter.take([bucket], 0.2)).allowed  # a cheaper request may fit: asked
    assert script.calls == 4
    clock.now += 1
    assert (await limiter.take([bucket], 1)).allowed
    assert script.calls == 5
