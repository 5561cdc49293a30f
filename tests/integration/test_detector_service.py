"""The detector's chunk handler on real Triton, moto S3 and RabbitMQ."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator

import aio_pika
import numpy as np
import pytest
from numpy.typing import NDArray
from pydantic import SecretStr
from redis.asyncio import Redis

from tally_bus import Bus, Topology, decode
from tally_contracts import cancellation
from tally_contracts.v1 import ChunkResult, DetectChunk, JobEvent, JobRef, SliceBox
from tally_detector.config import Settings
from tally_detector.deps import Deps, PhotoCache
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
from tally_storage import ObjectStore, S3Settings
from tally_synth import PhotoSpec, render

pytestmark = pytest.mark.integration
WIDTH, HEIGHT = 2000, 1500
REDIS_URL = "redis://127.0.0.1:6379/15"


@pytest.fixture
async def deps(triton: LocalTriton, s3_endpoint: str, amqp_url: str) -> AsyncIterator[Deps]:
    topology = Topology(prefix=f"test-{uuid.uuid4().hex[:10]}")
    settings = Settings(
        amqp_url=SecretStr(amqp_url), bus_prefix=topology.prefix, detector_id="detector-test"
    )
    s3 = S3Settings(
        bucket=f"det-{uuid.uuid4().hex[:10]}",
        endpoint_url=s3_endpoint,
        access_key_id=MOTO_ACCESS_KEY,
        secret_access_key=MOTO_SECRET_KEY,
    )
    async with (
        Redis.from_url(REDIS_URL) as redis,
        ObjectStore.open(s3, create_bucket=True) as objects,
        TritonModel(triton.endpoints.grpc_url) as model,
        await Bus.connect(amqp_url, topology) as bus,
    ):
        yield Deps(settings, bus, objects, model, PhotoCache(), redis)
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        await topology.delete(await connection.channel())


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


async def _result(deps: Deps) -> ChunkResult:
    channel = await deps.bus.connection.channel()
    queue = await channel.get_queue(deps.bus.topology.results_queue.name, ensure=False)
    message = await queue.get(timeout=10, no_ack=True)
    assert message is not None
    return decode(message, ChunkResult)


async def test_a_chunk_of_slices_comes_back_as_detections_in_image_pixels(
    deps: Deps, photo: tuple[bytes, int]
) -> None:
    data, true_seedlings = photo
    await deps.objects.put_bytes("t/s/j/original.jpg", data, "image/jpeg")
    boxes = plan_slices(WIDTH, HEIGHT, SliceParams(512, 0.25))
    await handle_detect_chunk(_chunk("t/s/j/original.jpg", boxes), deps)

    result = await _result(deps)
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
    await handle_detect_chunk(_chunk("bad.jpg", [(0, 0, 512, 512)]), deps)
    result = await _result(deps)
    assert result.WhichOneof("outcome") == "failure"
    assert result.failure.code == code
    assert not result.failure.retryable


async def _queued(deps: Deps, spec_name: str) -> int:
    channel = await deps.bus.connection.channel()
    declared = await channel.declare_queue(spec_name, passive=True)
    return declared.declaration_result.message_count or 0


async def test_a_chunk_of_a_cancelled_session_is_not_started(
    deps: Deps, photo: tuple[bytes, int]
) -> None:
    await deps.objects.put_bytes("t/s/c/original.jpg", photo[0], "image/jpeg")
    chunk = _chunk("t/s/c/original.jpg", [(0, 0, 512, 512)])
    await deps.redis.set(cancellation.session_key(chunk.job.session_id), "1", ex=60)
    try:
        await handle_detect_chunk(chunk, deps)
    finally:
        await deps.redis.delete(cancellation.session_key(chunk.job.session_id))
    topology = deps.bus.topology
    assert await _queued(deps, topology.results_queue.name) == 0  # no result
    assert await _queued(deps, topology.events_queue.name) == 0  # not even `started`


async def test_a_chunk_stops_between_batches_once_its_job_is_cancelled(
    deps: Deps, photo: tuple[bytes, int]
) -> None:
    """Cancelled while its first batch runs: the chunk stops there and sends no result."""
    deps = dataclasses.replace(deps, settings=deps.settings.model_copy(update={"batch_size": 2}))
    await deps.objects.put_bytes("t/s/d/original.jpg", photo[0], "image/jpeg")
    boxes = plan_slices(WIDTH, HEIGHT, SliceParams(512, 0.25))
    chunk = _chunk("t/s/d/original.jpg", boxes)
    infer = deps.model.infer
    calls = 0

    async def infer_then_cancel(batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        nonlocal calls
        calls += 1
        if calls == 1:
            await deps.redis.set(cancellation.job_key(chunk.job.job_id), "1", ex=60)
        return await infer(batch)

    deps.model.infer = infer_then_cancel  # type: ignore[method-assign]
    try:
        await handle_detect_chunk(chunk, deps)
    finally:
        deps.model.infer = infer  # type: ignore[method-assign]
        await deps.redis.delete(cancellation.job_key(chunk.job.job_id))
    batches = -(-len(boxes) // deps.settings.batch_size)
    # Stopped well before the end: batches already in flight (up to max_in_flight while the
    # first one's result is decoded) finish, nothing after the check runs.
    assert calls <= 2 * deps.settings.max_in_flight + 1 < batches
    assert await _queued(deps, deps.bus.topology.results_queue.name) == 0
    channel = await deps.bus.connection.channel()
    events = await channel.get_queue(deps.bus.topology.events_queue.name, ensure=False)
    started = await events.get(timeout=5, no_ack=True)
    assert started is not None
    assert decode(started, JobEvent).WhichOneof("kind") == "started"
