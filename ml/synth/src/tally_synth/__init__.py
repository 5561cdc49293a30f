"""Procedurally generated greenhouse-tray photos with exact ground truth."""

from tally_synth._dataset import (
    GROUND_TRUTH_FILE,
    PhotoSpec,
    jpeg_bytes,
    load_ground_truth,
    render,
    write_dataset,
)
from tally_synth._scene import LABELS, Annotation, Label, SynthPhoto, generate_photo, photo_rng

__all__ = [
    "GROUND_TRUTH_FILE",
    "LABELS",
    "Annotation",
    "Label",
    "PhotoSpec",
    "SynthPhoto",
    "generate_photo",
    "jpeg_bytes",
    "load_ground_truth",
    "photo_rng",
    "render",
    "write_dataset",
]
