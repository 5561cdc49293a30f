from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aio_pika
import pytest

from tally_bus import Bus, Topology


@pytest.fixture
def topology() -> Topology:
    """A private set of exchanges and queues for one test."""
    return Topology(
        prefix=f"test-{uuid.uuid4().hex[:10]}",
        chunk_retry_delays_s=(0.3, 0.6),
        work_retry_delays_s=(0.3, 0.6),
    )


@pytest.fixture
async def bus(topology: Topology, amqp_url: str) -> AsyncIterator[Bus]:
    async with await Bus.connect(amqp_url, topology, publish_timeout_s=10) as connected:
        yield connected
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())
