"""Tally's detector re-exported in the YOLO layouts computes what the native graph computes, and
passes the registry's checks as the layout it claims to be."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from tally_inference import ModelFormat, check_model, decode_image, layout_of
from tally_model.layouts import SHIPPED, wrapped_bytes
from tally_synth import PhotoSpec, render


@pytest.fixture(scope="module")
def slices() -> NDArray[np.uint8]:
    """Two 512-pixel slices of a generated tray photo."""
    data, _truth = render(PhotoSpec(seed=11, index=0, width=1024, height=512))
    photo = decode_image(data)
    return np.stack([photo[:, :512], photo[:, 512:]])


@pytest.mark.parametrize("model_format", ["yolov8", "yolov5"])
def test_a_wrapped_graph_gives_the_native_rows_through_its_layouts_adapter(
    model_format: ModelFormat, slices: NDArray[np.uint8]
) -> None:
    native = ort.InferenceSession(str(SHIPPED), providers=["CPUExecutionProvider"])
    expected = native.run(None, {"images": slices})[0]
    data = wrapped_bytes(model_format)
    wrapped = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    layout = layout_of(model_format)
    rows = layout.rows(wrapped.run(None, {"images": layout.prepare(slices)})[0])
    assert rows.shape == expected.shape
    np.testing.assert_allclose(rows, expected, atol=1e-3, rtol=1e-5)
    assert (expected[..., 4:].max(axis=-1) > 0.5).sum() > 10  # the slices hold seedlings

    graph = check_model(data, model_format, ["seedling", "weed"], max_bytes=64 << 20)
    assert (graph.input_name, graph.output_name, graph.classes) == ("images", "output0", 2)
    assert graph.batched
    assert graph.input_size is None
