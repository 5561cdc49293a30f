"""The detector's chunk handler on real Triton, moto S3 and RabbitMQ."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import uuid
from collections.abc import AsyncIterator, Callable

import aio_pika
import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import SecretStr

from tally_bus import Bus, decode
from tally_contracts import cancellation
from tally_contracts.v1 import ChunkResult, DetectChunk, JobEvent, JobRef, SliceBox
from tally_detector.config import Settings
from tally_detector.deps import Deps
from tally_detector.handlers import handle_detect_chunk
from tally_inference import (
    LABELS,
    DetectParams,
    SliceParams,
    SliceResult,
    TritonModel,
    count_error,
    merge_detections,
    plan_slices,
)
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY
from tally_stack.local_triton import LocalTriton
from tally_storage import ObjectStore
from tally_synth import PhotoSpec, render

pytestmark = pytest.mark.integration
WIDTH, HEIGHT = 2000, 1500
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
def settings(triton: LocalTriton, s3_endpoint: str, amqp_url: str) -> Settings:
    return Settings(
        amqp_url=SecretStr(amqp_url),
        bus_prefix=f"test-{uuid.uuid4().hex[:10]}",
        detector_id="detector-test",
        triton_url=triton.endpoints.grpc_url,
        redis_url=SecretStr(REDIS_URL),
        s3_endpoint_url=s3_endpoint,
        s3_bucket=f"det-{uuid.uuid4().hex[:10]}",
        s3_access_key_id=MOTO_ACCESS_KEY,
        s3_secret_access_key=SecretStr(MOTO_SECRET_KEY),
    )


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[Bus]:
    async with await settings.connect_bus() as connected:
        yield connected
    connection = await aio_pika.connect(settings.amqp_url.get_secret_value())
    async with connection:
        await connected.topology.delete(await connection.channel())


@pytest.fixture
async def deps(settings: Settings, bus: Bus) -> AsyncIterator[Deps]:
    """The detector's Deps as its __main__ opens them (the bucket made first: the service
    expects one)."""
    async with ObjectStore.open(settings.s3, create_bucket=True):
        pass
    model = TritonModel(settings.triton_url, shared_memory=settings.triton_shared_memory)
    async with model, Deps.open(settings, bus, model) as opened:
        yield opened


@pytest.fixture(scope="module")
def photo() -> tuple[bytes, int]:
    """A generated photo and its true seedling count (made outside any event loop)."""
    data, truth = render(PhotoSpec(seed=99, index=0, width=WIDTH, height=HEIGHT))
    return data, sum(1 for a in truth if a.label == "seedling")


def _chunk(key: str, boxes: list[tuple[int, int, int, int]]) -> DetectChunk:
    return DetectChunk(
        job=JobRef(
            tenant_id=str(uuid.uuid4()), session_id=str(uuid.uuid4()), job_id=str(uuid.uuid4())
        ),
        chunk_index=0,
        chunk_count=1,
        attempt=1,
        object_key=key,
        width=WIDTH,
        height=HEIGHT,
        slices=[SliceBox(x1=a, y1=b, x2=c, y2=d) for a, b, c, d in boxes],
        slice_size=512,
        confidence=0.35,
        total_slices=len(boxes),
    )


async def _result(bus: Bus, timeout_s: float = 60) -> ChunkResult:
    """The next ChunkResult on the orchestrator's queue, waiting for it to arrive."""
    channel = await bus.connection.channel()
    queue = await channel.get_queue(bus.topology.results_queue.name, ensure=False)
    async with queue.iterator(timeout=timeout_s) as messages:
        async for message in messages:
            await message.ack()
            return decode(message, ChunkResult)
    raise AssertionError("no ChunkResult arrived")


