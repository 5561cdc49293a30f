"""The model of a customer's wait: how long until each open job is done. Pure functions and
small value types; the orchestrator (`_waits.Waits`) feeds them what it measures and what fair
dispatch decides.

The detectors' capacity (slices/s, all of them) is measured over a recent window while there is
work (time when photos arrive apart: uploads share the machine). Fair dispatch divides it among
the tenants with work: each holds an equal part of the window of chunks out, unless its
in-flight limit (or what it has left) is lower, and what a capped tenant leaves is shared by
the others (max-min fairness). A tenant's chunks go in upload order, so a job ends when its own
slices and everything its tenant uploaded before it are done. When a tenant's work runs out,
the others' shares grow: the model plays the division forward, tenant by tenant (processor
sharing), instead of assuming today's shares last. Chunks already sent are not divided again:
the detectors hold them (in hand or in their queue) and do them first, whoever arrives, and
each detector is on average half-way through the chunk in its hand.
A photo not yet planned adds its fixed cost (fetch, decode and planning before its first chunk),
learned from what was measured.

The interval is an 80 % one on the log of the wait: the wait is a quotient of positive
quantities, so its errors multiply.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, TypeVar

K = TypeVar("K", bound=Hashable)

# The interval is an 80 % one: ± this many standard deviations (of the log of the wait).
Z_80: Final = 1.2816
# What the model misses even when the rate is steady (chunks finish in bursts, results take a
# moment to merge and store): the log wait's standard deviation at the least.
MODEL_SPREAD: Final = 0.06
# How much a share below 1 may still move (tenants arriving and leaving, limits): the log wait's
# standard deviation for a tenant with none of the capacity, in proportion below that.
SHARE_SPREAD: Final = 0.2


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
    """What all detectors do: slices per second, and how much the rate varied between the
    recent window's intervals (standard deviation of the log rate; 0 when steady)."""

    rate: float
    spread: float


class _Work:
    """The intervals of work measured at one number of detectors, oldest first: (seconds,
    slices) each, and their seconds in all."""

    __slots__ = ("intervals", "span")

    def __init__(self) -> None:
        self.intervals: deque[tuple[float, int]] = deque()
        self.span = 0.0


