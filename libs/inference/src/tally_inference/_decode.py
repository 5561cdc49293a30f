"""Turning the model's raw output into detections of one slice."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tally_inference._boxes import batched_nms


@dataclass(frozen=True, slots=True)
class SliceDetections:
    """Detections of one slice in slice pixels: boxes (N, 4), scores (N,), class ids (N,)."""

    boxes: NDArray[np.float32]
    scores: NDArray[np.float32]
    classes: NDArray[np.int64]

    def __len__(self) -> int:
        return len(self.scores)


def decode_slice(
    output: NDArray[np.float32],
    score_threshold: float,
    iou_threshold: float,
    valid_width: int | None = None,
    valid_height: int | None = None,
) -> SliceDetections:
    """Threshold and NMS one slice's output rows `[x1, y1, x2, y2, score_0, …, score_k]`.

    `valid_width`/`valid_height` clip boxes to the part of the slice that holds image pixels
    (a slice padded up to the model's input size); detections centred in the padding are dropped.
    """
    scores_all = output[:, 4:]
    classes = scores_all.argmax(axis=1)
    scores = scores_all[np.arange(len(output)), classes]
    keep = scores >= score_threshold
    boxes = output[keep, :4].copy()
    scores, classes = scores[keep], classes[keep]
    if valid_width is not None and valid_height is not None:
        centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
        centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (centre_x < valid_width) & (centre_y < valid_height)
        boxes, scores, classes = boxes[inside], scores[inside], classes[inside]
        np.clip(boxes[:, 0::2], 0, valid_width, out=boxes[:, 0::2])
        np.clip(boxes[:, 1::2], 0, valid_height, out=boxes[:, 1::2])
    kept = batched_nms(boxes, scores, classes.astype(np.int64), iou_threshold)
    return SliceDetections(
        boxes[kept].astype(np.float32),
        scores[kept].astype(np.float32),
        classes[kept].astype(np.int64),
    )
