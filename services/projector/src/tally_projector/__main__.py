"""`tally-projector`: fold job events into Redis until SIGTERM, then finish those in hand.

At start it rebuilds the projection from PostgreSQL (idempotent: newer state wins), so a Redis
that lost its data is whole again; `tally-projector rebuild` (make rebuild-projection) does only
that, on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import sys

from tally_projector.config import Settings
from tally_projector.deps import Deps
from tally_projector.handlers import handle_job_event, handle_session_wait
from tally_projector.rebuild import rebuild
from tally_worker import run_worker, set_readiness

log = logging.getLogger("tally_projector")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    async with Deps.open(settings) as deps, await settings.connect_bus() as bus:
        rebuilt = await rebuild(deps.store, deps.projection)
        log.info("projection rebuilt from PostgreSQL: %d recent jobs", rebuilt)

        async def readiness() -> dict[str, bool]:
            return {
                "bus": bus.is_connected,
                "redis": bool(await deps.projection.redis.ping()),
                "database": await deps.store.ping(),
            }

        set_readiness(readiness)
        consumers = [
            await bus.consume(
                bus.topology.events_queue,
                functools.partial(handle_job_event, deps=deps),
                prefetch=settings.prefetch,
            ),
            await bus.consume(
                bus.topology.waits_queue,
                functools.partial(handle_session_wait, deps=deps),
                prefetch=settings.prefetch,
            ),
        ]
        log.info("projector ready")
        await stop.wait()
        with contextlib.suppress(TimeoutError):
            await asyncio.gather(*(c.stop(settings.shutdown_grace_s) for c in consumers))


async def rebuild_only(settings: Settings) -> None:
    async with Deps.open(settings) as deps:
        print(f"rebuilt the projection of {await rebuild(deps.store, deps.projection)} jobs")


def main() -> None:
    settings = Settings()
    if sys.argv[1:] == ["rebuild"]:
        asyncio.run(rebuild_only(settings))
        return
    run_worker("tally-projector", functools.partial(run, settings))


if __name__ == "__main__":
    main()
