"""Fixtures and hooks for every test in the repository."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator

import pytest

# A callback that holds the event loop longer than this, while a test body runs, fails the test:
# blocking work belongs in a worker thread (STYLE.md). Generous, so that a loaded CI machine does
# not cry wolf. Fixture set-up is exempt: opening clients (botocore loads its JSON models
# synchronously) is start-up cost, not the code under test.
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
async def _debug_event_loop() -> None:
    """Async tests run on a loop in debug mode, which reports slow callbacks."""
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW_CALLBACK_S


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    handler = _SlowCallbacks()
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    if handler.messages:
        pytest.fail("the event loop was blocked:\n" + "\n".join(handler.messages))
