"""Message handlers: plain async functions of a decoded message and the service's Deps."""

from __future__ import annotations

import logging

from tally_contracts.v1 import JobEvent, SessionWait
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


async def handle_session_wait(message: SessionWait, deps: Deps) -> None:
    """Show the session's new wait. While the projection is being rebuilt, or when it was lost,
    the wait is dropped: the next one comes within seconds."""
    if deps.rebuilding.locked() or not await deps.projection.is_ready():
        return
    await deps.projection.wait(message)
