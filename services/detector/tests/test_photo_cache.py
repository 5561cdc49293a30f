from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine

import numpy as np
import pytest
from numpy.typing import NDArray

from tally_detector.deps import PhotoCache


class Loads:
    """Loads photos on demand, counting them; `gate` holds every load until it is set."""

    def __init__(self) -> None:
        self.count = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = False

    def of(self, value: int) -> Callable[[], Coroutine[None, None, NDArray[np.uint8]]]:
        async def load() -> NDArray[np.uint8]:
            self.count += 1
            await self.gate.wait()
            if self.fail:
                raise ValueError("unreadable")
            return np.full((2, 2, 3), value, np.uint8)

        return load


async def test_the_cache_keeps_the_most_recently_used_photos() -> None:
    cache, loads = PhotoCache(capacity=2), Loads()
    a = await cache.get("a", loads.of(1))
    await cache.get("b", loads.of(2))
    assert await cache.get("a", loads.of(9)) is a  # cached: a is now the most recent
    await cache.get("c", loads.of(3))
    assert loads.count == 3
    assert int((await cache.get("b", loads.of(4)))[0, 0, 0]) == 4  # b had left: loaded again
    assert loads.count == 4


async def test_chunks_of_a_photo_being_loaded_wait_for_that_load() -> None:
    cache, loads = PhotoCache(), Loads()
    loads.gate.clear()
    first = asyncio.create_task(cache.get("a", loads.of(1)))
    second = asyncio.create_task(cache.get("a", loads.of(2)))
    await asyncio.sleep(0)
    loads.gate.set()
    assert (await first) is (await second)
    assert loads.count == 1


async def test_a_failed_load_fails_its_waiters_and_is_not_kept() -> None:
    cache, loads = PhotoCache(), Loads()
    loads.gate.clear()
    loads.fail = True
    waiters = [asyncio.create_task(cache.get("a", loads.of(1))) for _ in range(2)]
    await asyncio.sleep(0)
    loads.gate.set()
    for waiter in waiters:
        with pytest.raises(ValueError, match="unreadable"):
            await waiter
    loads.fail = False
    assert int((await cache.get("a", loads.of(5)))[0, 0, 0]) == 5
    assert loads.count == 2


async def test_a_cancelled_waiter_leaves_the_load_to_the_others() -> None:
    cache, loads = PhotoCache(), Loads()
    loads.gate.clear()
    cancelled = asyncio.create_task(cache.get("a", loads.of(1)))
    other = asyncio.create_task(cache.get("a", loads.of(2)))
    await asyncio.sleep(0)
    cancelled.cancel()
    loads.gate.set()
    assert int((await other)[0, 0, 0]) == 1
    assert cancelled.cancelled()
    assert loads.count == 1
