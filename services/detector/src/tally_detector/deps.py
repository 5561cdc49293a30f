"""The detector's connections, bundled for handlers."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from redis.asyncio import Redis

from tally_bus import Publisher
from tally_detector.config import Settings
from tally_inference import InferenceModel
from tally_storage import ObjectStore


@dataclass(slots=True)
class PhotoCache:
    """The last few decoded photos: chunks of one photo often land on the same detector."""

    capacity: int = 2
    _photos: OrderedDict[str, NDArray[np.uint8]] = field(default_factory=OrderedDict)

    def get(self, key: str) -> NDArray[np.uint8] | None:
        photo = self._photos.get(key)
        if photo is not None:
            self._photos.move_to_end(key)
        return photo

    def put(self, key: str, photo: NDArray[np.uint8]) -> None:
        self._photos[key] = photo
        self._photos.move_to_end(key)
        while len(self._photos) > self.capacity:
            self._photos.popitem(last=False)


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    bus: Publisher
    objects: ObjectStore
    model: InferenceModel
    photos: PhotoCache
    redis: Redis


@contextlib.asynccontextmanager
async def open_deps(
    settings: Settings, bus: Publisher, model: InferenceModel
) -> AsyncIterator[Deps]:
    """The detector's Deps: Redis (the cancel marks) and the object store opened from
    `settings`, around the bus and the model the caller has opened (it consumes with the one
    and asks the other whether it is ready)."""
    async with (
        Redis.from_url(settings.redis_url.get_secret_value()) as redis,
        ObjectStore.open(settings.s3) as objects,
    ):
        yield Deps(settings, bus, objects, model, PhotoCache(), redis)
