"""Fair dispatch: planned chunks wait in PostgreSQL and go to the detectors a few at a time.

The detectors' queue holds little more than what the detectors consuming it can start next
(`dispatch_per_detector` chunks each), so a tenant that uploads 3 photos behind another's
10,000 waits for a handful of chunks, not for the backlog: tenants take turns chunk by chunk,
each within its in-flight limit (`tenant_max_in_flight`, or its entry in `tenant_limits`).
The dispatch commits the chunks to the outbox, so a crash loses or repeats nothing; replicas
share the work through an advisory lock (one dispatches at a time).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import Counter, Gauge

from tally_bus import Bus
from tally_db import OutboxRelay
from tally_orchestrator._records import Records
from tally_orchestrator._turns import DispatchLimits
from tally_orchestrator.config import Settings

log = logging.getLogger(__name__)

WINDOW = Gauge("tally_dispatch_window", "Chunks allowed out with the detectors at once")
DISPATCHED = Counter("tally_chunks_dispatched", "Chunks sent to the detectors")


def limits_for(settings: Settings, detectors: int) -> DispatchLimits:
    """The limits while `detectors` consume the detectors' queue."""
    window = max(settings.dispatch_min, detectors * settings.dispatch_per_detector)
    return DispatchLimits(window, settings.tenant_max_in_flight, settings.tenant_limits)


class Dispatcher:
    def __init__(self, settings: Settings, records: Records, bus: Bus, relay: OutboxRelay) -> None:
        self._settings = settings
        self._records = records
        self._bus = bus
        self._relay = relay
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Chunks were planned or a slot came free: dispatch now, not at the next interval."""
        self._wake.set()

    async def limits(self) -> DispatchLimits:
        """The window grows and shrinks with the detectors consuming the queue."""
        state = await self._bus.queue_state(self._bus.topology.chunks_queue)
        limits = limits_for(self._settings, state.consumers)
        WINDOW.set(limits.window)
        return limits

    async def dispatch(self) -> int:
        """One round: send what the limits allow now; return how many chunks went."""
        sent = await self._records.dispatch(await self.limits())
        if sent:
            DISPATCHED.inc(len(sent))
            self._relay.notify()
        return len(sent)

    async def run(self) -> None:
        """Dispatch on every notify and at least every `dispatch_interval_s`, until cancelled."""
        while True:
            self._wake.clear()
            try:
                await self.dispatch()
            except Exception as exc:  # the broker or the database is away: next time
                log.warning("dispatch failed: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._settings.dispatch_interval_s)
