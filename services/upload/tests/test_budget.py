"""The decode budget: decodes hold their pixels of it, wait their turn for room, and give up as
busy when none comes in time."""

from __future__ import annotations

import asyncio
import platform

import pytest
from tests.eventually import eventually_async

from tally_upload import _budget
from tally_upload._budget import BudgetBusyError, PixelBudget, release_freed_memory

FOREVER = 60.0  # a wait that never runs out while a test lasts


async def _waiting(budget: PixelBudget, count: int) -> None:
    """Until `count` holders wait in the queue."""
    await eventually_async(lambda: len(budget._queue) >= count, every_s=0)


async def test_holders_share_the_budget_and_give_it_back() -> None:
    budget = PixelBudget(100)
    async with budget.hold(60, FOREVER), budget.hold(40, FOREVER):
        assert budget.in_use == 100
    assert budget.in_use == 0


async def test_a_decode_waits_for_room_and_takes_it_once_freed() -> None:
    budget = PixelBudget(100)
    order: list[str] = []
    release = asyncio.Event()

    async def first() -> None:
        async with budget.hold(70, FOREVER):
            order.append("first")
            await release.wait()
        order.append("first done")

    async def second() -> None:
        async with budget.hold(70, FOREVER):
            order.append("second")

    holder = asyncio.create_task(first())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(second())
    await _waiting(budget, 1)
    assert order == ["first"]
    assert budget.in_use == 70
    release.set()
    await asyncio.gather(holder, waiter)
    assert order == ["first", "first done", "second"]


async def test_no_room_within_the_wait_is_busy_and_leaves_nothing_held() -> None:
    budget = PixelBudget(100)
    async with budget.hold(100, FOREVER):
        with pytest.raises(BudgetBusyError):
            async with budget.hold(1, 0.01):
                pass
        assert budget.in_use == 100
        assert not budget._queue
    assert budget.in_use == 0


async def test_a_large_photo_is_not_overtaken_by_small_ones_that_fit() -> None:
    budget = PixelBudget(100)
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str, pixels: int) -> None:
        async with budget.hold(pixels, FOREVER):
            order.append(name)
            if name == "first":
                await release.wait()

    first = asyncio.create_task(hold("first", 50))
    await asyncio.sleep(0)
    large = asyncio.create_task(hold("large", 100))
    await _waiting(budget, 1)
    small = asyncio.create_task(hold("small", 10))  # would fit beside "first", but comes later
    await _waiting(budget, 2)
    assert order == ["first"]
    release.set()
    await asyncio.gather(first, large, small)
    assert order == ["first", "large", "small"]


async def test_a_photo_larger_than_the_budget_holds_all_of_it_instead_of_waiting_forever() -> None:
    budget = PixelBudget(100)
    async with budget.hold(1_000, 0.01):
        assert budget.in_use == 100


async def test_a_cancelled_waiter_leaves_the_queue_and_the_next_one_goes_on() -> None:
    budget = PixelBudget(100)
    release = asyncio.Event()

    async def hold(pixels: int) -> None:
        async with budget.hold(pixels, FOREVER):
            await release.wait()

    first = asyncio.create_task(hold(100))
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(hold(100))
    await _waiting(budget, 1)
    later = asyncio.create_task(hold(10))
    await _waiting(budget, 2)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    release.set()
    await asyncio.gather(first, later)
    assert budget.in_use == 0
    assert not budget._queue


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_freed_memory_is_given_back_on_glibc() -> None:
    assert _budget._TRIM is not None
    release_freed_memory()
