"""The bus against a real RabbitMQ: confirms, unroutable messages, redelivery, dead letters."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import sys

import aio_pika
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from tests.eventually import eventually_async

from tally_bus import (
    ERROR_HEADER,
    Bus,
    Route,
    Topology,
    TopologyMismatchError,
    UnroutableError,
    decode,
    encode,
    parked,
    replay,
)
from tally_contracts.v1 import ChunkResult, DetectChunk, JobEvent, JobRef, SliceBox

pytestmark = pytest.mark.integration

JOB = JobRef(tenant_id="tenant-a", session_id="s1", job_id="j1")


def _chunk(index: int = 0) -> DetectChunk:
    return DetectChunk(
        job=JOB,
        chunk_index=index,
        chunk_count=4,
        attempt=1,
        object_key="k",
        width=4000,
        height=3000,
        slices=[SliceBox(x1=0, y1=0, x2=512, y2=512)],
    )


async def _get(
    bus: Bus, queue: str, timeout_s: float = 10.0
) -> aio_pika.abc.AbstractIncomingMessage:
    """The next message of `queue`, waiting for it to arrive."""
    channel = await bus.connection.channel()
    q = await channel.get_queue(queue, ensure=False)
    async with q.iterator(timeout=timeout_s) as messages:
        async for message in messages:
            await message.ack()
            return message
    raise AssertionError(f"nothing arrived on {queue}")


async def test_a_published_message_is_confirmed_and_arrives_intact(
    bus: Bus, topology: Topology
) -> None:
    await bus.publish(topology.detect_chunk, _chunk(3))
    received = await _get(bus, topology.chunks_queue.name)
    assert decode(received, DetectChunk) == _chunk(3)
    assert received.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert received.content_type == "application/x-protobuf"


async def test_a_message_no_queue_takes_raises_instead_of_vanishing(
    bus: Bus, topology: Topology
) -> None:
    nowhere = Route(topology.work_exchange, "no.such.route", DetectChunk)
    with pytest.raises(UnroutableError):
        await bus.publish(nowhere, _chunk())


async def test_the_wrong_message_type_for_a_route_is_refused(bus: Bus, topology: Topology) -> None:
    with pytest.raises(TypeError):
        await bus.publish(topology.detect_chunk, JobEvent(job=JOB))


async def test_an_unacked_message_is_redelivered_when_its_consumer_dies(
    bus: Bus, topology: Topology, amqp_url: str
) -> None:
    await bus.publish(topology.detect_chunk, _chunk(1))

    # A consumer on its own connection takes the message and dies before acknowledging it.
    doomed = await aio_pika.connect(amqp_url)
    channel = await doomed.channel()
    await channel.set_qos(prefetch_count=1)
    queue = await channel.get_queue(topology.chunks_queue.name, ensure=False)
    taken = await queue.get(timeout=10, no_ack=False)
    assert taken is not None
    await doomed.close()

    seen: asyncio.Queue[DetectChunk] = asyncio.Queue()

    async def handle(chunk: DetectChunk) -> None:
        await seen.put(chunk)

    consumer = await bus.consume(topology.chunks_queue, handle, prefetch=1)
    try:
        assert await asyncio.wait_for(seen.get(), 10) == _chunk(1)
    finally:
        await consumer.stop()


async def test_without_retry_delays_a_failing_message_is_dead_lettered_at_the_delivery_limit(
    bus: Bus, topology: Topology
) -> None:
    attempts: list[int] = []

    async def always_fails(event: JobEvent) -> None:
        attempts.append(event.sequence)
        raise RuntimeError("poison")

    consumer = await bus.consume(topology.events_queue, always_fails, prefetch=1)
    await bus.publish(topology.job_event, JobEvent(job=JOB, sequence=7))
    try:
        dead = await _get(bus, topology.events_queue.dead_letter_queue, timeout_s=30)
    finally:
        await consumer.stop()
    assert decode(dead, JobEvent).sequence == 7
    # The handler had it 4 times; the 5th delivery (the limit) parks it instead.
    assert len(attempts) == topology.events_queue.delivery_limit - 1
    assert str((dead.headers or {})[ERROR_HEADER]).startswith(
        "delivered 5 times and never finished"
    )


async def test_a_failing_message_is_retried_after_growing_delays(
    bus: Bus, topology: Topology
) -> None:
    """Fails twice, then works: the 2nd and 3rd attempts come after the queue's delays."""
    times: list[float] = []
    done = asyncio.Event()

    async def flaky(chunk: DetectChunk) -> None:
        times.append(asyncio.get_running_loop().time())
        if len(times) < 3:
            raise ConnectionError("Triton is away")
        done.set()

    consumer = await bus.consume(topology.chunks_queue, flaky, prefetch=1)
    await bus.publish(topology.detect_chunk, _chunk(3))
    try:
        await asyncio.wait_for(done.wait(), 20)
    finally:
        await consumer.stop()
    waits = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert [round(w, 1) >= d for w, d in zip(waits, (0.3, 0.6), strict=True)] == [True, True]


