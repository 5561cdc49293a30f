"""Fixtures for every test in the repository."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import pytest

# A callback that holds the event loop longer than this fails the test: blocking work belongs in
# a worker thread (STYLE.md). Generous, so that a loaded CI machine does not cry wolf.
SLOW_CALLBACK_S = 0.5


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing") and " took " in message:
            self.messages.append(message)


@pytest.fixture(autouse=True)
def _no_blocking_on_the_event_loop(request: pytest.FixtureRequest) -> Iterator[None]:
    if not asyncio.iscoroutinefunction(getattr(request.node, "obj", None)):
        yield
        return
    handler = _SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    request.getfixturevalue("_debug_event_loop")
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.messages:
        pytest.fail("the event loop was blocked:\n" + "\n".join(handler.messages))


@pytest.fixture
async def _debug_event_loop() -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S
