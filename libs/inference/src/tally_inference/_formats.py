"""The graph layouts Tally serves, one small adapter each: what a layout's input takes and how
its output becomes the rows every other step reads, `(B, N, 4 + C)` of `x1, y1, x2, y2` in slice
pixels followed by one score per class.

- `tally`: Tally's own graph. uint8 slices `(B, H, W, 3)`, RGB, in; rows out, as they are.
- `yolov8` (also YOLO11, Ultralytics' detect export): float32 `(B, 3, H, W)`, RGB scaled to 0-1,
  in; `(B, 4 + C, N)` out: `cx, cy, w, h` in input pixels, then C class scores (no objectness).
- `yolov5`: the same input; `(B, N, 5 + C)` out: `cx, cy, w, h, objectness`, then C class
  scores, each a probability given an object (a detection's score is their product).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Final, Literal, get_args

import numpy as np
from numpy.typing import NDArray

ModelFormat = Literal["tally", "yolov8", "yolov5"]
FORMATS: Final[tuple[ModelFormat, ...]] = get_args(ModelFormat)


class Layout(ABC):
    """One format's input and output, as the client sees them."""

    format: ClassVar[ModelFormat]
    # Triton's name of the input's element type, and numpy's.
    input_datatype: ClassVar[Literal["UINT8", "FP32"]]
    input_dtype: ClassVar[type[np.generic]]
    channels_first: ClassVar[bool]
    # Values in an output row before the class scores.
    leading: ClassVar[int]
    # Which axis of the output `(B, ·, ·)` holds a row's values (the other one: the candidates).
    row_axis: ClassVar[int]

    def input_shape(self, batch: int, height: int, width: int) -> tuple[int, int, int, int]:
        if self.channels_first:
            return (batch, 3, height, width)
        return (batch, height, width, 3)

    @abstractmethod
    def prepare(self, slices: NDArray[np.uint8]) -> NDArray[Any]:
        """What the graph's input takes, for uint8 RGB slices `(B, H, W, 3)`."""

    @abstractmethod
    def rows(self, output: NDArray[np.float32]) -> NDArray[np.float32]:
        """The graph's output as rows `(B, N, 4 + C)`: `x1, y1, x2, y2`, then class scores."""

    def classes(self, output_shape: tuple[int | None, ...]) -> int | None:
        """How many classes an output of this shape scores (None where the dimension is not
        known); raises ValueError when the shape cannot be this layout's."""
        if len(output_shape) != 3:
            raise ValueError(
                f"a {self.format} model's output has 3 dimensions, not {len(output_shape)}"
            )
        values = output_shape[self.row_axis]
        if values is None:
            return None
        if values <= self.leading:
            raise ValueError(
                f"a {self.format} model's output rows hold {self.leading} values before the "
                f"class scores, but dimension {self.row_axis} is {values}"
            )
        return values - self.leading

    def _checked(self, output: NDArray[np.float32]) -> NDArray[np.float32]:
        self.classes(tuple(int(d) for d in output.shape))
        return np.asarray(output, dtype=np.float32)


class TallyLayout(Layout):
    format = "tally"
    input_datatype = "UINT8"
    input_dtype = np.uint8
    channels_first = False
    leading = 4
    row_axis = 2

    def prepare(self, slices: NDArray[np.uint8]) -> NDArray[Any]:
        return slices

    def rows(self, output: NDArray[np.float32]) -> NDArray[np.float32]:
        return self._checked(output)


def _corners(centred: NDArray[np.float32]) -> NDArray[np.float32]:
    """`cx, cy, w, h` → `x1, y1, x2, y2` along the last axis."""
    half = centred[..., 2:4] / 2
    return np.concatenate([centred[..., 0:2] - half, centred[..., 0:2] + half], axis=-1)


def _scaled_channels_first(slices: NDArray[np.uint8]) -> NDArray[np.float32]:
    planes = np.empty((slices.shape[0], 3, *slices.shape[1:3]), np.float32)
    np.multiply(slices.transpose(0, 3, 1, 2), np.float32(1 / 255), out=planes)
    return planes


class YoloV8Layout(Layout):
    format = "yolov8"
    input_datatype = "FP32"
    input_dtype = np.float32
    channels_first = True
    leading = 4
    row_axis = 1

    def prepare(self, slices: NDArray[np.uint8]) -> NDArray[Any]:
        return _scaled_channels_first(slices)

    def rows(self, output: NDArray[np.float32]) -> NDArray[np.float32]:
        candidates = self._checked(output).transpose(0, 2, 1)
        return np.concatenate([_corners(candidates[..., :4]), candidates[..., 4:]], axis=-1)


class YoloV5Layout(Layout):
    format = "yolov5"
    input_datatype = "FP32"
    input_dtype = np.float32
    channels_first = True
    leading = 5
    row_axis = 2

    def prepare(self, slices: NDArray[np.uint8]) -> NDArray[Any]:
        return _scaled_channels_first(slices)

    def rows(self, output: NDArray[np.float32]) -> NDArray[np.float32]:
        candidates = self._checked(output)
        scores = candidates[..., 5:] * candidates[..., 4:5]
        return np.concatenate([_corners(candidates[..., :4]), scores], axis=-1)


LAYOUTS: Final[dict[ModelFormat, Layout]] = {
    layout.format: layout for layout in (TallyLayout(), YoloV8Layout(), YoloV5Layout())
}


def layout_of(model_format: str) -> Layout:
    """The adapter of `model_format`; ValueError naming the known ones otherwise."""
    try:
        return LAYOUTS[model_format]  # type: ignore[index]
    except KeyError:
        raise ValueError(
            f"unknown model format {model_format!r}: one of {', '.join(FORMATS)}"
        ) from None
