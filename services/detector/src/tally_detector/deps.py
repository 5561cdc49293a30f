"""The detector's connections, bundled for handlers."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from redis.asyncio import Redis

from tally_bus import Bus
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
    bus: Bus
    objects: ObjectStore
    model: InferenceModel
    photos: PhotoCache
    redis: Redis
