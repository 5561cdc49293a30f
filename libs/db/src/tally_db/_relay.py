"""The outbox relay: publishes what committed transactions wrote to the outbox, oldest first.

Several relays (one per service that writes the outbox, and replicas of those) share the table;
each claims its batch with row locks, so a message goes out once (twice only when a relay dies
between the broker's confirm and its commit). Across relays the order is not strict: consumers
do not depend on it (job events carry sequences; chunks are independent).
"""

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
        """Publish everything pending that no other relay holds; return how many went out."""
        sent = 0
        while True:
            async with self._store.claim_pending(limit=100) as claim:
                if not claim.messages:
                    return sent
                for pending in claim.messages:
                    entry = pending.entry
                    await self._publish(
                        entry.exchange,
                        entry.routing_key,
                        entry.message_type,
                        entry.payload,
                        entry.headers,
                    )
                    claim.sent.append(pending.id)
                    sent += 1

    async def run(self) -> None:
        """Drain on every notify and at least every interval, until cancelled."""
        while True:
            try:
                await self.drain()
            except Exception as exc:  # the broker or database is away: keep trying
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # Cancelled mid-transaction: the rollback's error ("the transaction is in
                    # error state") stood in for the cancel, which retrying would swallow (a
                    # shutdown then waited for a relay that never stopped).
                    raise asyncio.CancelledError from exc
                log.warning("outbox relay: %s; retrying in %.1f s", exc, self._interval_s)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval_s)
            self._wake.clear()
