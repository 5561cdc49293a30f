"""Waiting in tests: ask again until the answer is yes, or fail saying what the last answer was.

Tests wait for what they can observe (a row's status, a metric, a queue) with `eventually`, or
`eventually_async` in async code, never with a sleep that guesses how long it takes. Sleeps stay
only where time itself is the scenario (pacing a fault, a window in which nothing may happen).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")
LAST_SHOWN = 4000  # characters of the last answer a failure shows


def eventually(
    check: Callable[[], T],
    timeout_s: float = 10,
    *,
    every_s: float = 0.1,
    until: Callable[[T], object] = bool,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str = "",
) -> T:
    """Call `check` until its answer is true (or `until(answer)` is), and return the answer. An
    exception of a type in `ignoring` counts as "not yet". After `timeout_s` the test fails with
    `what` (the check's name by default) and the last answer or exception, so a check that
    returns what it saw (a job list, a metrics page) explains its own failure."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except ignoring as exc:
            last: object = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(check, what, timeout_s, last))
        time.sleep(every_s)


@overload
async def eventually_async(
    check: Callable[[], Awaitable[T]],
    timeout_s: float = ...,
    *,
    every_s: float = ...,
    until: Callable[[T], object] = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually_async(
    check: Callable[[], T],
    timeout_s: float = ...,
    *,
    every_s: float = ...,
    until: Callable[[T], object] = ...,
    ignoring: tuple[type[BaseException], ...] = ...,
    what: str = ...,
) -> T: ...


async def eventually_async(
    check: Callable[[], Awaitable[T] | T],
    timeout_s: float = 10,
    *,
    every_s: float = 0.1,
    until: Callable[[T], object] = bool,
    ignoring: tuple[type[BaseException], ...] = (),
    what: str = "",
) -> T:
    """`eventually` for async tests: `check` may be a coroutine function or a plain one, and the
    waits between calls leave the event loop free."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answer = check()
            value = await answer if inspect.isawaitable(answer) else answer
        except ignoring as exc:
            last: object = exc
        else:
            if until(value):
                return value
            last = value
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(check, what, timeout_s, last))
        await asyncio.sleep(every_s)


def _failure(check: Callable[[], object], what: str, timeout_s: float, last: object) -> str:
    name = what or getattr(check, "__name__", repr(check))
    shown = repr(last)
    if len(shown) > LAST_SHOWN:  # a whole session's jobs, a metrics page: the start tells
        shown = shown[:LAST_SHOWN] + f"… ({len(shown)} characters)"
    return f"{name}: still not true after {timeout_s:g} s; last: {shown}"
