"""The orchestrator's connections, bundled for handlers, and the one place they are opened."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from tally_bus import Bus
from tally_db import OutboxRelay, Store
from tally_orchestrator._records import Records
from tally_orchestrator._waits import Waits
from tally_orchestrator.config import Settings
from tally_orchestrator.dispatch import Dispatcher
from tally_storage import ObjectStore


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: Store
    records: Records
    bus: Bus
    relay: OutboxRelay
    objects: ObjectStore
    dispatcher: Dispatcher
    waits: Waits

    @classmethod
    def build(cls, settings: Settings, store: Store, bus: Bus, objects: ObjectStore) -> Deps:
        """The bundle over open connections: the outbox relay, the records, the dispatcher and
        the wait model on top of them (tests that bring their own bus or store build it here
        too)."""
        relay = OutboxRelay(store, bus.publish_encoded, settings.relay_interval_s)
        records = Records(store, bus.topology)
        dispatcher = Dispatcher(settings, records, bus, relay)
        waits = Waits(settings, records, bus)
        return cls(settings, store, records, bus, relay, objects, dispatcher, waits)

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Deps]:
        """The service's connections as `settings` say (closed when the block ends), built."""
        async with (
            Store.open(settings.database_url.get_secret_value()) as store,
            ObjectStore.open(settings.s3, create_bucket=True) as objects,
            await settings.connect_bus() as bus,
        ):
            yield cls.build(settings, store, bus, objects)
