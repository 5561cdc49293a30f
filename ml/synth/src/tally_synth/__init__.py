"""Procedurally generated greenhouse-tray photos with exact ground truth."""

from tally_synth._conditions import CONDITIONS, HELD_OUT, STANDARD, Condition, Conditions
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
    "CONDITIONS",
    "GROUND_TRUTH_FILE",
    "HELD_OUT",
    "LABELS",
    "STANDARD",
    "Annotation",
    "Condition",
    "Conditions",
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