async def test_a_handlers_reply_is_published_to_its_route_before_the_message_is_acked(
    bus: Bus, topology: Topology
) -> None:
    async def detect(chunk: DetectChunk) -> ChunkResult | None:
        if chunk.chunk_index == 1:
            return None  # nothing to say this time
        return ChunkResult(job=chunk.job, chunk_index=chunk.chunk_index, detector_id="d1")

    consumer = await bus.consume(
        topology.chunks_queue, detect, prefetch=1, publish_to=topology.chunk_result
    )
    try:
        await bus.publish(topology.detect_chunk, _chunk(1))
        await bus.publish(topology.detect_chunk, _chunk(2))
        reply = await _get(bus, topology.results_queue.name)
    finally:
        await consumer.stop()
    assert decode(reply, ChunkResult) == ChunkResult(job=JOB, chunk_index=2, detector_id="d1")
    state = await bus.queue_state(topology.results_queue)
    assert state.ready == 0  # chunk 1 answered nothing
    assert (await bus.queue_state(topology.chunks_queue)).ready == 0  # both acknowledged


async def test_a_reply_the_broker_cannot_take_fails_its_message_like_its_handler_would(
    bus: Bus, topology: Topology
) -> None:
    handled: list[int] = []

    async def detect(chunk: DetectChunk) -> ChunkResult:
        handled.append(chunk.chunk_index)
        return ChunkResult(job=chunk.job, chunk_index=chunk.chunk_index)

    nowhere = Route(topology.work_exchange, "no.such.route", ChunkResult)
    consumer = await bus.consume(topology.chunks_queue, detect, prefetch=1, publish_to=nowhere)
    await bus.publish(topology.detect_chunk, _chunk(4))
    try:
        dead = await _get(bus, topology.chunks_queue.dead_letter_queue, timeout_s=30)
    finally:
        await consumer.stop()
    assert decode(dead, DetectChunk) == _chunk(4)
    assert handled == [4, 4, 4]  # retried as a failing handler is
    assert "UnroutableError" in str((dead.headers or {})[ERROR_HEADER])


async def test_a_message_that_keeps_failing_is_given_up_and_parked_with_its_reason(
    bus: Bus, topology: Topology
) -> None:
    attempts: list[int] = []
    given_up: list[tuple[DetectChunk, str]] = []

    async def always_fails(chunk: DetectChunk) -> None:
        attempts.append(chunk.chunk_index)
        raise RuntimeError("the model crashed on this image")

    async def give_up(chunk: DetectChunk, reason: str) -> None:
        given_up.append((chunk, reason))

    consumer = await bus.consume(topology.chunks_queue, always_fails, prefetch=1, give_up=give_up)
    await bus.publish(topology.detect_chunk, _chunk(7))
    try:
        dead = await _get(bus, topology.chunks_queue.dead_letter_queue, timeout_s=30)
    finally:
        await consumer.stop()
    assert decode(dead, DetectChunk) == _chunk(7)
    assert len(attempts) == topology.chunks_queue.attempts == 3
    reason = "failed 3 times; last: RuntimeError: the model crashed on this image"
    assert given_up == [(_chunk(7), reason)]
    assert (dead.headers or {})[ERROR_HEADER] == reason


async def test_a_message_whose_consumers_keep_dying_is_given_up_without_another_try(
    bus: Bus, topology: Topology, amqp_url: str
) -> None:
    """The consumer dies holding it (kill -9, out of memory) again and again: at the delivery
    limit it is parked, with the reason, instead of killing one more."""
    await bus.publish(topology.detect_chunk, _chunk(9))
    for _ in range(topology.chunks_queue.delivery_limit - 1):
        doomed = await aio_pika.connect(amqp_url)
        channel = await doomed.channel()
        queue = await channel.get_queue(topology.chunks_queue.name, ensure=False)
        assert await queue.get(timeout=10, no_ack=False) is not None
        await doomed.close()  # died before acknowledging

    handled: list[DetectChunk] = []
    given_up: list[str] = []

    async def handle(chunk: DetectChunk) -> None:
        handled.append(chunk)

    async def give_up(chunk: DetectChunk, reason: str) -> None:
        given_up.append(reason)

    consumer = await bus.consume(topology.chunks_queue, handle, prefetch=1, give_up=give_up)
    try:
        dead = await _get(bus, topology.chunks_queue.dead_letter_queue, timeout_s=30)
    finally:
        await consumer.stop()
    assert handled == []
    assert decode(dead, DetectChunk) == _chunk(9)
    limit = topology.chunks_queue.delivery_limit
    assert given_up == [
        f"delivered {limit} times and never finished: its handler failed or its consumer died "
        "each time"
    ]


