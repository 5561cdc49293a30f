"""Box arithmetic shared by the client, the evaluation and training: numpy only, no torch."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Boxes = NDArray[np.float32]  # (N, 4) x1, y1, x2, y2


def iou_matrix(a: Boxes, b: Boxes) -> NDArray[np.float32]:
    """Intersection over union of every box in `a` with every box in `b`: (len(a), len(b))."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.asarray(inter / np.maximum(union, 1e-9), np.float32)


def nms(boxes: Boxes, scores: NDArray[np.float32], iou_threshold: float) -> NDArray[np.intp]:
    """Indices of the boxes that greedy non-maximum suppression keeps, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while order.size:
        best = int(order[0])
        keep.append(best)
        if order.size == 1:
            break
        rest = order[1:]
        overlap = iou_matrix(boxes[best : best + 1], boxes[rest])[0]
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def batched_nms(
    boxes: Boxes, scores: NDArray[np.float32], classes: NDArray[np.int64], iou_threshold: float
) -> NDArray[np.intp]:
    """NMS within each class: boxes of different classes never suppress each other."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.intp)
    # Shift each class into its own region of the plane so one NMS pass handles all classes.
    offset = (float(boxes.max()) + 1.0) * classes.astype(np.float32)[:, None]
    return nms(boxes + offset, scores, iou_threshold)