class RateWindow:
    """The detectors' capacity from reads of the running total of slices done: the slices over
    the time they took, over the last `window_s` seconds of work. Only time with work counts:
    an interval between two reads counts when work was pending at both ends and at the read
    before (one that ends idle holds time nobody worked; the first one of a busy spell holds
    the wait for the first chunk, a fixed cost, not a rate), so short sessions with pauses
    between them add up. The spread comes from the rates of successive runs of intervals at
    least `bucket_s` long (shorter ones would measure how chunks arrive in bursts, not how the
    rate changes).

    Time when photos arrive (are uploaded) is measured apart from the rest: uploads
    take a machine that the detectors share (a CPU Triton on the same host), and what an ETA
    mostly covers is the work after its photos arrived. The capacity is the rate without
    arrivals; while nothing is measured without them yet, the rate with them (a service where
    photos never stop arriving).

    Each number of detectors has its own windows: a detector lost and back finds what that
    number was measured to do. At a number with nothing measured yet, the capacity is the
    latest one measured, scaled to it (each detector brings its own accelerator), with a spread
    wide enough to hold the capacity unchanged too (detectors may share one); what is measured
    at that number moves it to the measured rate, all the way once it spans `min_span_s`."""

    def __init__(self, window_s: float = 60.0, min_span_s: float = 2.0, bucket_s: float = 5.0):
        if window_s <= 0 or min_span_s <= 0 or bucket_s <= 0:
            raise ValueError("window_s, min_span_s and bucket_s must be positive")
        self._window_s = window_s
        self._min_span_s = min_span_s
        self._bucket_s = bucket_s
        self._work: dict[tuple[int, bool], _Work] = {}  # by detectors, and photos arriving
        self._read: tuple[float, int, bool] | None = None  # the last read: at, total, busy
        self._warm = False  # the last interval had work pending at both ends
        self._detectors = 0
        self._latest: tuple[int, Capacity] | None = None  # measured last, at how many detectors

    def add(
        self,
        at: float,
        total: int,
        *,
        detectors: int = 1,
        busy: bool = True,
        arrived: bool = False,
    ) -> None:
        """A read of the running total at time `at`, with the detectors consuming now, whether
        work is pending and whether photos arrived since the read before. Reads come in time
        order; a total that went down (what counts was restarted) forgets everything."""
        read = self._read
        if read is not None and (at < read[0] or total < read[1]):
            self._work.clear()
            self._latest, read = None, None
        busy_through = read is not None and read[2] and busy  # work pending at both ends
        # An interval across a change of detectors is neither number's.
        same = detectors == self._detectors
        if read is not None and busy_through and self._warm and same and at > read[0]:
            work = self._work.setdefault((detectors, arrived), _Work())
            work.intervals.append((at - read[0], total - read[1]))
            work.span += at - read[0]
            while work.span - work.intervals[0][0] >= self._window_s:
                work.span -= work.intervals.popleft()[0]
        self._detectors, self._warm, self._read = detectors, busy_through, (at, total, busy)

    def capacity(self) -> Capacity | None:
        """The capacity at the detectors consuming now: measured, or the latest one measured
        scaled to them (None: nothing is known yet)."""
        quiet, arriving = (self._work.get((self._detectors, a)) for a in (False, True))
        measured = self._measured(quiet) or self._measured(arriving)
        if measured is not None:
            self._latest = (self._detectors, measured)
            return measured
        if self._latest is None:
            return None
        at, latest = self._latest
        scale = self._detectors / at if at and self._detectors else 1.0
        # What is measured at this number so far moves the capacity from the scaled one to it,
        # in proportion to how much of `min_span_s` it spans.
        works = [w for w in (quiet, arriving) if w is not None]
        span = sum(w.span for w in works)
        part = min(span / self._min_span_s, 1.0)
        rate = latest.rate * scale * (1 - part)
        if span > 0:
            rate += part * sum(n for w in works for _, n in w.intervals) / span
        return Capacity(rate, math.hypot(latest.spread, (1 - part) * math.log(scale) / Z_80))

    def _measured(self, work: _Work | None) -> Capacity | None:
        if work is None or work.span < self._min_span_s:
            return None
        rate = sum(n for _, n in work.intervals) / work.span
        logs: list[float] = []
        seconds, slices = 0.0, 0
        for dt, dn in work.intervals:
            seconds, slices = seconds + dt, slices + dn
            if seconds >= self._bucket_s:
                logs.append(math.log(max(slices / seconds, rate * 0.05, 1e-9)))  # idle: 5 %
                seconds, slices = 0.0, 0
        spread = statistics.pstdev(logs) if len(logs) > 1 else 0.0
        return Capacity(rate, spread)


class Arrivals:
    """Whether photos arrived between two reads of when the newest one did (the database's
    newest upload: any replica's). The first read is no arrival, and neither is the newest photo
    deleted with its session: what counts is a photo newer than any seen."""

    def __init__(self) -> None:
        self._newest: datetime | None = None

    def seen(self, newest: datetime | None) -> bool:
        """A read of when the newest photo arrived; True when one arrived since the last."""
        before = self._newest
        if newest is None or (before is not None and newest <= before):
            return False
        self._newest = newest
        return before is not None


class FixedCost:
    """A photo's fixed cost in seconds (fetch, decode and planning before its first chunk),
    learned as an exponentially weighted mean of what was measured; `initial` until the first
    measurement."""

    def __init__(self, initial: float = 0.5, weight: float = 0.2) -> None:
        if not 0 < weight <= 1:
            raise ValueError("weight must be in (0, 1]")
        self.seconds = initial
        self._weight = weight
        self._seen = False

    def observe(self, seconds: float) -> None:
        if seconds < 0:
            return  # a clock step, not a measurement
        if not self._seen:
            self.seconds, self._seen = seconds, True
        else:
            self.seconds += self._weight * (seconds - self.seconds)


