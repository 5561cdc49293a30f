"""The detector's handler on an in-memory bus, with fakes for Triton, S3 and Redis."""

from __future__ import annotations

import functools
import io
from typing import cast

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image
from redis.asyncio import Redis

from tally_bus.testing import MemoryBus
from tally_contracts import cancellation, sequence
from tally_contracts.v1 import ChunkResult, DetectChunk, JobRef, SliceBox
from tally_detector.config import Settings
from tally_detector.deps import Deps, PhotoCache
from tally_detector.handlers import handle_detect_chunk
from tally_inference import LABELS
from tally_storage import ObjectNotFoundError, ObjectStore

WIDTH, HEIGHT = 1024, 768
SLICES = [(0, 0, 512, 512), (512, 256, 1024, 768)]
JOB = JobRef(tenant_id="t", session_id="s", job_id="j")


class FakeModel:
    """Finds one seedling at (10, 10)-(50, 50) of every slice; or, `away`, cannot be reached."""

    def __init__(self, away: bool = False) -> None:
        self.away = away
        self.batches = 0

    async def infer(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        self.batches += 1
        if self.away:
            raise ConnectionError("Triton is away")
        rows = np.zeros((len(batch), 4, 4 + len(LABELS)), np.float32)
        rows[:, 0] = [10, 10, 50, 50, 0.9, 0.05]
        return rows


class FakeObjects:
    def __init__(self, stored: dict[str, bytes]) -> None:
        self.stored = stored

    async def get_bytes(self, key: str) -> bytes:
        try:
            return self.stored[key]
        except KeyError:
            raise ObjectNotFoundError(key) from None


class FakeRedis:
    """Only the cancel marks the handler looks for."""

    def __init__(self, marks: set[str] | None = None) -> None:
        self.marks = marks or set()

    async def exists(self, *keys: str) -> int:
        return sum(key in self.marks for key in keys)


def _photo(width: int = WIDTH, height: int = HEIGHT) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 60)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _deps(
    bus: MemoryBus,
    *,
    model: FakeModel | None = None,
    stored: dict[str, bytes] | None = None,
    marks: set[str] | None = None,
) -> Deps:
    return Deps(
        Settings(detector_id="detector-unit"),
        bus,
        cast(ObjectStore, FakeObjects({"k/original.jpg": _photo()} if stored is None else stored)),
        model or FakeModel(),
        PhotoCache(),
        cast(Redis, FakeRedis(marks)),
    )


def _chunk() -> DetectChunk:
    return DetectChunk(
        job=JOB,
        chunk_index=1,
        chunk_count=2,
        attempt=2,
        object_key="k/original.jpg",
        width=WIDTH,
        height=HEIGHT,
        slices=[SliceBox(x1=a, y1=b, x2=c, y2=d) for a, b, c, d in SLICES],
        slice_size=512,
        confidence=0.35,
        total_slices=4,
    )


async def test_a_chunk_is_announced_then_answered_in_image_pixels_through_its_consumer() -> None:
    bus = MemoryBus()
    deps = _deps(bus)
    await bus.consume(
        bus.topology.chunks_queue,
        functools.partial(handle_detect_chunk, deps=deps),
        prefetch=1,
        publish_to=bus.topology.chunk_result,
    )
    await bus.publish(bus.topology.detect_chunk, _chunk())

    topology = bus.topology
    assert [route for route, _ in bus.published] == [
        topology.detect_chunk,
        topology.job_event,  # `started` first
        topology.chunk_result,
    ]
    (started,) = bus.messages(topology.job_event)
    assert started.WhichOneof("kind") == "started"
    assert (started.sequence, started.source) == (sequence.STARTED, "detector")
    assert (started.job, started.started.chunk_index) == (JOB, 1)
    (result,) = bus.messages(topology.chunk_result)
    assert (result.job, result.chunk_index, result.attempt) == (JOB, 1, 2)
    assert result.detector_id == "detector-unit"
    assert result.WhichOneof("outcome") == "detections"
    found = [
        ((s.slice.x1, s.slice.y1), [(d.x1, d.y1, d.x2, d.y2, d.label) for d in s.detections])
        for s in result.detections.slices
    ]
    assert found == [
        ((0, 0), [(10, 10, 50, 50, "seedling")]),
        ((512, 256), [(522, 266, 562, 306, "seedling")]),  # shifted to the slice's place
    ]
    assert result.inference_seconds > 0


@pytest.mark.parametrize(
    ("stored", "code"),
    [
        ({}, "original_missing"),
        ({"k/original.jpg": b"\xff\xd8\xff\xe0 truncated"}, "image_unreadable"),
        ({"k/original.jpg": _photo(800, 600)}, "size_mismatch"),
    ],
    ids=["missing", "corrupt", "other-size"],
)
async def test_a_chunk_that_cannot_succeed_is_answered_with_a_final_failure(
    stored: dict[str, bytes], code: str
) -> None:
    bus = MemoryBus()
    model = FakeModel()
    result = await handle_detect_chunk(_chunk(), _deps(bus, model=model, stored=stored))
    assert isinstance(result, ChunkResult)
    assert result.WhichOneof("outcome") == "failure"
    assert (result.failure.code, result.failure.retryable) == (code, False)
    assert model.batches == 0
    assert len(bus.messages(bus.topology.job_event)) == 1  # it had started


@pytest.mark.parametrize("mark", ["job", "session"])
async def test_a_chunk_of_a_cancelled_job_or_session_is_dropped_unstarted(mark: str) -> None:
    bus = MemoryBus()
    model = FakeModel()
    key = cancellation.job_key("j") if mark == "job" else cancellation.session_key("s")
    assert await handle_detect_chunk(_chunk(), _deps(bus, model=model, marks={key})) is None
    assert bus.published == []  # not even `started`
    assert model.batches == 0


async def test_triton_away_raises_so_the_chunk_returns_to_its_queue() -> None:
    bus = MemoryBus()
    with pytest.raises(ConnectionError):
        await handle_detect_chunk(_chunk(), _deps(bus, model=FakeModel(away=True)))
    assert bus.messages(bus.topology.chunk_result) == []


async def test_a_chunk_with_parameters_the_detector_refuses_fails_its_job_at_once() -> None:
    """A confidence of 1.0 (0.99999999 sent as a 32-bit float) once raised ValueError on every
    attempt: retried for ~100 s, then dead-lettered. It is a permanent failure: one result, not
    retryable, through the consumer, and the message is not returned to its queue."""
    bus = MemoryBus()
    model = FakeModel()
    deps = _deps(bus, model=model)
    await bus.consume(
        bus.topology.chunks_queue,
        functools.partial(handle_detect_chunk, deps=deps),
        prefetch=1,
        publish_to=bus.topology.chunk_result,
    )
    chunk = _chunk()
    chunk.confidence = 0.99999999
    assert chunk.confidence == 1.0
    await bus.publish(bus.topology.detect_chunk, chunk)

    (result,) = bus.messages(bus.topology.chunk_result)
    assert result.WhichOneof("outcome") == "failure"
    assert (result.failure.code, result.failure.retryable) == ("invalid_request", False)
    assert "confidence 1" in result.failure.message
    assert "ValueError" not in result.failure.message
    assert model.batches == 0
