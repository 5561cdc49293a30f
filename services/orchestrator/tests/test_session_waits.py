"""What the orchestrator sends: every open session's wait from one read of the world (pure)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tally_orchestrator._records import OpenJobRow
from tally_orchestrator._wait import MODEL_SPREAD, Capacity, Estimate, interval
from tally_orchestrator._waits import World, session_waits
from tally_orchestrator.config import Settings

TENANT, SESSION = uuid.uuid4(), uuid.uuid4()
A0, A1 = uuid.uuid4(), uuid.uuid4()
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _seconds(estimate: Estimate) -> tuple[float, float, float]:
    return estimate.seconds, estimate.low, estimate.high


def _world(chunks_out: list[tuple[uuid.UUID, int]]) -> World:
    rows = [OpenJobRow(TENANT, SESSION, A0, 32, True), OpenJobRow(TENANT, SESSION, A1, 64, True)]
    return World(slices_done=0, detectors=2, jobs=rows, chunks_out=chunks_out)


def test_chunks_out_are_done_first_and_half_done_in_the_detectors_hands() -> None:
    settings = Settings(chunk_slices=16)
    # a0's two chunks are in the two detectors' hands (half done each: 16 of its 32 slices
    # left), a1's first waits in their queue. At 32 slices/s, in the order sent: a0's 16 take
    # 0.5 s, a1's chunk out 0.5 s more, then a1's 48 slices not sent 1.5 s more.
    (wait,) = session_waits(
        _world([(A0, 16), (A0, 16), (A1, 16)]), settings, Capacity(32.0, 0.0), 0.5, NOW
    )
    chunk_s = 16 * 2 / 32.0  # one chunk at one of the two detectors
    by_job = {j.job_id: (j.wait.seconds, j.wait.low, j.wait.high) for j in wait.jobs}
    assert by_job[str(A0)] == pytest.approx(_seconds(interval(0.5, MODEL_SPREAD, chunk_s)))
    assert by_job[str(A1)] == pytest.approx(_seconds(interval(2.5, MODEL_SPREAD, chunk_s)))
    assert (wait.wait.seconds, wait.wait.low, wait.wait.high) == by_job[str(A1)]
    assert wait.estimated_at.ToDatetime(tzinfo=UTC) == NOW


def test_nothing_out_is_the_slices_left_at_the_rate() -> None:
    (wait,) = session_waits(_world([]), Settings(chunk_slices=16), Capacity(32.0, 0.0), 0.5, NOW)
    assert {j.job_id: j.wait.seconds for j in wait.jobs} == pytest.approx(
        {str(A0): 1.0, str(A1): 3.0}
    )
