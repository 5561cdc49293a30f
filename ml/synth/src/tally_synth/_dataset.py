"""Writing generated photos to disk: JPEG files plus ground_truth.json."""

from __future__ import annotations

import io
import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from tally_synth._conditions import STANDARD, Conditions, condition, conditions_rng
from tally_synth._scene import Annotation, SynthPhoto, generate_photo, photo_rng

GROUND_TRUTH_FILE = "ground_truth.json"


@dataclass(frozen=True, slots=True)
class PhotoSpec:
    seed: int
    index: int
    width: int
    height: int
    condition: str = "standard"  # a name in CONDITIONS

    def __post_init__(self) -> None:
        condition(self.condition)  # refuses an unknown name

    @property
    def filename(self) -> str:
        if self.condition == "standard":
            return f"tray_s{self.seed}_{self.index:04d}.jpg"
        return f"tray_s{self.seed}_{self.condition}_{self.index:04d}.jpg"

    def conditions(self) -> Conditions:
        """This photo's camera and light, drawn from its condition's range."""
        return condition(self.condition).sample(conditions_rng(self.seed, self.index))


def jpeg_bytes(
    photo: SynthPhoto, rng: np.random.Generator, conditions: Conditions = STANDARD
) -> bytes:
    """Encode as a camera would: JPEG at a quality that varies from photo to photo."""
    buffer = io.BytesIO()
    quality = int(rng.integers(72, 93))
    if conditions.jpeg_quality is not None:
        quality = conditions.jpeg_quality
    PILImage.fromarray(photo.image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def render(spec: PhotoSpec) -> tuple[bytes, tuple[Annotation, ...]]:
    """The JPEG bytes and ground truth of one photo; a pure function of the spec."""
    rng = photo_rng(spec.seed, spec.index)
    conditions = spec.conditions()
    photo = generate_photo(rng, spec.width, spec.height, conditions)
    return jpeg_bytes(photo, rng, conditions), photo.annotations


def _write_one(spec: PhotoSpec, out_dir: Path) -> tuple[str, list[dict[str, object]]]:
    data, annotations = render(spec)
    (out_dir / spec.filename).write_bytes(data)
    return spec.filename, [a.to_json() for a in annotations]


def write_dataset(
    out_dir: Path,
    count: int,
    seed: int,
    width: int = 4000,
    height: int = 3000,
    workers: int = 1,
    condition: str = "standard",
) -> dict[str, list[dict[str, object]]]:
    """Write `count` photos and their ground truth; the same arguments give the same bytes."""
    if count < 1:
        raise ValueError("count must be at least 1")
    out_dir.mkdir(parents=True, exist_ok=True)
    specs = [PhotoSpec(seed, i, width, height, condition) for i in range(count)]
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rows = list(pool.map(_write_one, specs, [out_dir] * count))
    else:
        rows = [_write_one(spec, out_dir) for spec in specs]
    truth = dict(rows)
    (out_dir / GROUND_TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n")
    return truth


def load_ground_truth(directory: Path) -> dict[str, list[Annotation]]:
    raw = json.loads((directory / GROUND_TRUTH_FILE).read_text())
    return {
        name: [Annotation(tuple(obj["bbox"]), obj["label"]) for obj in objects]
        for name, objects in raw.items()
    }
