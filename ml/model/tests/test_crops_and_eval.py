"""Training crops (with scale augmentation) and the evaluation's per-condition slice overlap."""

from __future__ import annotations

import numpy as np
import pytest

from tally_model.data import Photo, random_crop
from tally_model.evaluate import overlap_for


def _photo_with_one_box() -> Photo:
    image = np.zeros((1000, 1000, 3), np.uint8)
    image[400:480, 420:520] = (60, 200, 60)  # one 100×80 plant
    return Photo(image, np.array([[420, 400, 520, 480]], np.float32), np.array([0], np.int64))


def _whole_box(crop_boxes: np.ndarray, size: int) -> tuple[float, float] | None:
    """The box's width and height when the crop holds it whole (not cut by the crop's edge)."""
    if not len(crop_boxes):
        return None
    (x1, y1, x2, y2), *_ = crop_boxes
    if min(x1, y1) <= 0 or max(x2, y2) >= size:
        return None
    return float(x2 - x1), float(y2 - y1)


def test_without_zoom_a_crop_keeps_the_pixel_scale() -> None:
    photo = _photo_with_one_box()
    for seed in range(20):
        crop = random_crop(photo, 256, np.random.default_rng(seed), focus_label=0)
        assert crop.image.shape == (256, 256, 3)
        if whole := _whole_box(crop.boxes, 256):
            assert sorted(whole) == [80.0, 100.0]  # a flip or a quarter turn may swap them


def test_zoom_resizes_the_crop_and_its_boxes_together() -> None:
    photo = _photo_with_one_box()
    spans = set()
    for seed in range(60):
        crop = random_crop(photo, 256, np.random.default_rng(seed), focus_label=0, zoom=1.5)
        assert crop.image.shape == (256, 256, 3)
        if not (whole := _whole_box(crop.boxes, 256)):
            continue
        long, short = sorted(whole, reverse=True)
        factor = long / 100.0
        spans.add(round(factor, 2))
        assert 1 / 1.5 - 0.01 <= factor <= 1.5 + 0.01
        assert short == pytest.approx(80.0 * factor, abs=1.0)
        # The box still covers the plant's pixels in the resized image, and no more.
        x1, y1, x2, y2 = crop.boxes[0]
        inside = crop.image[int(y1) + 2 : int(y2) - 2, int(x1) + 2 : int(x2) - 2, 1]
        assert inside.size
        assert inside.min() > 150
        green = crop.image[..., 1] > 150
        assert green.sum() <= (x2 - x1 + 2) * (y2 - y1 + 2)
    assert 1.0 in spans  # half the crops are not resized
    assert len(spans) > 10  # the others are, by many factors


def test_the_overlap_holds_each_conditions_largest_object() -> None:
    assert overlap_for("standard", 512, 0.25) == 0.25  # 120 px ≤ 128 px
    assert overlap_for("far", 512, 0.25) == 0.25  # a lower bound is never lowered
    assert overlap_for("near", 512, 0.25) == 0.4  # 180 px needs more than 0.35 · 512 = 179
    assert overlap_for("standard", 256, 0.1) == 0.5
    for condition in ("standard", "near", "far", "jpeg"):
        for size in (256, 512, 640, 1024):
            assert overlap_for(condition, size, 0.0) * size >= 120 * (
                1.5 if condition == "near" else 0.75 if condition == "far" else 1.0
            )
