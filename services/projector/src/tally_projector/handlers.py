"""Message handlers: plain async functions of a decoded message and the service's Deps."""

from __future__ import annotations

from dataclasses import dataclass

from tally_contracts.v1 import JobEvent
from tally_projector.projection import Projection


@dataclass(frozen=True, slots=True)
class Deps:
    projection: Projection


async def handle_job_event(event: JobEvent, deps: Deps) -> None:
    """Fold the event into Redis. Redelivery is harmless: the fold is idempotent."""
    await deps.projection.fold(event)
