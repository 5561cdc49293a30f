"""The static checks of an uploaded ONNX model: each way a file can fail them, with its code and
a message that says what to do, and the serving facts of the models that pass."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tally_inference import ModelCheckError, check_model

MB = 1 << 20
LABELS = ["seedling", "weed"]


def _model(
    input_type: int,
    input_shape: list[int | str],
    output_shape: list[int | str],
    *,
    domain: str = "",
    extra_opsets: tuple[tuple[str, int], ...] = (),
) -> onnx.ModelProto:
    """A graph of one input and one output: a ReduceMean over the whole input, broadcast by an
    Expand to the output's shape: its fixed dimensions constants, the others taken from the
    input's shape at run time (so shape inference cannot fix them)."""
    nodes = [
        helper.make_node("Cast", ["images"], ["floats"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["floats"], ["mean"], keepdims=0),
        helper.make_node(
            "Identity" if not domain else "MagicNms", ["mean"], ["picked"], domain=domain
        ),
        helper.make_node("Shape", ["images"], ["input_shape"], start=0, end=1),
    ]
    parts = []
    for i, dim in enumerate(output_shape):
        if isinstance(dim, str):
            parts.append("input_shape")
            continue
        parts.append(f"dim{i}")
        value = numpy_helper.from_array(np.array([dim], np.int64), f"dim{i}")
        nodes.append(helper.make_node("Constant", [], [f"dim{i}"], value=value))
    nodes += [
        helper.make_node("Concat", parts, ["shape"], axis=0),
        helper.make_node("Expand", ["picked", "shape"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "probe",
        [helper.make_tensor_value_info("images", input_type, input_shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, output_shape)],
    )
    opsets = [helper.make_opsetid("", 18), *(helper.make_opsetid(d, v) for d, v in extra_opsets)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def _yolov8(**kwargs: object) -> bytes:
    shape: list[int | str] = kwargs.pop("input_shape", ["batch", 3, "h", "w"])  # type: ignore[assignment]
    output: list[int | str] = kwargs.pop("output_shape", ["batch", 6, "n"])  # type: ignore[assignment]
    return _model(TensorProto.FLOAT, shape, output, **kwargs).SerializeToString()  # type: ignore[arg-type]


def _check(data: bytes, model_format: str = "yolov8", **kwargs: object) -> object:
    return check_model(data, model_format, LABELS, max_bytes=64 * MB, **kwargs)  # type: ignore[arg-type]


def _refused(data: bytes, model_format: str = "yolov8", **kwargs: object) -> ModelCheckError:
    with pytest.raises(ModelCheckError) as raised:
        _check(data, model_format, **kwargs)
    return raised.value


def test_a_yolov8_model_with_a_dynamic_input_passes_with_its_serving_facts() -> None:
    graph = check_model(_yolov8(), "yolov8", LABELS, max_bytes=MB)
    assert (graph.input_name, graph.output_name) == ("images", "output0")
    assert (graph.input_size, graph.batched, graph.classes, graph.opset) == (None, True, 2, 18)


def test_a_static_shape_model_gives_its_input_size_and_takes_one_slice_at_a_time() -> None:
    graph = _check(_yolov8(input_shape=[1, 3, 640, 640], output_shape=[1, 6, 8400]))
    assert (graph.input_size, graph.batched) == (640, False)  # type: ignore[attr-defined]
    # Declared for a graph whose dimensions are symbolic: taken as given.
    assert _check(_yolov8(), input_size=320).input_size == 320  # type: ignore[attr-defined]


def test_a_model_over_the_size_cap_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(ModelCheckError) as raised:
        check_model(b"\0" * (2 * MB + 1), "yolov8", LABELS, max_bytes=2 * MB)
    assert raised.value.code == "model_too_large"
    assert raised.value.message == "the model is 2,097,153 bytes; the limit is 2,097,152 bytes"


@pytest.mark.parametrize("data", [b"not a model at all", b"", _yolov8()[:200]])
def test_a_corrupt_file_is_refused_as_not_an_onnx_model(data: bytes) -> None:
    refused = _refused(data)
    assert refused.code == "model_corrupt"
    assert refused.message.startswith("the file is not an ONNX model")


def test_a_model_with_a_custom_operator_is_refused_naming_its_domain() -> None:
    data = _model(
        TensorProto.FLOAT,
        ["batch", 3, "h", "w"],
        ["batch", 6, "n"],
        domain="com.example.fast",
        extra_opsets=(("com.example.fast", 1),),
    ).SerializeToString()
    refused = _refused(data)
    assert refused.code == "model_custom_operators"
    assert "'com.example.fast'" in refused.message


def test_a_custom_operator_hidden_in_a_subgraph_is_found() -> None:
    inner = helper.make_graph(
        [helper.make_node("Secret", ["x"], ["y"], domain="evil")],
        "then",
        [],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    outer = _model(TensorProto.FLOAT, ["batch", 3, "h", "w"], ["batch", 6, "n"])
    outer.graph.node.append(
        helper.make_node("If", ["cond"], ["z"], then_branch=inner, else_branch=inner)
    )
    assert _refused(outer.SerializeToString()).code == "model_custom_operators"


def test_a_model_whose_weights_live_in_external_files_is_refused() -> None:
    model = _model(TensorProto.FLOAT, ["batch", 3, "h", "w"], ["batch", 6, "n"])
    weights = numpy_helper.from_array(np.ones(4, np.float32), "w")
    weights.data_location = TensorProto.EXTERNAL
    weights.ClearField("raw_data")
    weights.external_data.add(key="location", value="../../etc/passwd")
    model.graph.initializer.append(weights)
    assert _refused(model.SerializeToString()).code == "model_external_data"


def test_a_graph_the_onnx_checker_refuses_is_invalid() -> None:
    model = _model(TensorProto.FLOAT, ["batch", 3, "h", "w"], ["batch", 6, "n"])
    model.graph.node[1].input[0] = "nowhere"  # an input nothing produces
    refused = _refused(model.SerializeToString())
    assert refused.code == "model_invalid"
    assert "nowhere" in refused.message


def test_a_graph_of_the_other_yolo_layout_is_a_format_mismatch_naming_it() -> None:
    # yolov5's (B, N, 5 + C) read as yolov8's (B, 4 + C, N) would be rows of 25,200 values.
    refused = _refused(_yolov8(output_shape=["batch", 25200, 7]), "yolov8")
    assert (refused.code, refused.message) == (
        "model_format_mismatch",
        "the output (?, 25200, 7) is what a yolov5 model of 2 classes gives, not a yolov8 one",
    )
    refused = _refused(_yolov8(output_shape=["batch", 6, 8400]), "yolov5")
    assert refused.message == (
        "the output (?, 6, 8400) is what a yolov8 model of 2 classes gives, not a yolov5 one"
    )
    # Its candidates' count unknown (a dynamic export), yolov8's rows still read as yolov8's.
    refused = _refused(_yolov8(output_shape=["batch", 6, "n"]), "yolov5")
    assert refused.message == (
        "the output (?, 6, ?) is what a yolov8 model of 2 classes gives, not a yolov5 one"
    )
    refused = _refused(_yolov8(output_shape=["batch", "values", "n"]), "yolov5")
    assert refused.message == (
        "a yolov5 model's output has a fixed number of values per candidate on axis 2; this "
        "one's is (?, ?, ?)"
    )


def test_a_declared_format_that_the_graph_contradicts_is_refused_with_what_differs() -> None:
    tally = _model(TensorProto.UINT8, ["batch", "h", "w", 3], ["batch", "n", 6]).SerializeToString()
    assert _check(tally, "tally").input_name == "images"  # type: ignore[attr-defined]
    refused = _refused(tally, "yolov8")
    assert (refused.code, refused.message) == (
        "model_format_mismatch",
        "a yolov8 model takes float slices; this one's input 'images' is uint8",
    )
    refused = _refused(_yolov8(), "tally")
    assert refused.message == "a tally model takes uint8 slices; this one's input 'images' is float"
    refused = _refused(_yolov8(input_shape=["batch", "h", "w", 3]), "yolov8")
    assert refused.message == "a yolov8 model's input is (B, 3, H, W); this one's is (?, ?, ?, 3)"
    refused = _refused(_yolov8(output_shape=["batch", 6]), "yolov8")
    assert refused.message.startswith("a yolov8 model's output has 3 dimensions, not 2")
    refused = _refused(_yolov8(output_shape=["batch", 4, "n"]), "yolov8")
    assert "hold 4 values before the class scores" in refused.message


def test_labels_must_name_every_class_the_model_scores() -> None:
    refused = _refused(_yolov8(output_shape=["batch", 84, "n"]))
    assert (refused.code, refused.message) == (
        "model_labels_mismatch",
        "the model scores 80 classes but 2 labels were given",
    )


def test_an_input_that_is_not_square_or_not_the_declared_size_is_refused() -> None:
    refused = _refused(_yolov8(input_shape=[1, 3, 480, 640], output_shape=[1, 6, 6300]))
    assert refused.message == "Tally's slices are square; the model's input is (1, 3, 480, 640)"
    refused = _refused(
        _yolov8(input_shape=[1, 3, 640, 640], output_shape=[1, 6, 8400]), input_size=512
    )
    assert refused.message == "input_size 512 was given, but the model's input is fixed at 640"


def test_a_fixed_batch_other_than_one_is_refused() -> None:
    refused = _refused(_yolov8(input_shape=[8, 3, "h", "w"], output_shape=[8, 6, "n"]))
    assert refused.code == "model_format_mismatch"
    assert "batch dimension is fixed at 8" in refused.message
