"""The generator is deterministic and its ground truth matches what it drew."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tally_synth import GROUND_TRUTH_FILE, LABELS, PhotoSpec, generate_photo, photo_rng, render
from tally_synth.cli import main

SMALL = (960, 720)


def _greenness(image: np.ndarray, box: tuple[int, int, int, int]) -> float:
    x1, y1, x2, y2 = box
    region = image[y1:y2, x1:x2].astype(np.float32)
    return float((region[..., 1] - (region[..., 0] + region[..., 2]) / 2).max())


def test_same_seed_gives_identical_photos_and_truth() -> None:
    first = render(PhotoSpec(3, 0, *SMALL))
    second = render(PhotoSpec(3, 0, *SMALL))
    assert first == second


def test_different_seeds_or_indices_give_different_photos() -> None:
    base = render(PhotoSpec(3, 0, *SMALL))
    assert render(PhotoSpec(4, 0, *SMALL))[0] != base[0]
    assert render(PhotoSpec(3, 1, *SMALL))[0] != base[0]


def test_boxes_lie_inside_the_image_and_are_not_empty() -> None:
    for index in range(3):
        photo = generate_photo(photo_rng(11, index), *SMALL)
        assert photo.image.shape == (SMALL[1], SMALL[0], 3)
        for a in photo.annotations:
            x1, y1, x2, y2 = a.bbox
            assert 0 <= x1 < x2 <= SMALL[0]
            assert 0 <= y1 < y2 <= SMALL[1]
            assert a.label in LABELS


def test_seedlings_are_20_to_120_pixels_across_unless_cut_by_the_edge() -> None:
    photo = generate_photo(photo_rng(5, 0), 2000, 1500)
    seedlings = [a.bbox for a in photo.annotations if a.label == "seedling"]
    assert len(seedlings) > 40
    inner = [b for b in seedlings if b[0] > 0 and b[1] > 0 and b[2] < 2000 and b[3] < 1500]
    spans = [max(b[2] - b[0], b[3] - b[1]) for b in inner]
    assert min(spans) >= 10  # a 20 px rosette seen edge-on is narrower on one axis
    assert max(spans) <= 135  # 120 px plus the supersampled rim and patch rounding


def test_every_labelled_box_holds_plant_pixels() -> None:
    photo = generate_photo(photo_rng(8, 0), *SMALL)
    assert photo.annotations
    for a in photo.annotations:
        assert _greenness(photo.image, a.bbox) > 15, a


def test_a_set_of_photos_has_both_labels() -> None:
    labels = set()
    for index in range(6):
        photo = generate_photo(photo_rng(2, index), 1600, 1200)
        labels |= {a.label for a in photo.annotations}
    assert labels == set(LABELS)


def test_cli_writes_jpegs_and_ground_truth(tmp_path: Path) -> None:
    out = tmp_path / "photos"
    assert (
        main([str(out), "--count", "2", "--seed", "9", "--size", "800x600", "--workers", "1"]) == 0
    )
    truth = json.loads((out / GROUND_TRUTH_FILE).read_text())
    assert sorted(truth) == sorted(p.name for p in out.glob("*.jpg"))
    for name, objects in truth.items():
        with Image.open(out / name) as image:
            assert image.format == "JPEG"
            assert image.size == (800, 600)
        assert objects
        assert all(set(o) == {"bbox", "label"} and len(o["bbox"]) == 4 for o in objects)


def test_cli_refuses_a_malformed_size(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main([str(tmp_path), "--size", "big"])
