"""Sliced detection: cut a photo into SAHI slices, run them through Triton in batches, merge.

The three steps are separate so that services can split them: the detector runs
`infer_slices` on a chunk of slices, the orchestrator runs `merge_detections` once every chunk of
a photo is back. `SlicedDetector.detect` chains them for one process.
"""

from __future__ import annotations

import asyncio
import functools
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from sahi.postprocess.backends import set_postprocess_backend
from sahi.postprocess.combine import GreedyNMMPostprocess, NMSPostprocess
from sahi.prediction import ObjectPrediction

from tally_inference._decode import decode_slice
from tally_inference._image import decode_image
from tally_inference._slicing import Box, SliceParams, plan_slices

LABELS: tuple[str, ...] = ("seedling", "weed")

# Tally merges with SAHI's pure-numpy backend: deterministic, and never pulls in torch.
set_postprocess_backend("numpy")


@dataclass(frozen=True, slots=True)
class DetectParams:
    confidence: float = 0.35  # score threshold per slice
    nms_iou: float = 0.5  # NMS inside one slice
    merge: Literal["GREEDYNMM", "NMS"] = "GREEDYNMM"  # across slices (SAHI postprocess)
    merge_metric: Literal["IOS", "IOU"] = "IOS"
    merge_threshold: float = 0.6
    # Drop a detection that touches an inner slice edge: the object is cut there, and a neighbour
    # slice sees it whole, provided the slice overlap in pixels is at least the largest object.
    # SAHI's greedy merge compares each box with its keeper only, so a cut box (a sliver along
    # one edge) can escape a keeper that is itself cut along another edge and count twice.
    drop_edge_cut: bool = True
    edge_margin: float = 2.0
    batch_size: int = 8  # slices per Triton request
    max_in_flight: int = 2  # Triton requests outstanding at once

    def __post_init__(self) -> None:
        if not 0.0 < self.confidence < 1.0:
            raise ValueError("confidence must be in (0, 1)")
        if self.batch_size < 1 or self.max_in_flight < 1:
            raise ValueError("batch_size and max_in_flight must be at least 1")


@dataclass(frozen=True, slots=True)
class Detection:
    bbox: tuple[float, float, float, float]  # x1, y1, x2, y2 in original-image pixels
    score: float
    label: str

    def to_json(self) -> dict[str, object]:
        return {
            "bbox": [round(v, 1) for v in self.bbox],
            "score": round(self.score, 4),
            "label": self.label,
        }


@dataclass(frozen=True, slots=True)
class SliceResult:
    """Detections of one slice, already shifted to full-image pixels."""

    slice_box: Box
    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    classes: NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class DetectionResult:
    width: int
    height: int
    slices: int
    detections: tuple[Detection, ...]
    labels: tuple[str, ...] = LABELS  # the model's: the counts have one per label

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(d.label for d in self.detections)
        return {label: found.get(label, 0) for label in self.labels}


class InferenceModel(Protocol):
    """Something that runs the model on a uint8 batch (B, H, W, 3) → rows (B, N, 4 + C)."""

    async def infer(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]: ...


@runtime_checkable
class CuttingModel(InferenceModel, Protocol):
    """A model that lends the memory a batch is sent from, to cut the slices straight into
    (TritonModel: a shared-memory region Triton reads)."""

    async def infer_cut(
        self, shape: tuple[int, ...], cut: Callable[[NDArray[np.uint8]], None]
    ) -> NDArray[np.float32]: ...


def cut_into(batch: NDArray[np.uint8], image: NDArray[np.uint8], boxes: Sequence[Box]) -> None:
    """Copy the slices into `batch` (B, size, size, 3), whatever it held: a slice cut by the
    image edge is padded with zeros."""
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        height, width = y2 - y1, x2 - x1
        batch[i, :height, :width] = image[y1:y2, x1:x2]
        batch[i, height:] = 0
        batch[i, :height, width:] = 0


def cut_batch(image: NDArray[np.uint8], boxes: Sequence[Box], size: int) -> NDArray[np.uint8]:
    """Copy the slices into one (B, size, size, 3) array, padding slices cut by the image edge."""
    batch = np.empty((len(boxes), size, size, 3), np.uint8)
    cut_into(batch, image, boxes)
    return batch


