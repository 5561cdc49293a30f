"""The decode budget: how many pixels this process may be decoding at once.

A 100 KB PNG can hold 100 MP; decoding a few of those together is gigabytes. Each decode holds
its photo's pixels of the budget while it runs, and waits, first come first served, for room."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ctypes.util
from collections.abc import AsyncIterator, Callable


class BudgetBusyError(Exception):
    """No room in the budget came within the wait."""


class PixelBudget:
    """A weighted semaphore on the event loop (decodes are started from it, and waiting must
    not hold a thread): `hold(n)` takes n pixels of `total` for its block."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.in_use = 0
        self._room = asyncio.Condition()
        # Waiters in arrival order: only the first may take room, so a large photo is not
        # overtaken forever by small ones that keep fitting in what is left.
        self._queue: collections.deque[object] = collections.deque()

    @contextlib.asynccontextmanager
    async def hold(self, pixels: int, wait_s: float) -> AsyncIterator[None]:
        """Hold `pixels` of the budget for the block, waiting up to `wait_s` for room; raises
        BudgetBusyError past that. A photo larger than the whole budget holds all of it (the pixel
        limit refuses those before, unless it is set above the budget)."""
        weight = min(pixels, self.total)
        turn = object()
        async with self._room:
            self._queue.append(turn)
            try:
                async with asyncio.timeout(wait_s):
                    await self._room.wait_for(
                        lambda: self._queue[0] is turn and self.in_use + weight <= self.total
                    )
            except TimeoutError:
                raise BudgetBusyError from None
            finally:
                self._queue.remove(turn)
                # The next in line may fit now (we took less than all), or was behind us.
                self._room.notify_all()
            self.in_use += weight
        try:
            yield
        finally:
            async with self._room:
                self.in_use -= weight
                self._room.notify_all()


def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's malloc_trim, where the C library is glibc (musl and macOS have none)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    trim: Callable[[int], int] | None = getattr(ctypes.CDLL(name), "malloc_trim", None)
    return trim


_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Give memory that was freed back to the system. A decode frees its pixels, but glibc keeps
    what each worker thread's arena freed, for reuse: measured with 8 parallel 100 MP photos,
    the service kept +96 MiB after them without this and nothing with it, and its peak was one
    decode over its base instead of two (the next decode, in another thread's arena, could not
    reuse the last one's memory). Blocking (a few ms): call it from a worker thread."""
    if _TRIM is not None:
        _TRIM(0)
