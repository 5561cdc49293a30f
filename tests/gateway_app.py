"""The real gateway app for integration tests: its settings on the test's servers, and the app
served in-process (its lifespan run, every answer checked against its route's declared schema,
its bus topology deleted afterwards)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from pydantic import SecretStr

from tally_gateway.app import create_app
from tally_gateway.config import Settings
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tests.openapi_conformance import Conformance

REDIS_URL = "redis://127.0.0.1:6379/15"
# asgi-lifespan's default of 5 s is too short for a start-up on a loaded 2-core machine (the
# pools, the bus topology, the bucket): a CI run's upload app once took longer and failed a test.
STARTUP_TIMEOUT_S = 60.0


def started(app: FastAPI) -> LifespanManager:
    """The app's lifespan, run for the block (start-up and shutdown allowed a minute each)."""
    return LifespanManager(
        app, startup_timeout=STARTUP_TIMEOUT_S, shutdown_timeout=STARTUP_TIMEOUT_S
    )


def gateway_settings(
    database: str, s3_endpoint: str, amqp_url: str, bucket: str, **overrides: Any
) -> Settings:
    """The gateway's settings on this test's database, moto's S3, RabbitMQ (a bus prefix of
    its own) and Redis database 15."""
    return Settings(
        database_url=SecretStr(database),
        amqp_url=SecretStr(amqp_url),
        bus_prefix=f"test-{uuid.uuid4().hex[:10]}",
        redis_url=SecretStr(REDIS_URL),
        s3_endpoint_url=s3_endpoint,
        s3_bucket=bucket,
        s3_access_key_id=MOTO_ACCESS_KEY,
        s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
        **overrides,
    )


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on `settings` and a client of it (http://gateway) until the block ends."""
    app = create_app(settings)
    try:
        async with (
            started(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://gateway",
                # Every answer of every test is checked against its route's declared schema.
                event_hooks={"response": [Conformance(app).check]},
            ) as http,
        ):
            yield app, http
    finally:
        async with await aio_pika.connect(str(settings.amqp_url.get_secret_value())) as connection:
            await settings.topology.delete(await connection.channel())