def decode_batch(
    output: NDArray[np.float32],
    boxes: Sequence[Box],
    params: DetectParams,
    image_size: tuple[int, int],
) -> list[SliceResult]:
    """Per-slice threshold and NMS, cut-object filtering, and the shift to image pixels."""
    width, height = image_size
    results = []
    for rows, box in zip(output, boxes, strict=True):
        x1, y1, x2, y2 = box
        found = decode_slice(rows, params.confidence, params.nms_iou, x2 - x1, y2 - y1)
        shifted = found.boxes + np.array([x1, y1, x1, y1], np.float32)
        keep = np.ones(len(shifted), bool)
        if params.drop_edge_cut:
            m = params.edge_margin
            keep &= ~((shifted[:, 0] <= x1 + m) & (x1 > 0))
            keep &= ~((shifted[:, 1] <= y1 + m) & (y1 > 0))
            keep &= ~((shifted[:, 2] >= x2 - m) & (x2 < width))
            keep &= ~((shifted[:, 3] >= y2 - m) & (y2 < height))
        results.append(SliceResult(box, shifted[keep], found.scores[keep], found.classes[keep]))
    return results


def merge_detections(
    parts: Sequence[SliceResult],
    width: int,
    height: int,
    params: DetectParams,
    labels: Sequence[str] = LABELS,
) -> DetectionResult:
    """Merge overlapping predictions from neighbouring slices with SAHI's postprocess. Blocking."""
    predictions = [
        ObjectPrediction(
            bbox=[float(v) for v in box],
            category_id=int(cls),
            category_name=labels[int(cls)],
            score=float(score),
            full_shape=[height, width],
        )
        for part in parts
        for box, score, cls in zip(part.boxes, part.scores, part.classes, strict=True)
    ]
    postprocess = GreedyNMMPostprocess if params.merge == "GREEDYNMM" else NMSPostprocess
    merged = (
        postprocess(
            match_threshold=params.merge_threshold,
            match_metric=params.merge_metric,
            class_agnostic=False,
        )(predictions)
        if predictions
        else []
    )
    detections = sorted(
        (
            Detection(
                tuple(float(v) for v in p.bbox.to_xyxy()),  # type: ignore[arg-type]
                float(p.score.value),
                str(p.category.name),
            )
            for p in merged
        ),
        key=lambda d: (-d.score, d.bbox),
    )
    return DetectionResult(
        width, height, len({p.slice_box for p in parts}), tuple(detections), tuple(labels)
    )


class SlicedDetector:
    def __init__(
        self,
        model: InferenceModel,
        slice_params: SliceParams | None = None,
        params: DetectParams | None = None,
    ) -> None:
        self.model = model
        self.slice_params = slice_params or SliceParams()
        self.params = params or DetectParams()

    async def detect_bytes(self, data: bytes) -> DetectionResult:
        """Decode (raising `ImageError` for bad input) and detect."""
        image = await asyncio.to_thread(decode_image, data)
        return await self.detect(image)

    async def detect(self, image: NDArray[np.uint8]) -> DetectionResult:
        height, width = image.shape[:2]
        boxes = plan_slices(width, height, self.slice_params)
        parts = await self.infer_slices(image, boxes)
        return await asyncio.to_thread(merge_detections, parts, width, height, self.params)

    async def infer_slices(
        self,
        image: NDArray[np.uint8],
        boxes: Sequence[Box],
        on_batch: Callable[[int], Awaitable[None]] | None = None,
    ) -> list[SliceResult]:
        """Detections of each slice in `boxes`, in order.

        Batches of `batch_size` slices go to the model with up to `max_in_flight` requests
        outstanding, so cutting and decoding one batch overlaps the model's work on another.
        `on_batch(slices_done)` is awaited after each batch completes (for progress events).
        """
        height, width = image.shape[:2]
        size = self.slice_params.slice_size
        step = self.params.batch_size
        groups = [list(boxes[i : i + step]) for i in range(0, len(boxes), step)]
        gate = asyncio.Semaphore(self.params.max_in_flight)
        done = 0

        async def run(group: list[Box]) -> list[SliceResult]:
            nonlocal done
            async with gate:
                if isinstance(self.model, CuttingModel):
                    cut = functools.partial(cut_into, image=image, boxes=group)
                    output = await self.model.infer_cut((len(group), size, size, 3), cut)
                else:
                    batch = await asyncio.to_thread(cut_batch, image, group, size)
                    output = await self.model.infer(batch)
            results = await asyncio.to_thread(
                decode_batch, output, group, self.params, (width, height)
            )
            done += len(group)
            if on_batch is not None:
                await on_batch(done)
            return results

        tasks = [asyncio.create_task(run(group)) for group in groups]
        try:
            chunks = await asyncio.gather(*tasks)
        except BaseException:
            # One failed batch fails the call: stop the others instead of leaving them running.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return [result for chunk in chunks for result in chunk]
