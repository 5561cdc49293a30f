"""How the status bench spreads its subscribers over its client processes."""

from __future__ import annotations

from tally_bench.status import _spread


def test_every_subscriber_goes_to_one_process_and_the_processes_carry_the_same() -> None:
    subscriptions = {f"s{i}": 9 for i in range(1000)} | {"hot": 1000}
    shares = _spread(subscriptions, 4)
    for session, n in subscriptions.items():
        assert sum(share.get(session, 0) for share in shares) == n
    loads = [sum(share.values()) for share in shares]
    assert sum(loads) == 10_000
    assert max(loads) - min(loads) <= 1


def test_a_session_with_fewer_subscribers_than_processes_is_not_split_into_empty_shares() -> None:
    shares = _spread({"a": 1, "b": 1, "c": 1}, 2)
    assert [sorted(share) for share in shares] == [["a", "c"], ["b"]]
    assert all(n == 1 for share in shares for n in share.values())
