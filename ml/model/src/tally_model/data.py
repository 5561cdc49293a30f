"""Training crops cut from generated photos, with boxes clipped to each crop."""

from __future__ import annotations

import io
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tally_inference import LABELS
from tally_synth import PhotoSpec, render

# A box cut by the crop edge stays a target if at least this share of it is inside the crop; below
# IGNORE_BELOW it is dropped; in between it is neither a target nor background.
KEEP_FRACTION = 0.6
IGNORE_BELOW = 0.25


@dataclass(frozen=True, slots=True)
class Photo:
    image: NDArray[np.uint8]  # H×W×3 as decoded from the JPEG the generator wrote
    boxes: NDArray[np.float32]  # (M, 4)
    labels: NDArray[np.int64]  # (M,)


@dataclass(frozen=True, slots=True)
class Crop:
    image: NDArray[np.uint8]
    boxes: NDArray[np.float32]
    labels: NDArray[np.int64]
    ignore: NDArray[np.float32]  # (K, 4) regions without loss


def _photo(spec: PhotoSpec) -> Photo:
    data, annotations = render(spec)
    image = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    boxes = np.array([a.bbox for a in annotations], np.float32).reshape(-1, 4)
    labels = np.array([LABELS.index(a.label) for a in annotations], np.int64)
    return Photo(image, boxes, labels)


def make_photos(
    seed: int, count: int, width: int, height: int, workers: int = 2, condition: str = "standard"
) -> list[Photo]:
    specs = [PhotoSpec(seed, i, width, height, condition) for i in range(count)]
    if workers <= 1:
        return [_photo(s) for s in specs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_photo, specs))


def random_crop(
    photo: Photo,
    size: int,
    rng: np.random.Generator,
    focus_label: int | None = None,
    zoom: float = 1.0,
) -> Crop:
    """A random square crop with a random flip and quarter turn (the camera looks straight down).

    With `focus_label`, the crop is placed around a random object of that class when the photo
    has one: weeds are a few percent of the objects, and would otherwise be rarely seen. With
    `zoom` above 1, half the crops are resized by a factor drawn log-uniformly from 1/zoom to
    zoom: a square of size/factor pixels is cut and resized to size, its boxes with it.
    """
    height, width = photo.image.shape[:2]
    factor = 1.0
    if zoom > 1.0 and rng.random() < 0.5:
        factor = float(np.exp(rng.uniform(-np.log(zoom), np.log(zoom))))
    span = min(round(size / factor), width, height)  # the square cut from the photo
    x0 = int(rng.integers(0, width - span + 1))
    y0 = int(rng.integers(0, height - span + 1))
    candidates = np.flatnonzero(photo.labels == (-1 if focus_label is None else focus_label))
    if len(candidates):
        x1, y1, x2, y2 = photo.boxes[int(rng.choice(candidates))]
        cx = (x1 + x2) / 2 + rng.uniform(-span / 3, span / 3)
        cy = (y1 + y2) / 2 + rng.uniform(-span / 3, span / 3)
        x0 = int(np.clip(cx - span / 2, 0, width - span))
        y0 = int(np.clip(cy - span / 2, 0, height - span))
    image = photo.image[y0 : y0 + span, x0 : x0 + span]
    boxes = photo.boxes - np.array([x0, y0, x0, y0], np.float32)
    if span != size:
        shrink = span > size
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        image = np.asarray(cv2.resize(image, (size, size), interpolation=interpolation), np.uint8)
        boxes = boxes * np.float32(size / span)
    clipped = np.clip(boxes, 0, size)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    visible = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0, None), axis=1)
    fraction = visible / np.maximum(area, 1.0)
    keep = fraction >= KEEP_FRACTION
    ignore = (fraction >= IGNORE_BELOW) & ~keep
    crop = Crop(image, clipped[keep], photo.labels[keep], clipped[ignore])
    return _augment(crop, size, rng)


def _augment(crop: Crop, size: int, rng: np.random.Generator) -> Crop:
    image, boxes, ignore = crop.image, crop.boxes, crop.ignore
    if rng.random() < 0.5:  # horizontal flip
        image = image[:, ::-1]
        boxes = _flip_x(boxes, size)
        ignore = _flip_x(ignore, size)
    turns = int(rng.integers(0, 4))
    for _ in range(turns):  # rotate 90° counter-clockwise: (x, y) → (y, size − x)
        image = np.rot90(image)
        boxes = _rot90(boxes, size)
        ignore = _rot90(ignore, size)
    return Crop(np.ascontiguousarray(image), boxes, crop.labels, ignore)


def _flip_x(boxes: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    return np.stack([size - boxes[:, 2], boxes[:, 1], size - boxes[:, 0], boxes[:, 3]], axis=1)


def _rot90(boxes: NDArray[np.float32], size: int) -> NDArray[np.float32]:
    return np.stack([boxes[:, 1], size - boxes[:, 2], boxes[:, 3], size - boxes[:, 0]], axis=1)