async def test_a_malformed_message_is_dead_lettered_without_reaching_the_handler(
    bus: Bus, topology: Topology
) -> None:
    handled: list[DetectChunk] = []

    async def handle(chunk: DetectChunk) -> None:
        handled.append(chunk)

    consumer = await bus.consume(topology.chunks_queue, handle, prefetch=1)
    channel = await bus.connection.channel()
    exchange = await channel.get_exchange(topology.work_exchange, ensure=False)
    garbage = aio_pika.Message(b"\xff\x00 not protobuf", type="tally.v1.DetectChunk")
    await exchange.publish(garbage, topology.detect_chunk.routing_key)
    wrong_type = encode(JobEvent(job=JOB))
    await exchange.publish(wrong_type, topology.detect_chunk.routing_key)
    try:
        first = await _get(bus, topology.chunks_queue.dead_letter_queue)
        second = await _get(bus, topology.chunks_queue.dead_letter_queue)
    finally:
        await consumer.stop()
    assert {first.body, second.body} == {garbage.body, wrong_type.body}
    assert handled == []


async def test_the_trace_context_travels_with_the_message(bus: Bus, topology: Topology) -> None:
    tracer = TracerProvider().get_tracer("test")
    seen: asyncio.Queue[int] = asyncio.Queue()

    async def handle(chunk: DetectChunk) -> None:
        await seen.put(trace.get_current_span().get_span_context().trace_id)

    consumer = await bus.consume(topology.chunks_queue, handle, prefetch=1)
    try:
        with tracer.start_as_current_span("upload") as span:
            await bus.publish(topology.detect_chunk, _chunk())
            sent = span.get_span_context().trace_id
        assert await asyncio.wait_for(seen.get(), 10) == sent
    finally:
        await consumer.stop()


async def test_stopping_a_consumer_waits_for_the_message_in_hand(
    bus: Bus, topology: Topology
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    done: list[int] = []

    async def slow(chunk: DetectChunk) -> None:
        started.set()
        await release.wait()
        done.append(chunk.chunk_index)

    consumer = await bus.consume(topology.chunks_queue, slow, prefetch=1)
    await bus.publish(topology.detect_chunk, _chunk(5))
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(consumer.stop(grace_s=10))
    await asyncio.sleep(0)
    assert not stopping.done()
    release.set()
    await stopping
    assert done == [5]


async def test_parked_messages_are_listed_with_their_reason_and_replayed(
    bus: Bus, topology: Topology, amqp_url: str
) -> None:
    gave_up = asyncio.Event()

    async def always_fails(chunk: DetectChunk) -> None:
        raise RuntimeError("Triton is away")

    async def give_up(chunk: DetectChunk, reason: str) -> None:
        gave_up.set()

    consumer = await bus.consume(topology.chunks_queue, always_fails, prefetch=1, give_up=give_up)
    await bus.publish(topology.detect_chunk, _chunk(5))
    try:
        await asyncio.wait_for(gave_up.wait(), 20)
        (found,) = await eventually_async(lambda: parked(bus))  # parked once give_up returns
    finally:
        await consumer.stop()

    assert (found.queue, found.job_id, found.message_type) == (
        topology.chunks_queue.name,
        "j1",
        "tally.v1.DetectChunk",
    )
    assert found.reason == "failed 3 times; last: RuntimeError: Triton is away"
    assert len(await parked(bus, topology.chunks_queue.name)) == 1  # listing leaves it there

    # The operator's command sees the same.
    cli = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "tally_client.cli", "admin", "dlq", "list", "--json"),
        env={**os.environ, "TALLY_AMQP_URL": amqp_url, "TALLY_BUS_PREFIX": topology.prefix},
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await cli.communicate()
    assert cli.returncode == 0
    assert [(r["job_id"], r["reason"]) for r in json.loads(out)] == [("j1", found.reason)]

    with pytest.raises(ValueError, match="no work queue"):
        await parked(bus, "no-such-queue")
    assert await replay(bus) == 1
    assert await parked(bus) == []
    again = await _get(bus, topology.chunks_queue.name)
    assert decode(again, DetectChunk) == _chunk(5)
    assert (again.headers or {}).get("x-tally-replayed") == "1"
    assert "x-tally-attempt" not in (again.headers or {})  # a fresh set of attempts


async def test_a_queue_left_by_an_older_version_is_named_with_what_to_do(
    topology: Topology, amqp_url: str
) -> None:
    """RabbitMQ cannot change a queue's arguments: a work queue declared with another delivery
    limit (an older Tally) stops the start with the queue's name and the way out, not a bare
    PRECONDITION_FAILED."""
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        await channel.declare_queue(
            topology.chunks_queue.name,
            durable=True,
            arguments={"x-queue-type": "quorum", "x-delivery-limit": 5},
        )
        try:
            with pytest.raises(TopologyMismatchError) as caught:
                await Bus.connect(amqp_url, topology, publish_timeout_s=10)
            assert topology.chunks_queue.name in str(caught.value)
            assert "rabbitmqctl delete_queue" in str(caught.value)
        finally:
            cleanup = await connection.channel()
            await topology.delete(cleanup)
