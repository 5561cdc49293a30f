"""Each model layout's adapter: what its input takes, and its output as the rows every later step
reads (x1, y1, x2, y2, then one score per class)."""

from __future__ import annotations

import numpy as np
import pytest

from tally_inference import FORMATS, decode_slice, layout_of

# Two candidates of two classes, as the native graph gives them.
NATIVE = np.array(
    [[[10.0, 20.0, 30.0, 60.0, 0.9, 0.1], [100.0, 100.0, 110.0, 104.0, 0.2, 0.7]]], np.float32
)


def test_the_tally_layout_takes_the_slices_and_gives_its_rows_as_they_are() -> None:
    slices = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    layout = layout_of("tally")
    assert layout.prepare(slices) is slices
    assert layout.input_shape(2, 4, 4) == (2, 4, 4, 3)
    np.testing.assert_array_equal(layout.rows(NATIVE), NATIVE)


@pytest.mark.parametrize("name", ["yolov8", "yolov5"])
def test_the_yolo_layouts_take_rgb_planes_scaled_to_one(name: str) -> None:
    slices = np.zeros((1, 2, 2, 3), np.uint8)
    slices[0, 0, 1] = (255, 51, 0)
    planes = layout_of(name).prepare(slices)
    assert planes.dtype == np.float32
    assert planes.shape == layout_of(name).input_shape(1, 2, 2) == (1, 3, 2, 2)
    np.testing.assert_allclose(planes[0, :, 0, 1], [1.0, 0.2, 0.0], rtol=1e-6)
    assert planes[0, :, 1, 1].tolist() == [0.0, 0.0, 0.0]


def test_a_yolov8_output_of_centres_and_class_scores_by_column_becomes_the_same_rows() -> None:
    # (B, 4 + C, N): cx, cy, w, h, then the scores, one candidate per column.
    output = np.array(
        [[[20.0, 105.0], [40.0, 102.0], [20.0, 10.0], [40.0, 4.0], [0.9, 0.2], [0.1, 0.7]]],
        np.float32,
    )
    layout = layout_of("yolov8")
    assert layout.classes(output.shape) == 2
    np.testing.assert_allclose(layout.rows(output), NATIVE)


def test_a_yolov5_output_scores_each_class_given_an_object() -> None:
    # (B, N, 5 + C): cx, cy, w, h, objectness, then the class scores given an object.
    output = np.array(
        [
            [
                [20.0, 40.0, 20.0, 40.0, 0.9, 1.0, 0.1 / 0.9],
                [105.0, 102.0, 10.0, 4.0, 0.7, 0.2 / 0.7, 1.0],
            ]
        ],
        np.float32,
    )
    layout = layout_of("yolov5")
    assert layout.classes(output.shape) == 2
    np.testing.assert_allclose(layout.rows(output), NATIVE, rtol=1e-6)


@pytest.mark.parametrize("name", FORMATS)
def test_every_layout_decodes_into_the_same_detections(name: str) -> None:
    layout = layout_of(name)
    encoded = {
        "tally": NATIVE,
        "yolov8": np.array(
            [[[20.0, 105.0], [40.0, 102.0], [20.0, 10.0], [40.0, 4.0], [0.9, 0.2], [0.1, 0.7]]],
            np.float32,
        ),
        "yolov5": np.array(
            [[[20, 40, 20, 40, 0.9, 1.0, 0.1 / 0.9], [105, 102, 10, 4, 0.7, 0.2 / 0.7, 1.0]]],
            np.float32,
        ),
    }[name]
    found = decode_slice(layout.rows(encoded)[0], score_threshold=0.5, iou_threshold=0.5)
    assert found.classes.tolist() == [0, 1]
    np.testing.assert_allclose(found.scores, [0.9, 0.7], rtol=1e-6)
    np.testing.assert_allclose(found.boxes, NATIVE[0, :, :4])


def test_an_output_that_cannot_be_the_layouts_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="yolov5 model's output rows hold 5 values"):
        layout_of("yolov5").rows(np.zeros((1, 10, 5), np.float32))
    with pytest.raises(ValueError, match="has 3 dimensions, not 2"):
        layout_of("yolov8").classes((1, 6))
    assert layout_of("yolov8").classes((1, None, 8400)) is None


def test_an_unknown_format_names_the_known_ones() -> None:
    with pytest.raises(
        ValueError, match="unknown model format 'detr': one of tally, yolov8, yolov5"
    ):
        layout_of("detr")
