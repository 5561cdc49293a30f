"""A noisy neighbour on a real gateway (a subprocess with its default limits, real PostgreSQL
and Redis): make bench-abuse, smaller. While tenant A floods big job pages, polls and made-up
keys, A is answered 429 with Retry-After and tenant B is served, every poll of it. Behaviour
only: the latencies are the benchmark's to print, not a test's to judge on a shared machine."""

from __future__ import annotations

import dataclasses

import pytest

from tally_bench._stack import Names
from tally_bench.abuse import FLOODS, Plan, run

pytestmark = [pytest.mark.integration, pytest.mark.reliability]


async def test_a_flooding_tenant_gets_429s_with_retry_after_and_the_other_is_served() -> None:
    names = dataclasses.replace(Names.fresh(), redis_url="redis://127.0.0.1:6379/13")
    plan = Plan(idle_s=2, flood_s=3, pollers=10, interval_s=1, flood_rate=500, settle_s=0.5)
    result = await run(plan, names)
    assert [phase.flood for phase in result.phases] == ["", *FLOODS]
    for phase in result.phases:
        b = phase.b
        where = phase.flood or "alone"
        assert (b.ok, b.errors, b.unfinished) == (b.scheduled, 0, 0), (where, b.error_kinds)
        if phase.a is None:
            continue
        refused = phase.a.statuses.get(429, 0)
        assert refused > 0, (where, phase.a.statuses)
        assert phase.a.retry_after == refused, where  # every 429 said when to retry
        served = {"jobs": 200, "polls": 200, "unknown-keys": 401}[phase.flood]
        assert set(phase.a.statuses) == {served, 429}, (where, phase.a.statuses)
