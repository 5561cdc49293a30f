"""The closing table: every figure with its target and PASS/MISS."""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass
from importlib.util import find_spec

from tally_bench._stats import Latencies


@dataclass(frozen=True, slots=True)
class Row:
    figure: str
    value: str
    target: str = ""
    passed: bool | None = None  # None: no target, or not measured

    @property
    def verdict(self) -> str:
        if not self.target:
            return ""
        return "n/a" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass(frozen=True, slots=True)
class Section:
    title: str
    rows: list[Row]


def ms(value: float) -> str:
    if math.isnan(value):
        return "—"
    return f"{value:.1f} ms" if value < 1000 else f"{value / 1000:.2f} s"


def latencies(lat: Latencies, *, p90: bool = True) -> str:
    parts = [f"p50 {ms(lat.p50)}"]
    if p90:
        parts.append(f"p90 {ms(lat.p90)}")
    parts += [f"p99 {ms(lat.p99)}", f"max {ms(lat.max)}"]
    return "  ".join(parts)


def machine() -> str:
    model = ""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    server = "uvloop" if find_spec("uvloop") else "asyncio"
    http = "httptools" if find_spec("httptools") else "h11"
    return (
        f"{os.cpu_count()} cores ({model or platform.machine()}), Linux {platform.release()}, "
        f"Python {platform.python_version()}; uvicorn on {server} + {http}"
    )


def render(sections: list[Section]) -> str:
    rows = [r for s in sections for r in s.rows]
    width_figure = max([len(r.figure) for r in rows] + [6])
    width_value = max([len(r.value) for r in rows] + [5])
    width_target = max([len(r.target) for r in rows] + [6])
    lines = []
    header = f"  {'figure':<{width_figure}}  {'value':<{width_value}}  {'target':<{width_target}}"
    for section in sections:
        lines += ["", section.title, header + "  verdict"]
        for r in section.rows:
            lines.append(
                f"  {r.figure:<{width_figure}}  {r.value:<{width_value}}  "
                f"{r.target:<{width_target}}  {r.verdict}".rstrip()
            )
    return "\n".join(lines)
