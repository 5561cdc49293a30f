"""An ETA as people read it: "about 4 min (3–6)", from the `eta_seconds`, `eta_range`,
`eta_reason` and `eta_at` of a job or a session summary. The CLI prints it; an SDK user may
too."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

_REASONS = {"no_detector": "waiting for a detector", "measuring": "measuring the rate"}


def seconds_left(fields: Mapping[str, Any], now: datetime | None = None) -> float | None:
    """`eta_seconds` counted down from `eta_at` (when it was estimated) to `now`."""
    eta = fields.get("eta_seconds")
    if eta is None:
        return None
    return max(float(eta) - _elapsed(fields, now), 0.0)


def eta_text(fields: Mapping[str, Any], now: datetime | None = None) -> str:
    """ "about 4 min (3–6)", "about 40 s (30–55)", "about 2.5 h (2.1–3.0)"; the reason when
    there is no estimate ("waiting for a detector"); "" when nothing is left or nothing is
    known."""
    left = seconds_left(fields, now)
    if left is None:
        reason = fields.get("eta_reason")
        return _REASONS.get(reason, str(reason)) if reason else ""
    if left <= 0:
        return ""
    span = fields.get("eta_range")
    elapsed = _elapsed(fields, now)
    low, high = (
        (max(float(span[0]) - elapsed, 0.0), max(float(span[1]) - elapsed, 0.0))
        if span
        else (None, None)
    )
    unit, size, digits = _unit(max(left, high or 0.0))
    best = f"about {_number(left / size, digits)} {unit}"
    if low is None or high is None:
        return best
    if digits == 0:
        low_text, high_text = f"{math.floor(low / size)}", f"{math.ceil(high / size)}"
    else:
        low_text, high_text = f"{low / size:.1f}", f"{high / size:.1f}"
    return best if low_text == high_text else f"{best} ({low_text}–{high_text})"


def _unit(seconds: float) -> tuple[str, float, int]:
    if seconds < 90:
        return "s", 1.0, 0
    if seconds < 90 * 60:
        return "min", 60.0, 0
    return "h", 3600.0, 1


def _number(value: float, digits: int) -> str:
    return f"{max(round(value), 1)}" if digits == 0 else f"{value:.1f}"


def _elapsed(fields: Mapping[str, Any], now: datetime | None) -> float:
    at = fields.get("eta_at")
    if not at:
        return 0.0
    when = at if isinstance(at, datetime) else datetime.fromisoformat(str(at))
    return max(((now or datetime.now(UTC)) - when).total_seconds(), 0.0)
