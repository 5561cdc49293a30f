"""Camera and light conditions: each changes what it names, and ground truth stays exact."""

from __future__ import annotations

import io
import json
import statistics
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tally_synth import (
    CONDITIONS,
    GROUND_TRUTH_FILE,
    HELD_OUT,
    STANDARD,
    Conditions,
    PhotoSpec,
    generate_photo,
    photo_rng,
    render,
)
from tally_synth.cli import main

SIZE = (1600, 1200)


def _photo(conditions: Conditions, seed: int = 12) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    photo = generate_photo(photo_rng(seed, 0), *SIZE, conditions)
    return photo.image, [a.bbox for a in photo.annotations if a.label == "seedling"]


def _inner_spans(boxes: list[tuple[int, ...]]) -> list[int]:
    inner = [b for b in boxes if b[0] > 0 and b[1] > 0 and b[2] < SIZE[0] and b[3] < SIZE[1]]
    return [max(b[2] - b[0], b[3] - b[1]) for b in inner]


def test_the_standard_condition_is_the_photo_drawn_without_one() -> None:
    spec = PhotoSpec(3, 2, 960, 720)
    assert spec.conditions() == STANDARD
    assert render(spec) == render(PhotoSpec(3, 2, 960, 720, "standard"))
    plain = generate_photo(photo_rng(3, 2), 960, 720)
    assert np.array_equal(plain.image, generate_photo(photo_rng(3, 2), 960, 720, STANDARD).image)


def test_every_held_out_condition_keeps_its_boxes_on_plant_pixels() -> None:
    for name in HELD_OUT:
        conditions = PhotoSpec(21, 0, *SIZE, name).conditions()
        photo = generate_photo(photo_rng(21, 0), *SIZE, conditions)
        assert len(photo.annotations) > 20, name
        for a in photo.annotations:
            x1, y1, x2, y2 = a.bbox
            assert 0 <= x1 < x2 <= SIZE[0], (name, a)
            assert 0 <= y1 < y2 <= SIZE[1], (name, a)
            region = photo.image[y1:y2, x1:x2].astype(np.float32)
            # Leaves are greener than soil even in dim light; soil has green below red.
            greenness = (region[..., 1] - (region[..., 0] + region[..., 2]) / 2).max()
            assert greenness > 5, (name, a)


def test_pixel_scale_follows_camera_height() -> None:
    far = _inner_spans(_photo(Conditions(scale=0.6))[1])
    standard = _inner_spans(_photo(STANDARD)[1])
    near = _inner_spans(_photo(Conditions(scale=1.5))[1])
    assert len(far) > len(standard) > len(near)  # a higher camera sees more cells
    assert max(far) <= 0.6 * 135
    assert max(near) <= 1.5 * 135
    ratio = statistics.median(near) / statistics.median(far)
    assert 2.0 < ratio < 3.0  # 1.5 / 0.6 = 2.5


def test_a_turned_tray_turns_its_cells_but_not_the_plants() -> None:
    image, boxes = _photo(Conditions(rotation=10.0))
    _plain, plain_boxes = _photo(STANDARD)
    # Same plants (same random stream): as many, and the same sizes, in other places.
    assert len(boxes) == pytest.approx(len(plain_boxes), rel=0.1)
    assert sorted(b[2] - b[0] for b in boxes)[len(boxes) // 2] == pytest.approx(
        sorted(b[2] - b[0] for b in plain_boxes)[len(plain_boxes) // 2], abs=3
    )
    # The tray's straight edges are no longer axis-aligned: the strongest straight line in an
    # edge map leans by about the rotation.
    edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 40, 120)
    lines = cv2.HoughLines(edges, 1, np.pi / 360, 400)
    assert lines is not None
    angles = [np.degrees(theta) % 90 for theta in lines[:10, 0, 1]]
    leaning = [a for a in angles if 5 < a < 15 or 75 < a < 85]
    assert len(leaning) >= len(angles) // 2


def test_dim_and_warm_light_change_exposure_and_colour() -> None:
    plain = _photo(STANDARD)[0].astype(np.float32)
    dim = _photo(Conditions(light=0.4))[0].astype(np.float32)
    warm = _photo(Conditions(warmth=1.0))[0].astype(np.float32)
    assert dim.mean() / plain.mean() == pytest.approx(0.4, abs=0.05)

    def red_over_blue(image: np.ndarray) -> float:
        return float(image[..., 0].mean() / image[..., 2].mean())

    assert red_over_blue(warm) > 1.5 * red_over_blue(plain)


def test_soft_focus_removes_fine_detail() -> None:
    def detail(image: np.ndarray) -> float:
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return float(cv2.Laplacian(grey, cv2.CV_32F).var())

    sharp = detail(_photo(Conditions(blur=0.0))[0])
    soft = detail(_photo(Conditions(blur=3.0))[0])
    assert soft < sharp / 4


def test_heavy_jpeg_is_smaller_and_blockier_but_keeps_the_same_truth() -> None:
    spec = PhotoSpec(30, 1, *SIZE)
    plain, truth = render(spec)
    heavy_spec = PhotoSpec(30, 1, *SIZE, "jpeg")
    heavy, heavy_truth = render(heavy_spec)
    assert heavy_truth == truth  # only the encoding differs
    quality = heavy_spec.conditions().jpeg_quality
    assert quality is not None
    assert 12 <= quality <= 30
    assert len(heavy) < len(plain) / 2
    with Image.open(io.BytesIO(heavy)) as image:
        assert image.size == SIZE


def test_each_condition_draws_its_own_settings_reproducibly() -> None:
    for name in CONDITIONS:
        first = [PhotoSpec(5, i, 640, 480, name).conditions() for i in range(6)]
        assert first == [PhotoSpec(5, i, 640, 480, name).conditions() for i in range(6)]
    scales = [PhotoSpec(5, i, 640, 480, "near").conditions().scale for i in range(20)]
    assert all(1.25 <= s <= 1.5 for s in scales)
    assert len(set(scales)) == 20
    turns = [PhotoSpec(5, i, 640, 480, "rotated").conditions().rotation for i in range(20)]
    assert all(4 <= abs(t) <= 12 for t in turns)
    assert min(turns) < 0 < max(turns)
    mixed = [PhotoSpec(5, i, 640, 480, "mixed").conditions() for i in range(30)]
    assert STANDARD in mixed
    assert len(set(mixed)) > 15


def test_unknown_or_out_of_range_conditions_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown condition 'foggy'"):
        PhotoSpec(1, 0, 640, 480, "foggy")
    for bad in (
        {"scale": 0.1},
        {"light": 0.0},
        {"warmth": 2.0},
        {"blur": -1.0},
        {"jpeg_quality": 0},
    ):
        with pytest.raises(ValueError, match="is outside"):
            Conditions(**bad)


def test_cli_writes_a_condition_with_its_name_in_the_files(tmp_path: Path) -> None:
    out = tmp_path / "dim"
    args = [str(out), "--count", "2", "--seed", "4", "--size", "640x480", "--workers", "1"]
    assert main([*args, "--condition", "dim"]) == 0
    truth = json.loads((out / GROUND_TRUTH_FILE).read_text())
    assert sorted(truth) == ["tray_s4_dim_0000.jpg", "tray_s4_dim_0001.jpg"]
    with pytest.raises(SystemExit):
        main([*args, "--condition", "foggy"])
