from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from tally_bus import Bus, Topology

AMQP_URL = os.environ.get("TALLY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


@pytest.fixture
def amqp_url() -> str:
    return AMQP_URL


@pytest.fixture
def topology() -> Topology:
    """A private set of exchanges and queues for one test."""
    return Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def bus(topology: Topology) -> AsyncIterator[Bus]:
    async with await Bus.connect(AMQP_URL, topology, publish_timeout_s=10) as connected:
        yield connected
    connection = await aio_pika.connect(AMQP_URL)
    async with connection:
        await topology.delete(await connection.channel())
