"""Every open session's ETA, from the wait model (`_wait`), sent to the projection.

Every `eta_interval_s`, and at once when the world changes (a photo planned, a job cancelled
or failed: a tenant arriving or leaving), the orchestrator reads what the model needs: the
slices done so far (the detectors' capacity, over a recent window of work) and when the newest
photo arrived (time with arrivals is measured apart), the detectors consuming the queue (fair
dispatch's window), and every open job of every tenant in upload order. It estimates each open
job's wait and each session's, and publishes one SessionWait per open session; the projector
folds it into the session and its jobs, so polling and SSE give the same answer. A detector
added or lost shows at the next read (within `eta_interval_s`).

Every replica does the same from the same records, so any of them may stop. What a SessionWait
says is a moment's estimate: a lost one is replaced by the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp

from tally_bus import Bus
from tally_contracts.v1 import JobRef, SessionWait
from tally_orchestrator._records import OpenJobRow, Records
from tally_orchestrator._wait import (
    Arrivals,
    Capacity,
    Estimate,
    FixedCost,
    NoEstimate,
    OpenJob,
    RateWindow,
    TenantWork,
    estimate_jobs,
    in_hand,
    session_wait,
)
from tally_orchestrator.config import Settings
from tally_orchestrator.dispatch import limits_for

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class World:
    """What one read found: the slices done so far, the detectors, every open job, the chunks
    out with the detectors (the earliest sent first) and when the newest photo arrived."""

    slices_done: int
    detectors: int
    jobs: Sequence[OpenJobRow]
    chunks_out: Sequence[tuple[uuid.UUID, int]] = ()
    newest_upload: datetime | None = None


def _wait(estimate: Estimate | NoEstimate) -> SessionWait.Wait:
    if isinstance(estimate, NoEstimate):
        return SessionWait.Wait(reason=estimate.reason)
    return SessionWait.Wait(seconds=estimate.seconds, low=estimate.low, high=estimate.high)


def session_waits(
    world: World,
    settings: Settings,
    capacity: Capacity | None,
    fixed_cost_s: float,
    at: datetime,
) -> list[SessionWait]:
    """The SessionWait of every session with open jobs, as the model estimates it. Pure."""
    limits = limits_for(settings, world.detectors)
    # The chunks out, with the slices each has left: the detectors are working on some.
    out = in_hand([(str(job_id), slices) for job_id, slices in world.chunks_out], world.detectors)
    worked: dict[str, float] = defaultdict(float)
    for (chunk_job, slices), (_, expected) in zip(world.chunks_out, out, strict=True):
        worked[str(chunk_job)] += slices - expected
    tenants: dict[uuid.UUID, list[OpenJob]] = defaultdict(list)
    sessions: dict[tuple[uuid.UUID, uuid.UUID], list[str]] = defaultdict(list)
    for row in world.jobs:
        job_id = str(row.job_id)
        left = max(row.slices_left - worked.get(job_id, 0.0), 0.0)
        tenants[row.tenant_id].append(OpenJob(job_id, left, row.planned))
        sessions[(row.tenant_id, row.session_id)].append(job_id)
    waits = estimate_jobs(
        {t: TenantWork(jobs, limits.of(t)) for t, jobs in tenants.items()},
        window=limits.window,
        capacity=capacity,
        detectors=world.detectors,
        fixed_cost_s=fixed_cost_s,
        chunk_slices=settings.chunk_slices,
        out=out,
    )
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return [
        SessionWait(
            session=JobRef(tenant_id=str(tenant_id), session_id=str(session_id)),
            estimated_at=stamp,
            wait=_wait(session_wait([waits[j] for j in job_ids])),
            jobs=[SessionWait.JobWait(job_id=j, wait=_wait(waits[j])) for j in job_ids],
        )
        for (tenant_id, session_id), job_ids in sessions.items()
    ]


class Waits:
    """The orchestrator's estimator: measures, estimates and publishes, until cancelled."""

    def __init__(self, settings: Settings, records: Records, bus: Bus) -> None:
        self._settings = settings
        self._records = records
        self._bus = bus
        self.window = RateWindow(settings.eta_window_s)
        self.fixed_cost = FixedCost()
        self.arrivals = Arrivals()
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """The world changed (a photo planned, a job ended early): estimate now."""
        self._wake.set()

    def planned(self, uploaded_at: datetime) -> None:
        """A photo was planned: what it waited since its upload is a fixed cost measured."""
        self.fixed_cost.observe((datetime.now(UTC) - uploaded_at).total_seconds())

    async def read(self) -> World:
        backlog = await self._records.backlog()
        state = await self._bus.queue_state(self._bus.topology.chunks_queue)
        jobs = await self._records.open_jobs()
        out = await self._records.sent_chunks()
        return World(backlog.slices_done, state.consumers, jobs, out, backlog.newest_upload)

    async def publish(self) -> list[SessionWait]:
        """One round: read, measure, estimate and send every open session's wait."""
        world = await self.read()
        arrived = self.arrivals.seen(world.newest_upload)  # since the last read
        # The capacity is what the detectors do when each has a chunk: with fewer out, some
        # are idle (a session's last chunks), which the model plays out itself.
        busy = 0 < world.detectors <= len(world.chunks_out)
        self.window.add(
            time.monotonic(),
            world.slices_done,
            detectors=world.detectors,
            busy=busy,
            arrived=arrived,
        )
        waits = session_waits(
            world,
            self._settings,
            self.window.capacity(),
            self.fixed_cost.seconds,
            datetime.now(UTC),
        )
        for wait in waits:
            await self._bus.publish(self._bus.topology.session_wait, wait)
        return waits

    async def run(self) -> None:
        """Publish every `eta_interval_s` and on every notify (at most every
        `eta_min_interval_s`), until cancelled."""
        s = self._settings
        while True:
            self._wake.clear()
            try:
                await self.publish()
            except Exception as exc:  # the broker or the database is away: next time
                log.warning("waits not estimated: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), s.eta_interval_s)
            await asyncio.sleep(s.eta_min_interval_s)
