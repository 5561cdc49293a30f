"""Throughput from what the pipeline bench observed: pure functions of timestamps and counts."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Sample:
    """One poll of the session: when (epoch seconds) and how many slices were done by then."""

    at: float
    processed: int


def epoch(iso: str) -> float:
    """Epoch seconds of an ISO 8601 timestamp with its offset (as the API writes them)."""
    moment = datetime.fromisoformat(iso)
    if moment.tzinfo is None:
        raise ValueError(f"a timestamp without a UTC offset: {iso!r}")
    return moment.timestamp()


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("nan")


def crossing(samples: Sequence[Sample], count: float) -> float | None:
    """When the slices done first reached `count`, interpolated linearly between the last poll
    below it and the first at or above it; None if no poll got there."""
    before: Sample | None = None
    for sample in samples:
        if sample.processed >= count:
            if before is None or sample.processed == before.processed:
                return sample.at
            share = (count - before.processed) / (sample.processed - before.processed)
            return before.at + share * (sample.at - before.at)
        before = sample
    return None


def steady_rate(
    samples: Sequence[Sample], total: int, low: float = 0.1, high: float = 0.9
) -> float | None:
    """Slices/s between the moments `low` and `high` of the `total` slices were done: the pace
    once work flows, without the first photo's way in (upload, planning, dispatch) and the last
    one's way out (merge, storing the result). None when the polls saw too little of it."""
    if not 0 <= low < high <= 1:
        raise ValueError(f"0 <= low < high <= 1, not {low}, {high}")
    start, end = crossing(samples, low * total), crossing(samples, high * total)
    if start is None or end is None or end <= start:
        return None
    return (high - low) * total / (end - start)