@dataclass(frozen=True, slots=True)
class OpenJob:
    """One of a tenant's open jobs: its slices left and whether its photo has been planned (one
    not planned yet still has its fixed cost to pay)."""

    job_id: str
    slices_left: float
    planned: bool


def in_hand(chunks_out: Sequence[tuple[str, int]], detectors: int) -> list[tuple[str, float]]:
    """The chunks out with the detectors (sent, not done; job id and slices, the earliest sent
    first), each with the slices it has left, expected: each detector works on one of the
    earliest (the rest wait in its queue), and at a moment that is not a chunk's start or end
    it is half-way through it on average."""
    return [
        (job_id, slices / 2 if position < detectors else float(slices))
        for position, (job_id, slices) in enumerate(chunks_out)
    ]


@dataclass(frozen=True, slots=True)
class TenantWork:
    """A tenant's open jobs in upload order (the order its chunks go in), and its in-flight
    limit in chunks."""

    jobs: Sequence[OpenJob]
    limit: int


def _chunks(slices: float, chunk_slices: int) -> int:
    return math.ceil(slices / chunk_slices - 1e-9) if slices > 0 else 0


def finish_times(
    tenants: Mapping[K, TenantWork],
    window: int,
    rate: float,
    chunk_slices: int,
    out: Sequence[tuple[str, float]] = (),
    detectors: int = 1,
) -> dict[str, float]:
    """Seconds until each open job's last slice is done. The chunks out with the detectors
    (`out`: job id and slices left, the earliest sent first, part of their jobs' slices left)
    go first, in the order sent, each to the first of the `detectors` free, each detector doing
    its part of `rate`, whoever has work waiting. The rest is divided fairly (`fair_slots`)
    among the tenants with work left, at `rate` once what is out is done, each tenant's jobs in
    upload order. The division is played forward: when a tenant's work runs out, the others
    share what it held. `rate` must be positive."""
    sent: dict[str, float] = {}
    drained: dict[str, float] = {}  # when each job's chunks out are done
    free = [0.0] * max(detectors, 1)  # when each detector has done what it holds
    for job_id, slices in out:
        sent[job_id] = sent.get(job_id, 0.0) + slices
        first = min(range(len(free)), key=free.__getitem__)
        free[first] += slices * len(free) / rate
        drained[job_id] = max(drained.get(job_id, 0.0), free[first])
    clock = sum(sent.values()) / rate  # the detectors take new chunks as they come free
    left = {
        t: [max(j.slices_left - sent.get(j.job_id, 0.0), 0.0) for j in w.jobs]
        for t, w in tenants.items()
    }
    position = dict.fromkeys(tenants, 0)  # each tenant's first job not done
    rest = {t: sum(jobs) for t, jobs in left.items()}  # each tenant's slices left, in all
    ends: dict[str, float] = {}

    def settle(tenant: K) -> None:  # jobs with nothing left end now
        jobs = tenants[tenant].jobs
        while position[tenant] < len(jobs) and left[tenant][position[tenant]] <= 1e-9:
            ends[jobs[position[tenant]].job_id] = clock
            position[tenant] += 1

    for tenant in tenants:
        settle(tenant)
    while active := [t for t in tenants if position[t] < len(tenants[t].jobs)]:
        caps = {t: min(tenants[t].limit, _chunks(rest[t], chunk_slices)) for t in active}
        slots = fair_slots(window, caps)
        used = sum(slots.values())
        speeds = {t: rate * slots[t] / used for t in active if slots[t] > 0}
        if not speeds:  # no room for anyone (an empty window): nothing ends
            break
        # The phase lasts until a tenant's current job ends: then caps (and speeds) may change.
        step = min(left[t][position[t]] / speed for t, speed in speeds.items())
        clock += step
        for t, speed in speeds.items():
            done = speed * step
            left[t][position[t]] = max(left[t][position[t]] - done, 0.0)
            rest[t] = max(rest[t] - done, 0.0)
            settle(t)
    for work in tenants.values():  # a job ends when what it has out is done, too
        for job in work.jobs:
            if job.slices_left - sent.get(job.job_id, 0.0) <= 1e-9:
                ends[job.job_id] = drained.get(job.job_id, 0.0)
            elif job.job_id in ends:
                ends[job.job_id] = max(ends[job.job_id], drained.get(job.job_id, 0.0))
    return ends


