"""The projector's connections, bundled for handlers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from redis.asyncio import Redis

from tally_db import Store
from tally_projector.config import Settings
from tally_projector.projection import Projection


@dataclass(frozen=True, slots=True)
class Deps:
    projection: Projection
    store: Store
    rebuilding: asyncio.Lock = field(default_factory=asyncio.Lock)  # one rebuild at a time

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: Settings) -> AsyncIterator[Deps]:
        """The projection in Redis and PostgreSQL (what a rebuild reads), opened from
        `settings`."""
        redis = Redis.from_url(settings.redis_url.get_secret_value())
        try:
            async with Store.open(settings.database_url.get_secret_value()) as store:
                yield cls(Projection(redis), store)
        finally:
            await redis.aclose()
