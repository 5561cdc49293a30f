"""Percentiles of latency samples. Pure."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q ≤ 100): a value that was observed, never an
    interpolation, so p99 of 100 samples is the 99th smallest. NaN for no samples."""
    if not 0 < q <= 100:
        raise ValueError(f"a percentile is in (0, 100], not {q}")
    ordered = sorted(values)
    if not ordered:
        return math.nan
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


@dataclass(frozen=True, slots=True)
class Latencies:
    """Milliseconds."""

    count: int
    p50: float
    p90: float
    p99: float
    max: float

    @classmethod
    def of(cls, samples_ms: Iterable[float]) -> Latencies:
        ordered = sorted(samples_ms)
        if not ordered:
            return cls(0, math.nan, math.nan, math.nan, math.nan)
        return cls(
            len(ordered),
            percentile(ordered, 50),
            percentile(ordered, 90),
            percentile(ordered, 99),
            ordered[-1],
        )
