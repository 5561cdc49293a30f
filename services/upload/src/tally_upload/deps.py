"""What handlers get: the service's connections in one frozen bundle, and the caller's tenant."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from redis.asyncio import Redis

from tally_bus import Bus
from tally_db import OutboxRelay, Store
from tally_storage import ObjectStore
from tally_upload._budget import PixelBudget
from tally_upload.config import Settings
from tally_web import CallerCache, RateLimiter
from tally_web.limits import Limits


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    store: Store
    objects: ObjectStore
    bus: Bus
    relay: OutboxRelay
    budget: PixelBudget  # the pixels this process's decodes may hold at once
    redis: Redis  # the rate limits' buckets only
    callers: CallerCache
    limiter: RateLimiter
    # Every tenant's limits by default (TALLY_LIMIT_*, read once at start); a tenant's own
    # values go over them (`limits.for_tenant`).
    limits: Limits

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Deps]:
        """The service's connections as `settings` say (closed when the block ends), the outbox
        relay over them (the caller runs it), the API key cache and the rate limiter."""
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        try:
            async with (
                Store.open(settings.database_url.get_secret_value()) as store,
                ObjectStore.open(settings.s3, create_bucket=True) as objects,
                await settings.connect_bus() as bus,
            ):
                relay = OutboxRelay(store, bus.publish_encoded, settings.relay_interval_s)
                callers = CallerCache(store, settings.api_key_cache_s)
                budget = PixelBudget(settings.decode_pixel_budget)
                limits = Limits()
                limiter = RateLimiter(redis, limits)
                yield cls(
                    settings, store, objects, bus, relay, budget, redis, callers, limiter, limits
                )
        finally:
            await redis.aclose()


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]
