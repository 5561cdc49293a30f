"""The orchestrator's connections, bundled for handlers."""

from __future__ import annotations

from dataclasses import dataclass

from tally_bus import Bus
from tally_db import OutboxRelay, Store
from tally_orchestrator.config import Settings
from tally_orchestrator.dispatch import Dispatcher
from tally_storage import ObjectStore


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: Store
    bus: Bus
    relay: OutboxRelay
    objects: ObjectStore
    dispatcher: Dispatcher
