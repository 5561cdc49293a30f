"""The backlog, for autoscaling: slices waiting for a detector and how long they will take.

Every orchestrator replica samples the record store (all tenants) every few seconds and
exports the same figures, so a KEDA ScaledObject can use `max(tally_pending_slices)` or
`max(tally_expected_drain_seconds)` whichever replica Prometheus scrapes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque

from prometheus_client import Gauge

from tally_orchestrator._records import Records

log = logging.getLogger(__name__)

PENDING = Gauge(
    "tally_pending_slices",
    "Slices not detected yet, all tenants (a photo not planned yet counts as the mean planned one)",
)
UNPLANNED = Gauge("tally_unplanned_jobs", "Photos queued and not planned yet, all tenants")
RATE = Gauge("tally_slice_rate", "Slices detected per second over the last minute, all detectors")
DRAIN = Gauge(
    "tally_expected_drain_seconds",
    "Time to detect every pending slice at the last minute's rate (+Inf: pending, no progress)",
)


def drain_estimate(
    samples: deque[tuple[float, int]], pending: float
) -> tuple[float | None, float | None]:
    """(slices per second, seconds to drain) from (time, slices done so far) samples; None
    while there are not two samples. Pure."""
    if len(samples) < 2:
        return None, None
    (start, done_then), (now, done_now) = samples[0], samples[-1]
    if now <= start:
        return None, None
    rate = max(done_now - done_then, 0) / (now - start)
    if pending <= 0:
        return rate, 0.0
    return rate, (pending / rate if rate > 0 else math.inf)


async def export_backlog(records: Records, interval_s: float = 5.0, window_s: float = 60.0) -> None:
    """Sample and export until cancelled."""
    samples: deque[tuple[float, int]] = deque()
    while True:
        try:
            backlog = await records.backlog()
        except Exception as exc:  # the database is away: keep the last figures
            log.warning("backlog not sampled: %s", exc)
        else:
            now = time.monotonic()
            samples.append((now, backlog.slices_done))
            while len(samples) > 2 and samples[1][0] <= now - window_s:
                samples.popleft()
            rate, drain = drain_estimate(samples, backlog.pending_slices)
            PENDING.set(backlog.pending_slices)
            UNPLANNED.set(backlog.unplanned_jobs)
            RATE.set(math.nan if rate is None else rate)
            DRAIN.set(math.nan if drain is None else drain)
        await asyncio.sleep(interval_s)
