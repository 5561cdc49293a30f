"""Tally's detector re-exported in the YOLO layouts: the shipped graph, wrapped with the input
and output conversions of `yolov8` or `yolov5` (tally_inference's formats). The wrapped graph
computes the same detections from the same pixels, so a session served by it must count what the
native model counts: the tests of the model registry upload these.

`python -m tally_model.layouts yolov8 OUT.onnx` writes one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from tally_inference import ModelFormat

SHIPPED = Path(__file__).resolve().parents[4] / "deploy/triton/gpu/tally_detector/1/model.onnx"
OUTPUT_NAME = "output0"  # what Ultralytics' exports call it


def _constant(name: str, value: object, dtype: type[np.generic]) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], value=numpy_helper.from_array(np.array(value, dtype), name)
    )


def _input_side(input_name: str) -> onnx.GraphProto:
    """float32 (B, 3, H, W) in 0-1 → the uint8 (B, H, W, 3) the native graph takes (rounded, so
    pixels come back exactly)."""
    nodes = [
        _constant("k255", 255.0, np.float32),
        _constant("k0", 0.0, np.float32),
        helper.make_node("Mul", [input_name, "k255"], ["scaled"]),
        helper.make_node("Round", ["scaled"], ["rounded"]),
        helper.make_node("Clip", ["rounded", "k0", "k255"], ["clipped"]),
        helper.make_node("Cast", ["clipped"], ["bytes"], to=TensorProto.UINT8),
        helper.make_node("Transpose", ["bytes"], ["pixels"], perm=[0, 2, 3, 1]),
    ]
    return helper.make_graph(
        nodes,
        "to_native_input",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", "h", "w", 3])],
    )


def _output_side(model_format: ModelFormat, classes: int) -> onnx.GraphProto:
    """Native rows (B, N, 4 + C) of corners and scores → the layout's output."""
    nodes = [
        _constant("axis", [-1], np.int64),
        _constant("at0", [0], np.int64),
        _constant("at2", [2], np.int64),
        _constant("at4", [4], np.int64),
        _constant("end", [4 + classes], np.int64),
        _constant("half", 0.5, np.float32),
        helper.make_node("Slice", ["rows", "at0", "at2", "axis"], ["top_left"]),
        helper.make_node("Slice", ["rows", "at2", "at4", "axis"], ["bottom_right"]),
        helper.make_node("Slice", ["rows", "at4", "end", "axis"], ["scores"]),
        helper.make_node("Add", ["top_left", "bottom_right"], ["twice_centre"]),
        helper.make_node("Mul", ["twice_centre", "half"], ["centre"]),
        helper.make_node("Sub", ["bottom_right", "top_left"], ["size"]),
    ]
    if model_format == "yolov8":
        nodes += [
            helper.make_node("Concat", ["centre", "size", "scores"], ["candidates"], axis=-1),
            helper.make_node("Transpose", ["candidates"], [OUTPUT_NAME], perm=[0, 2, 1]),
        ]
        shape: list[str | int] = ["batch", 4 + classes, "n"]
    else:
        # Objectness is the best class score, each class score given it: their product is the
        # native score again (up to float rounding).
        nodes += [
            _constant("tiny", 1e-12, np.float32),
            helper.make_node("ReduceMax", ["scores", "axis"], ["objectness"], keepdims=1),
            helper.make_node("Max", ["objectness", "tiny"], ["divisor"]),
            helper.make_node("Div", ["scores", "divisor"], ["given_object"]),
            helper.make_node(
                "Concat",
                ["centre", "size", "objectness", "given_object"],
                [OUTPUT_NAME],
                axis=-1,
            ),
        ]
        shape = ["batch", "n", 5 + classes]
    return helper.make_graph(
        nodes,
        f"to_{model_format}_output",
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, ["batch", "n", 4 + classes])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, shape)],
    )


def wrap(native: onnx.ModelProto, model_format: ModelFormat) -> onnx.ModelProto:
    """`native` (a `tally` graph) in `model_format`'s layout; `tally` returns it unchanged."""
    if model_format == "tally":
        return native
    (native_input,) = native.graph.input
    (native_output,) = native.graph.output
    classes = native_output.type.tensor_type.shape.dim[2].dim_value - 4
    opset = [helper.make_opsetid("", next(o.version for o in native.opset_import if not o.domain))]

    def model(graph: onnx.GraphProto) -> onnx.ModelProto:
        return helper.make_model(graph, opset_imports=opset, ir_version=native.ir_version)

    front = compose.merge_models(
        model(_input_side("images")),
        native,
        io_map=[("pixels", native_input.name)],
        prefix2="native/",
    )
    whole = compose.merge_models(
        front,
        model(_output_side(model_format, classes)),
        io_map=[(f"native/{native_output.name}", "rows")],
    )
    whole.producer_name = f"tally_model.layouts ({model_format})"
    onnx.checker.check_model(whole, full_check=True)
    return whole


def wrapped_bytes(model_format: ModelFormat, native: Path = SHIPPED) -> bytes:
    return wrap(onnx.load(native), model_format).SerializeToString()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tally_model.layouts", description=__doc__)
    parser.add_argument("format", choices=["yolov8", "yolov5"])
    parser.add_argument("out", type=Path)
    parser.add_argument("--native", type=Path, default=SHIPPED)
    args = parser.parse_args(argv)
    args.out.write_bytes(wrapped_bytes(args.format, args.native))
    print(f"wrote {args.out} ({args.format} layout of {args.native})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
