"""The drain-time estimate behind the autoscaling metric."""

from __future__ import annotations

import math
from collections import deque

from tally_orchestrator._backlog import drain_estimate


def test_drain_time_is_pending_slices_at_the_measured_rate() -> None:
    samples = deque([(0.0, 1_000), (30.0, 1_900), (60.0, 2_800)])
    assert drain_estimate(samples, pending=900) == (30.0, 30.0)  # 1,800 slices in 60 s


def test_drain_time_is_unknown_infinite_or_zero_as_it_should_be() -> None:
    assert drain_estimate(deque([(0.0, 5)]), pending=10) == (None, None)  # one sample
    assert drain_estimate(deque([(0.0, 5), (60.0, 5)]), pending=10) == (0.0, math.inf)
    assert drain_estimate(deque([(0.0, 5), (60.0, 65)]), pending=0) == (1.0, 0.0)
