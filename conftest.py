"""Fixtures and hooks for every test in the repository."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
import uuid
from collections.abc import Generator, Iterator

import asyncpg
import pytest

from tally_stack.local_s3 import MotoS3Server

# A callback that holds the event loop longer than this, while a test body runs, fails the test:
# blocking work belongs in a worker thread (STYLE.md). Generous, because it measures wall time:
# on 2 cores shared with Triton and the services, a descheduled callback of a few ms once took
# 0.54 s. Real offenders (decoding a 12 MP photo, merging hundreds of boxes, opening a botocore
# client) take that long even unloaded, times the load. Fixture set-up is exempt: opening
# clients is start-up cost, not the code under test.
SLOW_CALLBACK_S = 1.0


class _SlowCallbacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing") and " took " in message:
            self.messages.append(message)


@pytest.fixture(scope="module", autouse=True)
def _collected_and_frozen() -> None:
    """Before each module: garbage collected, and what survives moved out of the collector's
    sight (gc.freeze). A full collection in a test then visits only what was made since its
    module began, not everything the whole run has kept alive: with 1,000 tests in one process
    it had grown to 1 s, long enough to fail the event-loop check below in whichever test it
    happened to fall (CI: three tests, 200,000 objects collected in 1.0-1.2 s)."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _debug_event_loop(request: pytest.FixtureRequest) -> None:
    """Async tests run on a loop in debug mode, which reports slow callbacks. (Only async ones:
    a synchronous test may drive Playwright, whose own loop must not meet pytest-asyncio's.)"""
    if inspect.iscoroutinefunction(getattr(request.node, "obj", None)):
        request.getfixturevalue("_loop_in_debug_mode")


@pytest.fixture
async def _loop_in_debug_mode() -> None:
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


# Real servers shared by the tests of every package: PostgreSQL and RabbitMQ from the machine
# (`make servers`), moto's S3 server started here.

AMQP_URL = os.environ.get("TALLY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
PG_ADMIN_DSN = os.environ.get("TALLY_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def amqp_url() -> str:
    return AMQP_URL


@pytest.fixture
def database() -> Iterator[str]:
    """The DSN of a fresh, empty PostgreSQL database for one test, dropped afterwards."""
    with fresh_database() as dsn:
        yield dsn


@pytest.fixture(scope="module")
def module_database() -> Iterator[str]:
    """The same, shared by the tests of one module (those that share a running stack)."""
    with fresh_database() as dsn:
        yield dsn


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    name = f"tally_test_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        connection = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server, over HTTP on a free loopback port."""
    with MotoS3Server() as server:
        yield server.endpoint_url
