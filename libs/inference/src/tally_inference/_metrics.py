"""Detection quality: average precision at an IoU threshold, and count error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from tally_inference._boxes import iou_matrix


@dataclass(frozen=True, slots=True)
class ImageEval:
    """One image's predictions and truth for one class."""

    pred_boxes: NDArray[np.float32]
    pred_scores: NDArray[np.float32]
    true_boxes: NDArray[np.float32]


def average_precision(images: Sequence[ImageEval], iou_threshold: float = 0.5) -> float:
    """VOC/COCO-style AP (all-point interpolation) over a set of images for one class."""
    total_true = sum(len(im.true_boxes) for im in images)
    if total_true == 0:
        return float("nan")
    scores: list[NDArray[np.float32]] = []
    hits: list[NDArray[np.bool_]] = []
    for im in images:
        order = np.argsort(-im.pred_scores, kind="stable")
        boxes = im.pred_boxes[order]
        matched = np.zeros(len(im.true_boxes), bool)
        hit = np.zeros(len(boxes), bool)
        if len(boxes) and len(im.true_boxes):
            ious = iou_matrix(boxes, im.true_boxes)
            for i in range(len(boxes)):
                candidates = np.where(~matched, ious[i], -1.0)
                j = int(candidates.argmax())
                if candidates[j] >= iou_threshold:
                    matched[j] = True
                    hit[i] = True
        scores.append(im.pred_scores[order])
        hits.append(hit)
    all_scores = np.concatenate(scores) if scores else np.zeros(0, np.float32)
    all_hits = np.concatenate(hits) if hits else np.zeros(0, bool)
    order = np.argsort(-all_scores, kind="stable")
    tp = np.cumsum(all_hits[order])
    fp = np.cumsum(~all_hits[order])
    recall = tp / total_true
    precision = tp / np.maximum(tp + fp, 1)
    # Precision envelope, then area under the stepwise precision-recall curve.
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[1.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def count_error(predicted: int, true: int) -> float:
    """|predicted − true| / true; 0 when both are 0, infinite when only the truth is 0."""
    if true == 0:
        return 0.0 if predicted == 0 else float("inf")
    return abs(predicted - true) / true
