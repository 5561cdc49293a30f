"""Message handlers: plain async functions of a decoded message and the service's Deps."""

from __future__ import annotations

import logging

from tally_contracts.v1 import JobEvent
from tally_projector.deps import Deps
from tally_projector.projection import ProjectionLostError
from tally_projector.rebuild import rebuild

log = logging.getLogger("tally_projector")


async def handle_job_event(event: JobEvent, deps: Deps) -> None:
    """Fold the event into Redis. Redelivery is harmless: the fold is idempotent. When Redis
    has lost the projection (wiped, restarted empty), rebuild it from PostgreSQL first: one
    rebuild at a time, the other handlers wait for it and then fold."""
    try:
        await deps.projection.fold(event)
    except ProjectionLostError:
        async with deps.rebuilding:
            if not await deps.projection.is_ready():
                log.warning("the Redis projection was lost: rebuilding it from PostgreSQL")
                jobs = await rebuild(deps.store, deps.projection)
                log.info("projection rebuilt from PostgreSQL: %d recent jobs", jobs)
        await deps.projection.fold(event)