@dataclass(frozen=True, slots=True)
class Estimate:
    """Seconds until done, with an 80 % interval [low, high]."""

    seconds: float
    low: float
    high: float


@dataclass(frozen=True, slots=True)
class NoEstimate:
    """Why nothing can be estimated: `no_detector` (nothing is consuming the queue) or
    `measuring` (the detectors have not worked long enough to have a rate)."""

    reason: str


DONE: Final = Estimate(0.0, 0.0, 0.0)


def interval(seconds: float, spread: float, slack_s: float = 0.0) -> Estimate:
    """The estimate with its 80 % interval, for a log wait's standard deviation `spread`,
    widened by `slack_s` seconds either way (what is uncertain in seconds, not in proportion:
    when within its last chunk's time a job ends)."""
    return Estimate(
        round(seconds, 1),
        round(max(seconds * math.exp(-Z_80 * spread) - slack_s, 0.0), 1),
        round(seconds * math.exp(Z_80 * spread) + slack_s, 1),
    )


def estimate_jobs(
    tenants: Mapping[K, TenantWork],
    *,
    window: int,
    capacity: Capacity | None,
    detectors: int,
    fixed_cost_s: float,
    chunk_slices: int,
    out: Sequence[tuple[str, float]] = (),
) -> dict[str, Estimate | NoEstimate]:
    """Every open job's wait: its end under fair dispatch (`finish_times`, the chunks `out`
    first, shared among the detectors), plus the fixed cost of its photo when it is not planned
    yet, with an interval from the rate's recent variation, the model's own error and how far
    the tenant's share is below the whole, and widened by one chunk's time at one detector (a
    job ends when its last chunk comes back)."""
    jobs = [j for w in tenants.values() for j in w.jobs]
    if detectors <= 0 or capacity is None or capacity.rate <= 0:
        why = NoEstimate("no_detector" if detectors <= 0 else "measuring")
        return {j.job_id: (DONE if j.slices_left <= 0 and j.planned else why) for j in jobs}
    ends = finish_times(tenants, window, capacity.rate, chunk_slices, out, detectors)
    caps = {
        t: min(w.limit, _chunks(sum(j.slices_left for j in w.jobs), chunk_slices))
        for t, w in tenants.items()
    }
    shares = fair_shares(window, caps)
    chunk_s = chunk_slices * detectors / capacity.rate  # one chunk at one detector
    waits: dict[str, Estimate | NoEstimate] = {}
    for tenant, work in tenants.items():
        spread = math.hypot(capacity.spread, MODEL_SPREAD, SHARE_SPREAD * (1 - shares[tenant]))
        for job in work.jobs:
            if job.job_id not in ends:
                waits[job.job_id] = NoEstimate("measuring")
                continue
            seconds = ends[job.job_id] + (0.0 if job.planned else fixed_cost_s)
            waits[job.job_id] = DONE if seconds <= 0 else interval(seconds, spread, chunk_s)
    return waits


def session_wait(jobs: Sequence[Estimate | NoEstimate]) -> Estimate | NoEstimate:
    """A session's wait: until its last open job is done (the longest of its jobs' waits); no
    estimate when any of its jobs has none, for the first such job's reason."""
    for wait in jobs:
        if isinstance(wait, NoEstimate):
            return wait
    estimates = [w for w in jobs if isinstance(w, Estimate)]
    return max(estimates, key=lambda e: e.seconds, default=DONE)
