"""Fixtures shared by the integration tests of one package's parts."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from tally_projector.projection import Projection


@pytest.fixture
async def projection() -> AsyncIterator[Projection]:
    """A projection, ready, on a Redis database of its own (emptied before and after)."""
    redis = Redis.from_url(os.environ.get("TALLY_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"))
    await redis.flushdb()
    projection = Projection(redis)
    await projection.mark_ready()
    try:
        yield projection
    finally:
        await redis.flushdb()
        await redis.aclose()
