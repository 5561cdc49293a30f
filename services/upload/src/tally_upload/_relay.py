"""The outbox relay: publishes what committed transactions wrote to the outbox, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from tally_bus import Bus, BusError
from tally_db import Store

log = logging.getLogger(__name__)


class OutboxRelay:
    def __init__(self, store: Store, bus: Bus, interval_s: float) -> None:
        self._store = store
        self._bus = bus
        self._interval_s = interval_s
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Something was committed: publish now instead of at the next interval."""
        self._wake.set()

    async def drain(self) -> int:
        """Publish everything pending; return how many messages went out."""
        sent = 0
        while batch := await self._store.pending_messages(limit=100):
            for pending in batch:
                entry = pending.entry
                await self._bus.publish_encoded(
                    entry.exchange,
                    entry.routing_key,
                    entry.message_type,
                    entry.payload,
                    entry.headers,
                )
                # Marked one by one: a crash re-sends at most this message (consumers are
                # idempotent), never loses one.
                await self._store.mark_published([pending.id])
                sent += 1
        return sent

    async def run(self) -> None:
        while True:
            try:
                await self.drain()
            except (BusError, OSError) as exc:
                log.warning("outbox relay: %s; retrying in %.1f s", exc, self._interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
