"""Per-job JobEvent sequence numbers: who writes which, so the projection can order them.

upload writes `queued` (1); the orchestrator `planned` (2), then one `progress` per recorded chunk
(2 + chunks recorded); detectors write `started` (3) when they begin any chunk; the final event
(`completed`, `failed`, `cancelled`) outranks them all. Equal sequences are harmless: the fold
keeps the first state and still takes the larger slices-done.
"""

from __future__ import annotations

from typing import Final

QUEUED: Final = 1
PLANNED: Final = 2
STARTED: Final = 3
FINAL: Final = 2**62
DELETED: Final = FINAL + 1  # after everything: a deleted job stays deleted


def progress(chunks_recorded: int) -> int:
    return PLANNED + chunks_recorded