async def test_a_chunk_of_slices_comes_back_as_detections_in_image_pixels(
    deps: Deps, bus: Bus, photo: tuple[bytes, int]
) -> None:
    """Consumed as the service consumes: the handler's result is published to the
    orchestrator's queue."""
    data, true_seedlings = photo
    await deps.objects.put_bytes("t/s/j/original.jpg", data, "image/jpeg")
    boxes = plan_slices(WIDTH, HEIGHT, SliceParams(512, 0.25))
    consumer = await bus.consume(
        bus.topology.chunks_queue,
        functools.partial(handle_detect_chunk, deps=deps),
        prefetch=1,
        publish_to=bus.topology.chunk_result,
    )
    try:
        await bus.publish(bus.topology.detect_chunk, _chunk("t/s/j/original.jpg", boxes))
        result = await _result(bus)
    finally:
        await consumer.stop()
    assert result.WhichOneof("outcome") == "detections"
    assert result.detector_id == "detector-test"
    assert [
        (s.slice.x1, s.slice.y1, s.slice.x2, s.slice.y2) for s in result.detections.slices
    ] == boxes
    parts = [
        SliceResult(
            (s.slice.x1, s.slice.y1, s.slice.x2, s.slice.y2),
            np.array([[d.x1, d.y1, d.x2, d.y2] for d in s.detections], np.float32).reshape(-1, 4),
            np.array([d.score for d in s.detections], np.float32),
            np.array([LABELS.index(d.label) for d in s.detections], np.int64),
        )
        for s in result.detections.slices
    ]
    merged = await asyncio.to_thread(merge_detections, parts, WIDTH, HEIGHT, DetectParams())
    assert count_error(merged.counts["seedling"], true_seedlings) <= 0.08


@pytest.mark.parametrize(
    ("stored", "code"),
    [(None, "original_missing"), (b"\xff\xd8\xff\xe0 truncated", "image_unreadable")],
    ids=["missing", "corrupt"],
)
async def test_a_chunk_that_cannot_succeed_gets_a_final_failure(
    deps: Deps, stored: bytes | None, code: str
) -> None:
    if stored is not None:
        await deps.objects.put_bytes("bad.jpg", stored, "image/jpeg")
    result = await handle_detect_chunk(_chunk("bad.jpg", [(0, 0, 512, 512)]), deps)
    assert result is not None
    assert result.WhichOneof("outcome") == "failure"
    assert result.failure.code == code
    assert not result.failure.retryable


async def _queued(bus: Bus, spec_name: str) -> int:
    channel = await bus.connection.channel()
    declared = await channel.declare_queue(spec_name, passive=True)
    return declared.declaration_result.message_count or 0


async def test_a_chunk_of_a_cancelled_session_is_not_started(
    deps: Deps, bus: Bus, photo: tuple[bytes, int]
) -> None:
    await deps.objects.put_bytes("t/s/c/original.jpg", photo[0], "image/jpeg")
    chunk = _chunk("t/s/c/original.jpg", [(0, 0, 512, 512)])
    await deps.redis.set(cancellation.session_key(chunk.job.session_id), "1", ex=60)
    try:
        result = await handle_detect_chunk(chunk, deps)
    finally:
        await deps.redis.delete(cancellation.session_key(chunk.job.session_id))
    assert result is None  # no result
    assert await _queued(bus, bus.topology.events_queue.name) == 0  # not even `started`


async def test_a_chunk_stops_between_batches_once_its_job_is_cancelled(
    deps: Deps, bus: Bus, photo: tuple[bytes, int]
) -> None:
    """Cancelled while its first batch runs: the chunk stops there and sends no result."""
    deps = dataclasses.replace(deps, settings=deps.settings.model_copy(update={"batch_size": 2}))
    await deps.objects.put_bytes("t/s/d/original.jpg", photo[0], "image/jpeg")
    boxes = plan_slices(WIDTH, HEIGHT, SliceParams(512, 0.25))
    chunk = _chunk("t/s/d/original.jpg", boxes)
    assert isinstance(deps.model, TritonModel)
    infer_cut = deps.model.infer_cut  # what the detector sends each batch through
    calls = 0

    async def infer_then_cancel(
        shape: tuple[int, ...], cut: Callable[[NDArray[np.uint8]], None]
    ) -> NDArray[np.float32]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await deps.redis.set(cancellation.job_key(chunk.job.job_id), "1", ex=60)
        return await infer_cut(shape, cut)

    deps.model.infer_cut = infer_then_cancel  # type: ignore[method-assign]
    try:
        result = await handle_detect_chunk(chunk, deps)
    finally:
        deps.model.infer_cut = infer_cut  # type: ignore[method-assign]
        await deps.redis.delete(cancellation.job_key(chunk.job.job_id))
    batches = -(-len(boxes) // deps.settings.batch_size)
    # Stopped well before the end: batches already in flight (up to max_in_flight while the
    # first one's result is decoded) finish, nothing after the check runs.
    assert calls <= 2 * deps.settings.max_in_flight + 1 < batches
    assert result is None
    channel = await bus.connection.channel()
    events = await channel.get_queue(bus.topology.events_queue.name, ensure=False)
    started = await events.get(timeout=5, no_ack=True)
    assert started is not None
    assert decode(started, JobEvent).WhichOneof("kind") == "started"
