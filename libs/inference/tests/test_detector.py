"""Slicing, batching, shifting and SAHI merging, with an oracle model in place of Triton."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray
from PIL import Image

from tally_inference import (
    DetectParams,
    ImageError,
    InferenceError,
    SlicedDetector,
    SliceParams,
    cut_batch,
    cut_into,
    plan_slices,
)

CELLS = 64  # rows per slice in the oracle's output, like the real model's grid


class OracleModel:
    """Finds squares painted green=255 with a unique red id; remembers how it was called."""

    def __init__(self, fail: bool = False, overlap: int = 1) -> None:
        self.fail = fail
        self.batches: list[int] = []
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        # With overlap > 1, each call waits (briefly at most) for that many calls to be in flight,
        # as a slow server would, so the test sees how many requests the client lets overlap.
        self.overlap = overlap
        self.crowded = asyncio.Event()

    async def infer(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        self.calls += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight >= self.overlap:
            self.crowded.set()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.crowded.wait(), 0.2)
            if self.fail:
                raise InferenceError("model exploded")
            self.batches.append(len(batch))
            out = np.zeros((len(batch), CELLS, 6), np.float32)
            for i, tile in enumerate(batch):
                painted = tile[..., 1] == 255
                for row, ident in enumerate(np.unique(tile[..., 0][painted])[:CELLS]):
                    ys, xs = np.nonzero(painted & (tile[..., 0] == ident))
                    label_score = 4 if ident % 2 else 5  # odd ids: seedling, even: weed
                    out[i, row, :4] = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                    out[i, row, label_score] = 0.9
            return out
        finally:
            self.in_flight -= 1


def _scene(width: int, height: int, size: int = 40) -> tuple[NDArray[np.uint8], int, int]:
    """Squares on a grid that puts many of them across slice borders."""
    image = np.zeros((height, width, 3), np.uint8)
    seedlings = weeds = 0
    ident = 1
    for y in range(20, height - size, 2 * size + 7):
        for x in range(15, width - size, 2 * size + 11):
            image[y : y + size, x : x + size] = (ident, 255, 0)
            seedlings += ident % 2
            weeds += 1 - ident % 2
            ident += 1
    assert ident < 256, "the oracle tells squares apart by an 8-bit id"
    return image, seedlings, weeds


async def test_objects_seen_by_several_slices_are_counted_once() -> None:
    image, seedlings, weeds = _scene(1500, 1100)
    detector = SlicedDetector(OracleModel(), SliceParams(256, 0.25), DetectParams())
    result = await detector.detect(image)
    assert result.counts == {"seedling": seedlings, "weed": weeds}
    assert result.slices == len(plan_slices(1500, 1100, SliceParams(256, 0.25)))


async def test_boxes_come_back_in_original_image_pixels() -> None:
    image = np.zeros((700, 900, 3), np.uint8)
    image[600:650, 820:870] = (1, 255, 0)  # in the last row and column of slices
    result = await SlicedDetector(OracleModel(), SliceParams(256, 0.2)).detect(image)
    assert len(result.detections) == 1
    assert result.detections[0].bbox == (820.0, 600.0, 870.0, 650.0)
    assert result.detections[0].label == "seedling"


async def test_a_photo_smaller_than_a_slice_is_padded() -> None:
    image = np.zeros((100, 150, 3), np.uint8)
    image[10:30, 100:140] = (2, 255, 0)
    model = OracleModel()
    result = await SlicedDetector(model, SliceParams(256, 0.2)).detect(image)
    assert result.counts == {"seedling": 0, "weed": 1}
    assert result.detections[0].bbox == (100.0, 10.0, 140.0, 30.0)


async def test_slices_go_in_batches_with_bounded_concurrency() -> None:
    image, *_ = _scene(1500, 1100)
    model = OracleModel(overlap=3)  # would take three at once: the client must allow only two
    params = DetectParams(batch_size=4, max_in_flight=2)
    progress: list[int] = []

    async def on_batch(done: int) -> None:
        progress.append(done)

    detector = SlicedDetector(model, SliceParams(256, 0.2), params)
    boxes = plan_slices(1500, 1100, detector.slice_params)
    parts = await detector.infer_slices(image, boxes, on_batch)
    assert [p.slice_box for p in parts] == boxes
    assert max(model.batches) == 4
    assert sum(model.batches) == len(boxes)
    assert model.max_in_flight == 2
    assert progress == sorted(progress)
    assert progress[-1] == len(boxes)


async def test_nms_merge_is_available_too() -> None:
    image, seedlings, weeds = _scene(1200, 900)
    params = DetectParams(merge="NMS", merge_metric="IOS", merge_threshold=0.5)
    result = await SlicedDetector(OracleModel(), SliceParams(256, 0.25), params).detect(image)
    assert result.counts == {"seedling": seedlings, "weed": weeds}


async def test_bad_bytes_raise_an_image_error_before_any_inference() -> None:
    model = OracleModel()
    with pytest.raises(ImageError) as caught:
        await SlicedDetector(model).detect_bytes(b"PK\x03\x04 definitely a zip")
    assert caught.value.code == "unsupported_format"
    assert model.batches == []


async def test_good_bytes_are_decoded_and_detected() -> None:
    image, seedlings, weeds = _scene(800, 600)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    result = await SlicedDetector(OracleModel(), SliceParams(256, 0.25)).detect_bytes(
        buffer.getvalue()
    )
    assert result.counts == {"seedling": seedlings, "weed": weeds}


async def test_a_model_failure_surfaces_as_an_inference_error_and_stops_the_rest() -> None:
    image, *_ = _scene(1200, 900)
    model = OracleModel(fail=True)
    detector = SlicedDetector(model, SliceParams(256, 0.2), DetectParams(batch_size=2))
    groups = len(plan_slices(1200, 900, detector.slice_params)) // 2
    with pytest.raises(InferenceError, match="exploded"):
        await detector.detect(image)
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others, return_exceptions=True)
    assert model.calls < groups  # the batches still queued never reached the model


def test_parameters_are_validated() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        SliceParams(500, 0.2)
    with pytest.raises(ValueError, match="overlap"):
        SliceParams(512, 0.95)
    with pytest.raises(ValueError, match="confidence"):
        DetectParams(confidence=1.5)


class CuttingOracle(OracleModel):
    """The oracle, lending the memory batches are cut into: left dirty from the last batch, as
    a reused shared-memory region is."""

    def __init__(self) -> None:
        super().__init__()
        self.lent: list[tuple[int, ...]] = []

    async def infer_cut(
        self, shape: tuple[int, ...], cut: Callable[[NDArray[np.uint8]], None]
    ) -> NDArray[np.float32]:
        self.lent.append(shape)
        region = np.full(shape, 255, np.uint8)  # what the last batch left, at its worst
        await asyncio.to_thread(cut, region)
        return await self.infer(region)


async def test_a_model_that_lends_its_memory_gets_the_slices_cut_into_it() -> None:
    image, seedlings, weeds = _scene(1100, 700)
    lending, plain = CuttingOracle(), OracleModel()
    lent = await SlicedDetector(lending, SliceParams(256, 0.25)).detect(image)
    copied = await SlicedDetector(plain, SliceParams(256, 0.25)).detect(image)
    assert lending.lent
    assert all(shape[1:] == (256, 256, 3) for shape in lending.lent)
    assert lent == copied
    assert (lent.counts["seedling"], lent.counts["weed"]) == (seedlings, weeds)


def test_slices_cut_by_the_image_edge_are_padded_with_zeros_whatever_the_buffer_held() -> None:
    image = np.arange(100 * 150 * 3, dtype=np.uint32).astype(np.uint8).reshape(100, 150, 3)
    boxes = [(0, 0, 64, 64), (100, 50, 150, 100)]  # the second: 50 × 50 of a 64 px slice
    batch = np.full((2, 64, 64, 3), 7, np.uint8)
    cut_into(batch, image, boxes)
    np.testing.assert_array_equal(batch[0], image[:64, :64])
    np.testing.assert_array_equal(batch[1, :50, :50], image[50:100, 100:150])
    assert not batch[1, 50:].any()
    assert not batch[1, :, 50:].any()
    np.testing.assert_array_equal(cut_batch(image, boxes, 64), batch)
