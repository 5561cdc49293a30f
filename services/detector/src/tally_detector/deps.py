"""The detector's connections, bundled for handlers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field

import numpy as np
from cachetools import LRUCache
from numpy.typing import NDArray
from redis.asyncio import Redis

from tally_bus import Publisher
from tally_contracts.v1 import ModelRef
from tally_detector.config import Settings
from tally_inference import InferenceError, InferenceModel, TritonModel, layout_of
from tally_storage import ObjectStore

MODEL_WAIT_POLL_S = 0.5

Photo = NDArray[np.uint8]


class PhotoCache:
    """The last few decoded photos (object key → pixels), the least recently used leaving
    first: chunks of one photo often land on the same detector, and two at a time (it takes
    TALLY_PREFETCH chunks): a chunk whose photo is being decoded waits for that decode rather
    than decoding it again (it did, for about one chunk in three of `make bench-pipeline`)."""

    def __init__(self, capacity: int = 2) -> None:
        self._done: LRUCache[str, Photo] = LRUCache(maxsize=capacity)
        self._loading: dict[str, asyncio.Task[Photo]] = {}

    async def get(self, key: str, load: Callable[[], Coroutine[None, None, Photo]]) -> Photo:
        """The photo under `key`, by `load()` when neither cached nor being loaded. A load that
        fails fails every chunk waiting for it and is not kept; a waiter cancelled leaves the
        load running for the others."""
        done = self._done.get(key)
        if done is not None:
            return done
        task = self._loading.get(key)
        if task is None:
            task = asyncio.create_task(load())
            self._loading[key] = task
            task.add_done_callback(functools.partial(self._loaded, key))
        return await asyncio.shield(task)

    def _loaded(self, key: str, task: asyncio.Task[Photo]) -> None:
        del self._loading[key]
        if not task.cancelled() and task.exception() is None:
            self._done[key] = task.result()


@dataclass(frozen=True, slots=True)
class Deps:
    settings: Settings
    bus: Publisher
    objects: ObjectStore
    model: InferenceModel  # the built-in default's
    photos: PhotoCache
    redis: Redis
    # The registry's other models this detector has sent to, by their Triton name.
    served: dict[str, TritonModel] = field(default_factory=dict)

    async def model_for(self, ref: ModelRef) -> InferenceModel:
        """The model a chunk names (no name: the default), once Triton serves it (after a
        Triton start, `tally-models` loads the models in use again): a chunk waits for that
        instead of failing an attempt, and goes back to the queue (InferenceError) when it is
        not served within `model_wait_s`."""
        if not ref.triton_name:
            if isinstance(self.model, TritonModel):
                await self._served_within(self.model, ref)
            return self.model
        served = self.served.get(ref.triton_name)
        if served is None:
            if not isinstance(self.model, TritonModel):
                raise InferenceError(f"this detector serves the default model only, not {ref.name}")
            served = TritonModel(
                self.model.url,
                ref.triton_name,
                timeout_s=self.model.timeout_s,
                shared_memory=self.model.shared_memory,
                model_format=layout_of(ref.format).format,
                input_name=ref.input_name,
                output_name=ref.output_name,
            )
            self.served[ref.triton_name] = served
        await self._served_within(served, ref)
        return served

    async def _served_within(self, model: TritonModel, ref: ModelRef) -> None:
        """Return once Triton serves `model` (a restarted Triton: once it is back and
        tally-models has loaded it); InferenceError after `model_wait_s`."""
        deadline = time.monotonic() + self.settings.model_wait_s
        while not await model.ready():
            if time.monotonic() >= deadline:
                name = f"{ref.name}:{ref.version}" if ref.triton_name else "the default model"
                raise InferenceError(
                    f"Triton does not serve {name} ({model.model_name}) after "
                    f"{self.settings.model_wait_s:.0f} s"
                )
            await asyncio.sleep(MODEL_WAIT_POLL_S)

    async def close_served(self) -> None:
        for served in self.served.values():
            await served.close()
        self.served.clear()

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
            deps = cls(settings, bus, objects, model, PhotoCache(), redis)
            try:
                yield deps
            finally:
                await deps.close_served()
