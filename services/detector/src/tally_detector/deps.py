"""The detector's connections, bundled for handlers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import numpy as np
from cachetools import LRUCache
from numpy.typing import NDArray
from redis.asyncio import Redis

from tally_bus import Publisher
from tally_detector.config import Settings
from tally_inference import InferenceModel
from tally_storage import ObjectStore


class PhotoCache(LRUCache[str, NDArray[np.uint8]]):
    """The last few decoded photos (object key → pixels), the least recently used leaving
    first: chunks of one photo often land on the same detector."""

    def __init__(self, capacity: int = 2) -> None:
        super().__init__(maxsize=capacity)


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    bus: Publisher
    objects: ObjectStore
    model: InferenceModel
    photos: PhotoCache
    redis: Redis

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, settings: Settings, bus: Publisher, model: InferenceModel
    ) -> AsyncIterator[Deps]:
        """The detector's Deps: Redis (the cancel marks) and the object store opened from
        `settings`, around the bus and the model the caller has opened (it consumes with the
        one and asks the other whether it is ready)."""
        async with (
            Redis.from_url(settings.redis_url.get_secret_value()) as redis,
            ObjectStore.open(settings.s3) as objects,
        ):
            yield cls(settings, bus, objects, model, PhotoCache(), redis)
