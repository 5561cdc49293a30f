"""The outbox relay: publishes what committed transactions wrote to the outbox, in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Protocol

from tally_db._store import Store

log = logging.getLogger(__name__)


class Publish(Protocol):
    """How the relay sends an encoded message: the shape of `tally_bus.Bus.publish_encoded`."""

    def __call__(
        self,
        exchange: str,
        routing_key: str,
        message_type: str,
        payload: bytes,
        headers: dict[str, str] | None = None,
    ) -> Awaitable[None]: ...


class OutboxRelay:
    """Publishes pending outbox messages with `publish` (which must return only once the broker
    has confirmed), then marks them published. A crash between the two re-sends that message
    once: consumers are idempotent; nothing committed is ever lost."""

    def __init__(self, store: Store, publish: Publish, interval_s: float) -> None:
        self._store = store
        self._publish = publish
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
                await self._publish(
                    entry.exchange,
                    entry.routing_key,
                    entry.message_type,
                    entry.payload,
                    entry.headers,
                )
                await self._store.mark_published([pending.id])
                sent += 1
        return sent

    async def run(self) -> None:
        """Drain on every notify and at least every interval, until cancelled."""
        while True:
            try:
                await self.drain()
            except Exception as exc:  # the broker or database is away: keep trying
                log.warning("outbox relay: %s; retrying in %.1f s", exc, self._interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
