"""The outbox relay stops when cancelled, even mid-transaction (no database: a stand-in store
whose transaction fails its rollback the way asyncpg's does when cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from tally_db import OutboxEntry, OutboxRelay
from tally_db._store import OutboxClaim, PendingMessage


class CancelledMidTransaction:
    def __init__(self) -> None:
        self.empty = False  # nothing pending any more

    @contextlib.asynccontextmanager
    async def claim_pending(self, limit: int = 100) -> AsyncIterator[OutboxClaim]:
        entry = OutboxEntry("exchange", "key", "type", b"payload")
        try:
            yield OutboxClaim([] if self.empty else [PendingMessage(1, entry, datetime.now(UTC))])
        except asyncio.CancelledError:
            raise RuntimeError("cannot rollback; the transaction is in error state") from None


async def test_a_relay_cancelled_while_it_publishes_stops() -> None:
    publishing = asyncio.Event()

    async def publish(*_: object, **__: object) -> None:
        publishing.set()
        await asyncio.Event().wait()  # the broker has not confirmed yet

    store = CancelledMidTransaction()
    relay = OutboxRelay(store, publish, 0.01)  # type: ignore[arg-type]
    task = asyncio.create_task(relay.run())
    await publishing.wait()
    task.cancel()
    await asyncio.wait({task}, timeout=2)
    stopped = task.done()
    store.empty = True  # a relay that went on stops between two drains (the test ends)
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.1)
    assert stopped, "the relay went on after its cancel"
    with pytest.raises(asyncio.CancelledError):
        await task
