from __future__ import annotations

import math

import numpy as np
import pytest

from tally_inference import (
    ImageEval,
    SliceParams,
    average_precision,
    batched_nms,
    count_error,
    decode_slice,
    iou_matrix,
    nms,
    plan_slices,
)

B = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [100, 100, 110, 110]], np.float32)


def test_iou_of_identical_disjoint_and_half_overlapping_boxes() -> None:
    ious = iou_matrix(B, B)
    assert ious[0, 0] == pytest.approx(1.0)
    assert ious[0, 2] == 0.0
    assert ious[0, 1] == pytest.approx(50 / 150)


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    scores = np.array([0.5, 0.9, 0.7], np.float32)
    assert nms(B, scores, 0.3).tolist() == [1, 2]
    assert nms(B, scores, 0.4).tolist() == [1, 2, 0]


def test_boxes_of_different_classes_never_suppress_each_other() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert sorted(batched_nms(boxes, scores, np.array([0, 1]), 0.5).tolist()) == [0, 1]
    assert batched_nms(boxes, scores, np.array([0, 0]), 0.5).tolist() == [0]


def test_decode_thresholds_and_drops_detections_centred_in_padding() -> None:
    rows = np.array(
        [
            [10, 10, 30, 30, 0.9, 0.1],  # seedling
            [12, 10, 31, 30, 0.8, 0.1],  # duplicate: suppressed
            [40, 40, 60, 60, 0.1, 0.2],  # below threshold
            [90, 90, 130, 130, 0.95, 0.0],  # centre beyond the valid 100×100 area
            [50, 80, 70, 105, 0.1, 0.7],  # weed, clipped at the valid edge
        ],
        np.float32,
    )
    found = decode_slice(rows, 0.3, 0.5, valid_width=100, valid_height=100)
    assert found.classes.tolist() == [0, 1]
    assert found.boxes.tolist() == [[10, 10, 30, 30], [50, 80, 70, 100]]


def test_perfect_predictions_have_ap_one_and_misses_lower_it() -> None:
    truth = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    perfect = ImageEval(truth, np.array([0.9, 0.8], np.float32), truth)
    assert average_precision([perfect]) == pytest.approx(1.0)
    half = ImageEval(truth[:1], np.array([0.9], np.float32), truth)
    assert average_precision([half]) == pytest.approx(0.5)
    wrong_first = ImageEval(
        np.array([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32),
        np.array([0.99, 0.9, 0.8], np.float32),
        truth,
    )
    assert average_precision([wrong_first]) == pytest.approx(2 / 3)


def test_a_duplicate_detection_counts_as_a_false_positive() -> None:
    truth = np.array([[0, 0, 10, 10]], np.float32)
    dup = ImageEval(np.concatenate([truth, truth]), np.array([0.9, 0.8], np.float32), truth)
    # The duplicate ranks after the hit, so precision at full recall is still 1.
    assert average_precision([dup]) == pytest.approx(1.0)
    dup_first = ImageEval(
        np.array([[0, 0, 10, 10], [1, 0, 11, 10]], np.float32),
        np.array([0.8, 0.9], np.float32),
        truth,
    )
    assert average_precision([dup_first]) == pytest.approx(1.0)  # the 0.9 one matches first
    nothing_true = ImageEval(truth, np.array([0.9], np.float32), truth[:0])
    assert math.isnan(average_precision([nothing_true]))


def test_count_error() -> None:
    assert count_error(98, 100) == pytest.approx(0.02)
    assert count_error(0, 0) == 0.0
    assert math.isinf(count_error(1, 0))


def test_slice_plan_covers_every_pixel_with_full_size_slices() -> None:
    boxes = plan_slices(4000, 3000, SliceParams(512, 0.25))
    covered = np.zeros((3000, 4000), bool)
    for x1, y1, x2, y2 in boxes:
        assert (x2 - x1, y2 - y1) == (512, 512)
        covered[y1:y2, x1:x2] = True
    assert covered.all()
    assert len(boxes) == len(set(boxes))


def test_a_photo_smaller_than_a_slice_is_one_slice() -> None:
    assert plan_slices(300, 200, SliceParams(512, 0.2)) == [(0, 0, 300, 200)]
