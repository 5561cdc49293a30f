"""The model of a customer's wait: how long until each open job is done. Pure functions and
small value types; the orchestrator feeds them what it measures and what fair dispatch decides.

A job's wait is the slices ahead of it (its own remaining, plus what its tenant has queued before
it: a tenant's chunks go in upload order) divided by its tenant's rate, plus the fixed cost of
every photo among them not yet started (fetch and decode before a photo's first chunk). The
tenant's rate is the detectors' capacity, measured over a recent window, times the tenant's
share of it under fair dispatch: the window's slots divided max-min fairly among the tenants
with work, each capped by its in-flight limit and by what it has left.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

K = TypeVar("K", bound=Hashable)

# The interval is an 80 % one: ± this many standard deviations (of the log of the wait).
Z_80: Final = 1.2816


def fair_slots(window: int, caps: Mapping[K, int]) -> dict[K, float]:
    """Max-min fair division of `window` in-flight slots among tenants, each taking at most its
    cap (its in-flight limit, or fewer when it has fewer chunks left). Tenants take turns chunk
    by chunk, so in steady state each holds an equal part of the window unless its cap is
    lower; what a capped tenant leaves is shared by the others."""
    slots: dict[K, float] = {}
    left = float(max(window, 0))
    pending = sorted((k for k in caps if caps[k] > 0), key=lambda k: caps[k])
    for position, tenant in enumerate(pending):
        equal = left / (len(pending) - position)
        slots[tenant] = min(float(caps[tenant]), equal)
        left -= slots[tenant]
    return {k: slots.get(k, 0.0) for k in caps}


def fair_shares(window: int, caps: Mapping[K, int]) -> dict[K, float]:
    """Each tenant's share of the detectors' capacity: its fair slots over all slots in use."""
    slots = fair_slots(window, caps)
    used = sum(slots.values())
    return {k: (v / used if used else 0.0) for k, v in slots.items()}


@dataclass(frozen=True, slots=True)
class Capacity:
    """What all detectors did over the recent window: slices per second, and how much the rate
    varied between its intervals (standard deviation of the log rate; 0 when steady)."""

    rate: float
    spread: float


class RateWindow:
    """Slices completed by all detectors, as (time, count) reads of a running total, kept over
    the last `window_s` seconds. The rate is the slices over the time they took; the spread
    comes from the rates of successive intervals of at least `bucket_s` (shorter ones would
    measure how chunks arrive in bursts, not how the rate changes)."""

    def __init__(self, window_s: float = 60.0, min_span_s: float = 2.0, bucket_s: float = 5.0):
        if window_s <= 0 or min_span_s <= 0 or bucket_s <= 0:
            raise ValueError("window_s, min_span_s and bucket_s must be positive")
        self._window_s = window_s
        self._min_span_s = min_span_s
        self._bucket_s = bucket_s
        self._reads: deque[tuple[float, int]] = deque()

    def add(self, at: float, total: int) -> None:
        """A read of the running total at time `at` (reads come in time order; a total that
        went down, as after a restart of what counts, starts the window afresh)."""
        if self._reads and (at < self._reads[-1][0] or total < self._reads[-1][1]):
            self._reads.clear()
        self._reads.append((at, total))
        while len(self._reads) > 2 and self._reads[1][0] <= at - self._window_s:
            self._reads.popleft()

    def capacity(self) -> Capacity | None:
        """None until the reads span `min_span_s` (nothing can be said yet)."""
        if len(self._reads) < 2:
            return None
        (t0, n0), (t1, n1) = self._reads[0], self._reads[-1]
        if t1 - t0 < self._min_span_s:
            return None
        rate = (n1 - n0) / (t1 - t0)
        logs: list[float] = []
        start = self._reads[0]
        for read in self._reads:
            if read[0] - start[0] >= self._bucket_s:
                bucket = (read[1] - start[1]) / (read[0] - start[0])
                logs.append(math.log(max(bucket, rate * 0.05, 1e-9)))  # an idle bucket: 5 %
                start = read
        spread = statistics.pstdev(logs) if len(logs) > 1 else 0.0
        return Capacity(rate, spread)


class FixedCost:
    """A photo's fixed cost in seconds (fetch and decode before its first chunk), learned as an
    exponentially weighted mean of what was measured; `initial` until the first measurement."""

    def __init__(self, initial: float = 0.5, weight: float = 0.2) -> None:
        if not 0 < weight <= 1:
            raise ValueError("weight must be in (0, 1]")
        self.seconds = initial
        self._weight = weight
        self._seen = False

    def observe(self, seconds: float) -> None:
        if seconds < 0:
            return
        if not self._seen:
            self.seconds, self._seen = seconds, True
        else:
            self.seconds += self._weight * (seconds - self.seconds)


@dataclass(frozen=True, slots=True)
class OpenJob:
    """One of a tenant's open jobs, in the tenant's upload order: its slices left (for a photo
    not yet planned, the tenant's mean planned size) and whether its photo has started."""

    job_id: str
    slices_left: float
    started: bool


@dataclass(frozen=True, slots=True)
class Ahead:
    """What stands before a job's end: slices, and photos whose fixed cost is still to pay."""

    slices: float
    photos: int


def ahead_of_each(jobs: Sequence[OpenJob]) -> dict[str, Ahead]:
    """For each job of one tenant (in upload order), the slices and unstarted photos ahead of
    its end: its own and every earlier job's (fair dispatch sends a tenant's chunks in upload
    order, so a job ends when everything before it has been sent and done)."""
    ahead: dict[str, Ahead] = {}
    slices, photos = 0.0, 0
    for job in jobs:
        slices += max(job.slices_left, 0.0)
        photos += 0 if job.started else 1
        ahead[job.job_id] = Ahead(slices, photos)
    return ahead


@dataclass(frozen=True, slots=True)
class Estimate:
    seconds: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class NoEstimate:
    """Why nothing can be estimated: `no_detector` (nothing is consuming the queue) or
    `measuring` (the detectors have not worked long enough to have a rate)."""

    reason: str


def estimate(
    ahead: Ahead,
    capacity: Capacity | None,
    share: float,
    fixed_cost_s: float,
    *,
    detectors: int,
    share_spread: float = 0.0,
) -> Estimate | NoEstimate:
    """A job's wait: the slices ahead at the tenant's rate (capacity × share) plus the fixed
    costs ahead, with an 80 % interval from the variation of the rate and of the share
    (log-normal: the wait is a quotient of positive quantities)."""
    if ahead.slices <= 0 and ahead.photos == 0:
        return Estimate(0.0, 0.0, 0.0)
    if detectors <= 0:
        return NoEstimate("no_detector")
    if capacity is None or capacity.rate <= 0 or share <= 0:
        return NoEstimate("measuring")
    seconds = ahead.slices / (capacity.rate * share) + ahead.photos * fixed_cost_s
    sigma = math.hypot(capacity.spread, share_spread)
    return Estimate(
        round(seconds, 1),
        round(seconds * math.exp(-Z_80 * sigma), 1),
        round(seconds * math.exp(Z_80 * sigma), 1),
    )
