"""The wait model's pure parts: shares under fair dispatch, a queued job's place, the interval."""

from __future__ import annotations

import math

import pytest

from tally_orchestrator._wait import (
    Z_80,
    Ahead,
    Capacity,
    Estimate,
    FixedCost,
    NoEstimate,
    OpenJob,
    RateWindow,
    ahead_of_each,
    estimate,
    fair_shares,
    fair_slots,
)


def test_one_tenant_has_all_the_capacity_and_a_second_halves_it() -> None:
    assert fair_shares(8, {"a": 100}) == {"a": 1.0}
    assert fair_shares(8, {"a": 100, "b": 100}) == {"a": 0.5, "b": 0.5}
    assert fair_shares(9, {"a": 100, "b": 100, "c": 100}) == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}
    )


def test_a_tenant_at_its_limit_leaves_the_rest_to_the_others() -> None:
    # Window 8: b may have only 2 out, so a takes the other 6.
    assert fair_slots(8, {"a": 100, "b": 2}) == {"a": 6.0, "b": 2.0}
    assert fair_shares(8, {"a": 100, "b": 2}) == {"a": 0.75, "b": 0.25}
    # Three tenants, one capped at 1: the two others share 7.
    assert fair_slots(8, {"a": 100, "b": 1, "c": 100}) == {"a": 3.5, "b": 1.0, "c": 3.5}


def test_a_tenant_with_little_left_takes_only_that() -> None:
    # b has one chunk left: it cannot hold more than one slot.
    assert fair_slots(8, {"a": 50, "b": 1}) == {"a": 7.0, "b": 1.0}


def test_when_every_cap_is_below_the_window_shares_follow_the_caps() -> None:
    # Limits of 2 and 4 in a window of 16: the detectors serve 6 chunks, 1/3 and 2/3 of them.
    assert fair_slots(16, {"a": 2, "b": 4}) == {"a": 2.0, "b": 4.0}
    assert fair_shares(16, {"a": 2, "b": 4}) == pytest.approx({"a": 1 / 3, "b": 2 / 3})


def test_tenants_without_work_or_room_get_nothing() -> None:
    assert fair_shares(8, {"a": 0, "b": 5}) == {"a": 0.0, "b": 1.0}
    assert fair_shares(0, {"a": 5}) == {"a": 0.0}
    assert fair_shares(8, {}) == {}


def test_a_queued_job_waits_for_what_its_tenant_uploaded_before_it() -> None:
    jobs = [
        OpenJob("first", slices_left=40, started=True),
        OpenJob("second", slices_left=88, started=False),
        OpenJob("third", slices_left=88, started=False),
    ]
    ahead = ahead_of_each(jobs)
    assert ahead["first"] == Ahead(40, 0)
    assert ahead["second"] == Ahead(128, 1)
    assert ahead["third"] == Ahead(216, 2)


def test_the_estimate_is_slices_over_the_tenants_rate_plus_fixed_costs() -> None:
    steady = Capacity(rate=100.0, spread=0.0)
    alone = estimate(Ahead(1000, 2), steady, 1.0, 0.5, detectors=2)
    assert alone == Estimate(11.0, 11.0, 11.0)  # 1000 / 100 + 2 × 0.5; no variation: no width
    shared = estimate(Ahead(1000, 2), steady, 0.5, 0.5, detectors=2)
    assert isinstance(shared, Estimate)
    assert shared.seconds == 21.0  # half the share: the slices take twice as long


def test_the_interval_is_an_80_percent_one_around_the_estimate() -> None:
    result = estimate(Ahead(1000, 0), Capacity(100.0, 0.2), 1.0, 0.0, detectors=1)
    assert isinstance(result, Estimate)
    assert result.low < result.seconds < result.high
    assert result.high == pytest.approx(10 * math.exp(Z_80 * 0.2), abs=0.1)
    assert result.low == pytest.approx(10 * math.exp(-Z_80 * 0.2), abs=0.1)
    wider = estimate(Ahead(1000, 0), Capacity(100.0, 0.2), 1.0, 0.0, detectors=1, share_spread=0.3)
    assert isinstance(wider, Estimate)
    assert wider.low < result.low
    assert wider.high > result.high


def test_nothing_is_estimated_without_detectors_or_a_rate_but_done_is_zero() -> None:
    assert estimate(Ahead(10, 0), Capacity(5, 0), 1, 0, detectors=0) == NoEstimate("no_detector")
    assert estimate(Ahead(10, 0), None, 1, 0, detectors=1) == NoEstimate("measuring")
    assert estimate(Ahead(10, 0), Capacity(5, 0), 0, 0, detectors=1) == NoEstimate("measuring")
    assert estimate(Ahead(0, 0), None, 0, 0, detectors=0) == Estimate(0.0, 0.0, 0.0)


def test_the_rate_window_measures_recent_work_only() -> None:
    window = RateWindow(window_s=30, min_span_s=2, bucket_s=5)
    assert window.capacity() is None
    window.add(0.0, 0)
    window.add(1.0, 50)
    assert window.capacity() is None  # one second is too short to say
    for second in range(2, 61):  # 50 slices/s for a minute...
        window.add(float(second), 50 * second)
    for second in range(61, 91):  # ...then 100 slices/s for the last 30 s
        window.add(float(second), 3000 + 100 * (second - 60))
    capacity = window.capacity()
    assert capacity is not None
    assert capacity.rate == pytest.approx(100.0, rel=0.05)  # the window forgot the slow minute
    assert capacity.spread == pytest.approx(0.0, abs=0.05)


def test_a_changing_rate_has_a_spread_and_a_restarted_count_starts_afresh() -> None:
    window = RateWindow(window_s=60, bucket_s=5)
    total = 0
    window.add(0.0, total)
    for second in range(60):
        total += 20 if (second // 5) % 2 else 80  # 80 and 20 slices/s in turns of 5 s
        window.add(float(second + 1), total)
    capacity = window.capacity()
    assert capacity is not None
    assert capacity.rate == pytest.approx(50.0, rel=0.1)
    assert capacity.spread == pytest.approx(math.log(4) / 2, rel=0.2)
    window.add(61.0, 5)  # the count went down: what counts was restarted
    assert window.capacity() is None


def test_the_fixed_cost_is_learned_from_measurements() -> None:
    cost = FixedCost(initial=0.5, weight=0.5)
    assert cost.seconds == 0.5
    cost.observe(2.0)
    assert cost.seconds == 2.0  # the first measurement replaces the guess
    cost.observe(1.0)
    assert cost.seconds == 1.5
    cost.observe(-1.0)  # a clock step, not a measurement
    assert cost.seconds == 1.5
    with pytest.raises(ValueError, match="weight"):
        FixedCost(weight=0)
