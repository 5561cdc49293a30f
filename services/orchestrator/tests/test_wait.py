"""The wait model's pure parts: shares under fair dispatch with limits, a queued job's place,
the division played forward, the interval, the measured capacity."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from tally_orchestrator._wait import (
    DONE,
    MODEL_SPREAD,
    Z_80,
    Arrivals,
    Capacity,
    Estimate,
    FixedCost,
    NoEstimate,
    OpenJob,
    RateWindow,
    TenantWork,
    estimate_jobs,
    fair_shares,
    fair_slots,
    finish_times,
    in_hand,
    interval,
    session_wait,
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


def _tenant(*slices: float, limit: int = 8, planned: bool = True) -> TenantWork:
    return TenantWork([OpenJob(f"j{i}", n, planned) for i, n in enumerate(slices)], limit)


def test_a_queued_job_waits_for_what_its_tenant_uploaded_before_it() -> None:
    # One tenant at 8 slices/s: 40, then 88, then 88 slices, in upload order.
    ends = finish_times({"a": _tenant(40, 88, 88)}, window=8, rate=8.0, chunk_slices=16)
    assert ends == pytest.approx({"j0": 5.0, "j1": 16.0, "j2": 27.0})


def test_a_second_tenant_halves_the_first_ones_rate() -> None:
    alone = finish_times({"a": _tenant(1000)}, window=8, rate=100.0, chunk_slices=16)
    assert alone == pytest.approx({"j0": 10.0})
    a, b = _tenant(1000), TenantWork([OpenJob("b0", 1000, True)], 8)
    shared = finish_times({"a": a, "b": b}, window=8, rate=100.0, chunk_slices=16)
    assert shared == pytest.approx({"j0": 20.0, "b0": 20.0})


def test_a_tenant_whose_work_runs_out_gives_its_share_back() -> None:
    # b has 200 slices: both go at 50/s until b is done (4 s), then a alone at 100/s.
    a, b = _tenant(1000), TenantWork([OpenJob("b0", 200, True)], 8)
    ends = finish_times({"a": a, "b": b}, window=8, rate=100.0, chunk_slices=16)
    assert ends == pytest.approx({"b0": 4.0, "j0": 4.0 + 800 / 100})


def test_a_tenants_limit_bounds_its_rate_and_the_others_take_the_rest() -> None:
    # Window 8, a may have 2 chunks out: a gets 2/8 of 100 slices/s, b the other 6/8.
    a, b = _tenant(250, limit=2), TenantWork([OpenJob("b0", 750, True)], 8)
    ends = finish_times({"a": a, "b": b}, window=8, rate=100.0, chunk_slices=16)
    assert ends == pytest.approx({"j0": 10.0, "b0": 10.0})


def test_what_was_sent_already_is_not_divided_again() -> None:
    # a has 96 slices out with the detectors and 104 to send; b arrives with 1000. The detectors
    # do the 96 first (0.96 s at 100/s), whoever arrived; then a's 104 go at half the rate.
    a = TenantWork([OpenJob("a0", 96, True), OpenJob("a1", 104, True)], 8)
    b = TenantWork([OpenJob("b0", 1000, True)], 8)
    out = [("a0", 48.0), ("a0", 48.0)]
    ends = finish_times({"a": a, "b": b}, window=8, rate=100.0, chunk_slices=16, out=out)
    assert ends["a0"] == pytest.approx(0.96)
    assert ends["a1"] == pytest.approx(0.96 + 104 / 50)
    # Without a neighbour the same work takes what it always did: 200 slices at 100/s.
    alone = finish_times({"a": a}, window=8, rate=100.0, chunk_slices=16, out=out)
    assert alone == pytest.approx({"a0": 0.96, "a1": 2.0})


def test_chunks_out_are_done_in_the_order_they_were_sent() -> None:
    # a's last 16 slices went out before b's 80: a is done in 0.16 s, not held back by b.
    a = TenantWork([OpenJob("a0", 16, True)], 8)
    b = TenantWork([OpenJob("b0", 1080, True)], 8)
    out = [("a0", 16.0), ("b0", 16.0), ("b0", 64.0)]
    ends = finish_times({"a": a, "b": b}, window=8, rate=100.0, chunk_slices=16, out=out)
    assert ends["a0"] == pytest.approx(0.16)
    assert ends["b0"] == pytest.approx(0.96 + 1000 / 100)
    # A job not planned yet (nothing of it out) still waits in upload order behind the others.
    c = TenantWork([OpenJob("c0", 32, True), OpenJob("c1", 64, False)], 8)
    ends = finish_times({"c": c}, window=8, rate=32.0, chunk_slices=16, out=[("c0", 32.0)])
    assert ends == pytest.approx({"c0": 1.0, "c1": 3.0})


def test_the_chunks_out_are_shared_among_the_detectors_each_at_its_part_of_the_rate() -> None:
    # Three chunks of 16, two detectors at 50 slices/s each: two at once, then the third on
    # the first one free; 0.64 s, not the 0.48 s of all 100 slices/s on 48 slices.
    a = TenantWork([OpenJob("a0", 48, True)], 8)
    out = [("a0", 16.0)] * 3
    ends = finish_times({"a": a}, window=8, rate=100.0, chunk_slices=16, out=out, detectors=2)
    assert ends == pytest.approx({"a0": 0.64})
    # One chunk of 16 out: one of the two detectors does it, at 50/s.
    waits = estimate_jobs(
        {"a": TenantWork([OpenJob("a0", 16, True)], 8)},
        window=8,
        capacity=Capacity(rate=100.0, spread=0.0),
        detectors=2,
        fixed_cost_s=0.5,
        chunk_slices=16,
        out=[("a0", 16.0)],
    )
    assert waits["a0"] == interval(16 / 50, MODEL_SPREAD, 16 * 2 / 100)


def test_each_detector_is_half_way_through_the_earliest_chunk_out() -> None:
    out = [("j0", 16), ("j1", 16), ("j0", 8), ("j2", 16)]
    assert in_hand(out, detectors=2) == [("j0", 8.0), ("j1", 8.0), ("j0", 8.0), ("j2", 16.0)]
    assert in_hand(out, detectors=3) == [("j0", 8.0), ("j1", 8.0), ("j0", 4.0), ("j2", 16.0)]
    assert in_hand(out[:1], detectors=4) == [("j0", 8.0)]
    assert in_hand(out, detectors=0) == [(j, float(n)) for j, n in out]


def test_the_estimate_adds_the_fixed_cost_of_a_photo_not_planned_yet() -> None:
    steady = Capacity(rate=100.0, spread=0.0)
    waits = estimate_jobs(
        {"a": TenantWork([OpenJob("p", 500, True), OpenJob("u", 500, False)], 8)},
        window=8,
        capacity=steady,
        detectors=2,
        fixed_cost_s=0.5,
        chunk_slices=16,
    )
    chunk_s = 16 * 2 / 100.0  # one chunk at one of the two detectors
    assert waits["p"] == interval(5.0, MODEL_SPREAD, chunk_s)
    assert waits["u"] == interval(10.5, MODEL_SPREAD, chunk_s)  # 1000 slices, then its fixed cost


def test_the_interval_is_an_80_percent_one_wider_when_the_rate_or_the_share_varies() -> None:
    assert interval(10.0, 0.0) == Estimate(10.0, 10.0, 10.0)
    result = interval(10.0, 0.2)
    assert result.high == pytest.approx(10 * math.exp(Z_80 * 0.2), abs=0.1)
    assert result.low == pytest.approx(10 * math.exp(-Z_80 * 0.2), abs=0.1)
    slack = interval(10.0, 0.2, slack_s=1.0)  # what is uncertain in seconds widens both ends
    assert (slack.low, slack.high) == pytest.approx((result.low - 1, result.high + 1), abs=0.1)
    assert interval(0.5, 0.0, slack_s=1.0).low == 0.0  # never below nothing

    def width(capacity: Capacity, tenants: dict[str, TenantWork]) -> float:
        wait = estimate_jobs(
            tenants, window=8, capacity=capacity, detectors=1, fixed_cost_s=0, chunk_slices=16
        )["j0"]
        assert isinstance(wait, Estimate)
        return wait.high / wait.low

    alone = width(Capacity(100.0, 0.0), {"a": _tenant(1000)})  # 10 s, one chunk 0.16 s
    assert alone == pytest.approx(
        (10 * math.exp(Z_80 * MODEL_SPREAD) + 0.16) / (10 * math.exp(-Z_80 * MODEL_SPREAD) - 0.16),
        rel=0.02,
    )
    assert width(Capacity(100.0, 0.3), {"a": _tenant(1000)}) > alone  # the rate varied
    shared = {"a": _tenant(1000), "b": TenantWork([OpenJob("b0", 1000, True)], 8)}
    assert width(Capacity(100.0, 0.0), shared) > alone  # half the share: it may move


def test_nothing_is_estimated_without_detectors_or_a_rate_but_done_is_zero() -> None:
    tenants = {"a": TenantWork([OpenJob("open", 10, True), OpenJob("done", 0, True)], 8)}

    def waits(capacity: Capacity | None, detectors: int) -> dict[str, Estimate | NoEstimate]:
        return estimate_jobs(
            tenants,
            window=8,
            capacity=capacity,
            detectors=detectors,
            fixed_cost_s=0,
            chunk_slices=16,
        )

    assert waits(Capacity(5, 0), 0) == {"open": NoEstimate("no_detector"), "done": DONE}
    assert waits(None, 1) == {"open": NoEstimate("measuring"), "done": DONE}
    assert waits(Capacity(0, 0), 1)["open"] == NoEstimate("measuring")


def test_a_session_waits_for_its_last_job_or_has_no_estimate_with_the_reason() -> None:
    assert session_wait([Estimate(3, 2, 4), Estimate(9, 7, 11)]) == Estimate(9, 7, 11)
    assert session_wait([Estimate(3, 2, 4), NoEstimate("measuring")]) == NoEstimate("measuring")
    assert session_wait([]) == DONE


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
    window.add(-1.0, total)  # the busy spell's first interval (the first chunk's wait) is not
    window.add(0.0, total)  # a rate
    for second in range(60):
        total += 20 if (second // 5) % 2 else 80  # 80 and 20 slices/s in turns of 5 s
        window.add(float(second + 1), total)
    capacity = window.capacity()
    assert capacity is not None
    assert capacity.rate == pytest.approx(50.0, rel=0.1)
    assert capacity.spread == pytest.approx(math.log(4) / 2, rel=0.2)
    window.add(61.0, 5)  # the count went down: what counts was restarted
    assert window.capacity() is None


def test_idle_time_is_not_measured_and_a_lost_detector_scales_the_capacity() -> None:
    window = RateWindow(window_s=60, min_span_s=5)
    for second in range(11):
        window.add(float(second), 40 * second, detectors=2)
    assert window.capacity() == Capacity(40.0, 0.0)
    window.add(100.0, 400, detectors=2, busy=False)  # 90 s with nothing to do...
    window.add(101.0, 400, detectors=2)
    window.add(103.0, 480, detectors=2)
    capacity = window.capacity()
    assert capacity is not None
    assert capacity.rate == 40.0  # ...do not count: the last capacity stands until measured anew
    window.add(104.0, 520, detectors=1)  # a detector was lost
    capacity = window.capacity()
    assert capacity is not None
    assert capacity.rate == 20.0  # at once, before anything is measured at one detector...
    # ...with a spread whose 80 % interval reaches the capacity unchanged (a shared accelerator)
    assert 20.0 * math.exp(Z_80 * capacity.spread) == pytest.approx(40.0)
    for second in range(105, 107):
        window.add(float(second), 520 + 30 * (second - 104), detectors=1)
    capacity = window.capacity()
    assert capacity is not None
    # 2 s of the 5 measured at one detector (30/s): 2/5 of the way from the scaled 20 to it
    assert capacity.rate == pytest.approx(20 * 3 / 5 + 30 * 2 / 5)
    assert 20.0 * math.exp(Z_80 * capacity.spread) < 40.0  # and less unsure of it
    for second in range(107, 110):
        window.add(float(second), 520 + 30 * (second - 104), detectors=1)
    capacity = window.capacity()
    assert capacity is not None
    # min_span_s later (the work went on through the change): what one detector does, measured
    assert capacity.rate == pytest.approx(30.0)
    for second in range(110, 112):
        window.add(float(second), 520 + 30 * (second - 104), detectors=1)
    window.add(112.0, 730, detectors=2)  # the detector is back: what two were measured to do
    assert window.capacity() == Capacity(40.0, 0.0)


def test_the_first_interval_of_a_busy_spell_is_not_a_rate() -> None:
    window = RateWindow(window_s=60, min_span_s=2)
    window.add(0.0, 0, busy=False)
    window.add(1.0, 0)  # work arrived
    window.add(2.0, 5)  # the first chunk came back late in this second: not the rate
    for second in range(3, 6):
        window.add(float(second), 5 + 50 * (second - 2))
    assert window.capacity() == Capacity(50.0, 0.0)


def test_time_when_photos_arrive_is_measured_apart_and_counts_until_the_rest_is() -> None:
    window = RateWindow(window_s=60, min_span_s=2)
    window.add(0.0, 0)
    window.add(1.0, 10, arrived=True)  # the busy spell's first interval
    for second in range(2, 6):  # uploads take the machine: 20 slices/s while photos arrive
        window.add(float(second), 10 + 20 * (second - 1), arrived=True)
    assert window.capacity() == Capacity(20.0, 0.0)  # nothing measured without arrivals yet
    window.add(6.0, 150)  # then 60 slices/s: 1 s is too short to say...
    assert window.capacity() == Capacity(20.0, 0.0)
    for second in range(7, 10):
        window.add(float(second), 150 + 60 * (second - 6))
    assert window.capacity() == Capacity(60.0, 0.0)  # ...4 s is not: the rate the rest goes at
    window.add(10.0, 350, arrived=True)  # another tenant's upload
    assert window.capacity() == Capacity(60.0, 0.0)


def test_photos_arrived_when_the_newest_upload_is_newer_than_any_seen() -> None:
    arrivals = Arrivals()
    noon = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert not arrivals.seen(None)  # no photo yet
    assert not arrivals.seen(noon)  # the first read: nothing to compare with
    assert not arrivals.seen(noon)  # nothing new
    assert arrivals.seen(noon + timedelta(seconds=1))
    assert not arrivals.seen(noon)  # the newest deleted with its session: no arrival
    assert not arrivals.seen(None)  # every photo deleted: none either
    assert arrivals.seen(noon + timedelta(seconds=2))


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


def test_short_sessions_with_pauses_between_add_up_to_a_rate() -> None:
    # Sessions of 3 s at 30 slices/s, read every second, with a minute of nothing between.
    window = RateWindow(window_s=60, min_span_s=5)
    total, at = 0, 0.0
    for _ in range(3):
        for _ in range(4):  # busy at 4 reads: 3 intervals of work
            window.add(at, total)
            at, total = at + 1, total + 30
        total -= 30  # the last read found the work done
        window.add(at, total, busy=False)  # ...and the work ended within the next second
        at += 60
    capacity = window.capacity()
    assert capacity is not None
    assert capacity.rate == pytest.approx(30.0)  # 6 s of work; neither the ends nor the pauses
