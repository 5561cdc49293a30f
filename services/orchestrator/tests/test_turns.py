"""Fair dispatch's rule, without a database: which held chunks go, in what order."""

from __future__ import annotations

import uuid

from tally_orchestrator._turns import DispatchLimits, allowances, take_turns

A, B, C = (uuid.UUID(int=n) for n in (1, 2, 3))


def _waiting(**counts: int) -> dict[uuid.UUID, list[str]]:
    """Each tenant's held chunks in upload order, named "<tenant>/<n>"."""
    tenants = {"a": A, "b": B, "c": C}
    return {tenants[t]: [f"{t}/{n}" for n in range(count)] for t, count in counts.items()}


def _names(chosen: list[tuple[uuid.UUID, str]]) -> list[str]:
    return [chunk for _, chunk in chosen]


def test_tenants_take_turns_chunk_by_chunk_in_turn_order_each_in_upload_order() -> None:
    chosen = take_turns([B, A], {}, DispatchLimits(window=5, per_tenant=8), _waiting(a=9, b=9))
    assert _names(chosen) == ["b/0", "a/0", "b/1", "a/1", "b/2"]
    assert [tenant for tenant, _ in chosen] == [B, A, B, A, B]


def test_a_tenant_with_few_chunks_leaves_the_rest_of_the_window_to_the_others() -> None:
    chosen = take_turns([A, B], {}, DispatchLimits(window=6, per_tenant=8), _waiting(a=1, b=9))
    assert _names(chosen) == ["a/0", "b/0", "b/1", "b/2", "b/3", "b/4"]


def test_the_per_tenant_limit_counts_the_chunks_already_out() -> None:
    limits = DispatchLimits(window=10, per_tenant=3)
    chosen = take_turns([A, B], {A: 2}, limits, _waiting(a=9, b=9))
    assert _names(chosen) == ["a/0", "b/0", "b/1", "b/2"]  # A had 2 of its 3 out
    assert take_turns([A], {A: 3}, limits, _waiting(a=9)) == []  # at its limit


def test_nothing_goes_beyond_the_window_whoever_has_the_chunks_out() -> None:
    limits = DispatchLimits(window=4, per_tenant=8)
    # C has nothing waiting: its chunks out still fill the window.
    assert _names(take_turns([A, B], {C: 3}, limits, _waiting(a=9, b=9))) == ["a/0"]
    assert take_turns([A, B], {C: 4}, limits, _waiting(a=9, b=9)) == []
    assert take_turns([A, B], {C: 5}, limits, _waiting(a=9, b=9)) == []  # over it: none either


def test_a_tenant_in_turn_with_nothing_waiting_gets_nothing_and_the_others_go_on() -> None:
    chosen = take_turns([A, B], {}, DispatchLimits(window=3, per_tenant=8), _waiting(b=9))
    assert _names(chosen) == ["b/0", "b/1", "b/2"]
    assert take_turns([], {}, DispatchLimits(window=3, per_tenant=8), {}) == []


def test_a_tenant_specific_limit_replaces_the_default_one_for_that_tenant_only() -> None:
    limits = DispatchLimits(window=10, per_tenant=2, tenants={A: 5, B: 1})
    chosen = take_turns([A, B, C], {}, limits, _waiting(a=9, b=9, c=9))
    assert _names(chosen) == ["a/0", "b/0", "c/0", "a/1", "c/1", "a/2", "a/3", "a/4"]


def test_only_as_many_tenants_as_free_slots_are_read_each_at_most_its_allowance() -> None:
    limits = DispatchLimits(window=3, per_tenant=3, tenants={B: 1})
    # Two slots are free: A may take 2, B (its one chunk out) none, C 2; D, after two tenants
    # that each take a chunk first, would get nothing: its chunks are not read.
    d = uuid.UUID(int=4)
    assert allowances([A, B, C, d], {B: 1}, limits) == {A: 2, C: 2}
    assert allowances([A, B, C, d], {}, DispatchLimits(window=2, per_tenant=8)) == {A: 2, B: 2}
    assert allowances([A], {A: 4}, DispatchLimits(window=4, per_tenant=8)) == {}
