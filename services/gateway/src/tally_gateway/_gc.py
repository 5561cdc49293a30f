"""The garbage collector's pauses: every open stream waits while it runs, so they are measured.

With thousands of streams open a process tracks millions of objects, and a full collection
(generation 2) visits them all: hundreds of milliseconds during which no event is delivered.
`tally_gc_pause_seconds` shows each collection's length by generation, and one that stalls the
process for longer than `SLOW_S` is logged.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any, Final

from prometheus_client import Histogram

log = logging.getLogger("tally_gateway.gc")

SLOW_S: Final = 0.1
PAUSES = Histogram(
    "tally_gc_pause_seconds",
    "Garbage collections, by generation, and how long each held the process",
    ["generation"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)


class _Watch:
    def __init__(self) -> None:
        self.started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.started = time.perf_counter()
            return
        took = time.perf_counter() - self.started
        generation = int(info["generation"])
        PAUSES.labels(str(generation)).observe(took)
        if took > SLOW_S:
            log.warning(
                "garbage collection of generation %d held the process %.0f ms (%d collected)",
                generation,
                took * 1000,
                info["collected"],
            )


def watch_collections() -> None:
    """Time every collection from now on (once per process)."""
    if not any(isinstance(callback, _Watch) for callback in gc.callbacks):
        gc.callbacks.append(_Watch())
