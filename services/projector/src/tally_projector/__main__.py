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

from redis.asyncio import Redis

from tally_db import Store
from tally_projector.config import Settings
from tally_projector.handlers import Deps, handle_job_event
from tally_projector.projection import Projection
from tally_projector.rebuild import rebuild
from tally_worker import run_worker, set_readiness

log = logging.getLogger("tally_projector")


async def run(settings: Settings, stop: asyncio.Event) -> None:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        async with (
            Store.open(settings.database_url.get_secret_value()) as store,
            await settings.connect_bus() as bus,
        ):
            rebuilt = await rebuild(store, Projection(redis))
            log.info("projection rebuilt from PostgreSQL: %d recent jobs", rebuilt)
            deps = Deps(Projection(redis), store)

            async def readiness() -> dict[str, bool]:
                return {
                    "bus": bus.is_connected,
                    "redis": bool(await redis.ping()),
                    "database": await store.ping(),
                }

            set_readiness(readiness)
            consumer = await bus.consume(
                bus.topology.events_queue,
                functools.partial(handle_job_event, deps=deps),
                prefetch=settings.prefetch,
            )
            log.info("projector ready")
            await stop.wait()
            with contextlib.suppress(TimeoutError):
                await consumer.stop(settings.shutdown_grace_s)
    finally:
        await redis.aclose()


async def rebuild_only(settings: Settings) -> None:
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        async with Store.open(settings.database_url.get_secret_value()) as store:
            print(f"rebuilt the projection of {await rebuild(store, Projection(redis))} jobs")
    finally:
        await redis.aclose()


def main() -> None:
    settings = Settings()
    if sys.argv[1:] == ["rebuild"]:
        asyncio.run(rebuild_only(settings))
        return
    run_worker("tally-projector", functools.partial(run, settings))


if __name__ == "__main__":
    main()
