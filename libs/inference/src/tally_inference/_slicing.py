"""The slice plan: which windows of a photo the model looks at (SAHI's geometry)."""

from __future__ import annotations

from dataclasses import dataclass

from sahi.slicing import get_slice_bboxes

MODEL_MULTIPLE = 32  # the network downsamples by 32: slice sides must be multiples of it


@dataclass(frozen=True, slots=True)
class SliceParams:
    slice_size: int = 512
    overlap: float = 0.25

    def __post_init__(self) -> None:
        if self.slice_size < MODEL_MULTIPLE or self.slice_size % MODEL_MULTIPLE:
            raise ValueError(f"slice_size must be a positive multiple of {MODEL_MULTIPLE}")
        if not 0.0 <= self.overlap < 0.9:
            raise ValueError("overlap must be in [0, 0.9)")


Box = tuple[int, int, int, int]


def plan_slices(width: int, height: int, params: SliceParams) -> list[Box]:
    """Slice windows `(x1, y1, x2, y2)` covering the photo; each at most slice_size on a side."""
    boxes = get_slice_bboxes(
        image_height=height,
        image_width=width,
        slice_height=params.slice_size,
        slice_width=params.slice_size,
        auto_slice_resolution=False,
        overlap_height_ratio=params.overlap,
        overlap_width_ratio=params.overlap,
    )
    unique = dict.fromkeys((int(a), int(b), int(c), int(d)) for a, b, c, d in boxes)
    return list(unique)
