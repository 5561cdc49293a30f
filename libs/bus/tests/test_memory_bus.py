"""The in-memory bus that handlers' unit tests use: the Bus's surface, no broker."""

from __future__ import annotations

import pytest

from tally_bus import Publisher, Topology
from tally_bus.testing import MemoryBus
from tally_contracts.v1 import ChunkResult, DetectChunk, JobEvent, JobRef

JOB = JobRef(tenant_id="t", session_id="s", job_id="j")


def _chunk(index: int) -> DetectChunk:
    return DetectChunk(job=JOB, chunk_index=index, object_key="k")


async def test_a_published_message_reaches_its_routes_consumer_as_a_copy() -> None:
    bus = MemoryBus()
    received: list[DetectChunk] = []

    async def detect(chunk: DetectChunk) -> None:
        received.append(chunk)

    await bus.consume(bus.topology.chunks_queue, detect, prefetch=1)
    sent = _chunk(3)
    await bus.publish(bus.topology.detect_chunk, sent)
    await bus.publish(bus.topology.job_event, JobEvent(job=JOB))  # no consumer: only kept
    assert received == [sent]
    assert received[0] is not sent  # it travelled, as bytes do
    assert bus.messages(bus.topology.detect_chunk) == [sent]
    assert bus.messages(bus.topology.job_event) == [JobEvent(job=JOB)]


async def test_a_handlers_reply_is_published_to_its_route_and_none_is_not() -> None:
    bus = MemoryBus()

    async def detect(chunk: DetectChunk) -> ChunkResult | None:
        if chunk.chunk_index == 1:
            return None
        return ChunkResult(job=chunk.job, chunk_index=chunk.chunk_index)

    await bus.consume(
        bus.topology.chunks_queue, detect, prefetch=1, publish_to=bus.topology.chunk_result
    )
    await bus.publish(bus.topology.detect_chunk, _chunk(1))
    await bus.publish(bus.topology.detect_chunk, _chunk(2))
    assert bus.messages(bus.topology.chunk_result) == [ChunkResult(job=JOB, chunk_index=2)]


async def test_a_handlers_error_reaches_the_publisher() -> None:
    bus = MemoryBus()

    async def broken(chunk: DetectChunk) -> None:
        raise RuntimeError("the model crashed")

    await bus.consume(bus.topology.chunks_queue, broken, prefetch=1)
    with pytest.raises(RuntimeError, match="the model crashed"):
        await bus.publish(bus.topology.detect_chunk, _chunk(0))


async def test_a_stopped_consumer_takes_nothing_more_and_a_queue_has_one() -> None:
    bus = MemoryBus(Topology(prefix="unit"))
    received: list[DetectChunk] = []

    async def detect(chunk: DetectChunk) -> None:
        received.append(chunk)

    consumer = await bus.consume(bus.topology.chunks_queue, detect, prefetch=1)
    with pytest.raises(ValueError, match="consumed already"):
        await bus.consume(bus.topology.chunks_queue, detect, prefetch=1)
    await consumer.stop()
    await bus.publish(bus.topology.detect_chunk, _chunk(5))
    assert received == []
    assert bus.messages(bus.topology.detect_chunk) == [_chunk(5)]


async def test_the_wrong_message_type_for_a_route_is_refused() -> None:
    bus: Publisher = MemoryBus()  # and it is what a handler's Deps need of a bus
    with pytest.raises(TypeError):
        await bus.publish(bus.topology.detect_chunk, JobEvent(job=JOB))
