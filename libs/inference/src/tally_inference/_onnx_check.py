"""The static checks of an uploaded ONNX model, before anything serves it.

An uploaded model is untrusted input. These checks only parse it (protobuf, the ONNX checker,
shape inference); nothing in it runs here. What runs it is the inference server, after a dry run
there (the registry's job). The checks, in order: the size cap; a model that parses; only the
standard operator domains (no custom operators, which would need a library loaded into the
server) and no external data (a path on the server's disk); the ONNX checker; shape inference;
the declared format against the graph's input and output; the labels against the class count.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto

from tally_inference._formats import LAYOUTS, Layout, ModelFormat, layout_of

# The operator domains of the ONNX standard: the default one ("" is "ai.onnx") and ONNX-ML.
STANDARD_DOMAINS: Final = frozenset({"", "ai.onnx", "ai.onnx.ml"})
_ELEMENT_TYPES: Final[dict[type[np.generic], int]] = {
    np.uint8: TensorProto.UINT8,
    np.float32: TensorProto.FLOAT,
}

RejectionCode = Literal[
    "model_too_large",
    "model_corrupt",
    "model_custom_operators",
    "model_external_data",
    "model_invalid",
    "model_format_mismatch",
    "model_labels_mismatch",
]


class ModelCheckError(ValueError):
    """The model cannot be served; `code` is stable, the message says why."""

    def __init__(self, code: RejectionCode, message: str) -> None:
        super().__init__(message)
        self.code: RejectionCode = code
        self.message = message


@dataclass(frozen=True, slots=True)
class ModelGraph:
    """What serving the model needs to know of its graph."""

    format: ModelFormat
    input_name: str
    output_name: str
    # The side of the square slices a static-shape model takes; None: any multiple of 32.
    input_size: int | None
    # Whether the batch dimension is free (else the graph takes one slice at a time).
    batched: bool
    classes: int
    opset: int


def check_model(
    data: bytes,
    model_format: str,
    labels: Sequence[str],
    *,
    max_bytes: int,
    input_size: int | None = None,
) -> ModelGraph:
    """The model's serving facts, or ModelCheckError with the first check it fails. Blocking
    (parsing a large model takes a while): call it from a thread."""
    if len(data) > max_bytes:
        raise ModelCheckError(
            "model_too_large",
            f"the model is {len(data):,} bytes; the limit is {max_bytes:,} bytes",
        )
    layout = layout_of(model_format)
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelCheckError("model_corrupt", f"the file is not an ONNX model ({exc})") from None
    if not model.graph.node:
        raise ModelCheckError("model_corrupt", "the file is not an ONNX model (its graph is empty)")
    _check_domains(model)
    _check_no_external_data(model)
    try:
        onnx.checker.check_model(model, full_check=False)
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ModelCheckError(
            "model_invalid", f"the ONNX checker refuses the model: {exc}"
        ) from None
    return _serving_facts(inferred, layout, labels, input_size)


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, those in subgraphs (If, Loop, Scan) too."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attribute.g)
            for subgraph in attribute.graphs:
                yield from _nodes(subgraph)


def _check_domains(model: onnx.ModelProto) -> None:
    custom = {o.domain for o in model.opset_import} - STANDARD_DOMAINS
    custom |= {node.domain for node in _nodes(model.graph)} - STANDARD_DOMAINS
    custom |= {function.domain for function in model.functions}
    if custom:
        raise ModelCheckError(
            "model_custom_operators",
            f"the model uses operators outside the ONNX standard (domains "
            f"{', '.join(sorted(repr(d) for d in custom))}); only the standard domains are "
            "served",
        )


def _check_no_external_data(model: onnx.ModelProto) -> None:
    tensors = [*model.graph.initializer]
    for node in _nodes(model.graph):
        tensors += [a.t for a in node.attribute if a.type == onnx.AttributeProto.TENSOR]
    if any(t.data_location == TensorProto.EXTERNAL for t in tensors):
        raise ModelCheckError(
            "model_external_data",
            "the model keeps weights in external files; upload a single self-contained .onnx",
        )


def _dims(value: onnx.ValueInfoProto) -> tuple[int | None, ...]:
    shape = value.type.tensor_type.shape
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in shape.dim)


def _serving_facts(
    model: onnx.ModelProto, layout: Layout, labels: Sequence[str], declared_size: int | None
) -> ModelGraph:
    fmt = layout.format
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        raise ModelCheckError(
            "model_format_mismatch",
            f"a {fmt} model has one input (the slices); this one has {len(inputs)}",
        )
    (image_input,) = inputs
    if not model.graph.output:
        raise ModelCheckError("model_format_mismatch", "the model has no output")
    output = model.graph.output[0]
    wanted_type = _ELEMENT_TYPES[layout.input_dtype]
    got_type = image_input.type.tensor_type.elem_type
    if got_type != wanted_type:
        raise ModelCheckError(
            "model_format_mismatch",
            f"a {fmt} model takes {TensorProto.DataType.Name(wanted_type).lower()} slices; "
            f"this one's input {image_input.name!r} is "
            f"{TensorProto.DataType.Name(got_type).lower()}",
        )
    dims = _dims(image_input)
    channel_axis = 1 if layout.channels_first else 3
    last_axis = 3 if layout.channels_first else 1  # where the other layout has its channels
    if (
        len(dims) != 4
        or dims[channel_axis] not in (3, None)
        or (dims[channel_axis] is None and dims[last_axis] == 3)
    ):
        wanted = "(B, 3, H, W)" if layout.channels_first else "(B, H, W, 3)"
        raise ModelCheckError(
            "model_format_mismatch",
            f"a {fmt} model's input is {wanted}; this one's is {_shape_text(dims)}",
        )
    if output.type.tensor_type.elem_type != TensorProto.FLOAT:
        raise ModelCheckError(
            "model_format_mismatch",
            f"a {fmt} model's output is float32; this one's {output.name!r} is "
            f"{TensorProto.DataType.Name(output.type.tensor_type.elem_type).lower()}",
        )
    try:
        classes = layout.classes(_dims(output))
    except ValueError as exc:
        raise ModelCheckError(
            "model_format_mismatch",
            f"{exc} (output {output.name!r} is {_shape_text(_dims(output))})",
        ) from None
    if classes is None or classes != len(labels):
        _name_the_layout_it_is(layout, _dims(output), len(labels))
    if classes is None:
        # Every exporter fixes the values of a candidate (4 or 5, plus one per class).
        raise ModelCheckError(
            "model_format_mismatch",
            f"a {fmt} model's output has a fixed number of values per candidate on axis "
            f"{layout.row_axis}; this one's is {_shape_text(_dims(output))}",
        )
    if classes != len(labels):
        raise ModelCheckError(
            "model_labels_mismatch",
            f"the model scores {classes} classes but {len(labels)} labels were given",
        )
    size = _input_size(dims, layout, declared_size)
    batch = dims[0]
    if batch not in (None, 1):
        raise ModelCheckError(
            "model_format_mismatch",
            f"the model's batch dimension is fixed at {batch}; export it with a dynamic batch "
            "(or a batch of 1)",
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    return ModelGraph(
        format=fmt,
        input_name=image_input.name,
        output_name=output.name,
        input_size=size,
        batched=batch is None,
        classes=classes,
        opset=opset,
    )


def _name_the_layout_it_is(declared: Layout, output: tuple[int | None, ...], labels: int) -> None:
    """A format mismatch when another layout reads the output as `labels` classes."""
    for layout in LAYOUTS.values():
        if layout.format == declared.format or layout.input_dtype != declared.input_dtype:
            continue
        try:
            classes = layout.classes(output)
        except ValueError:
            continue
        if classes == labels:
            raise ModelCheckError(
                "model_format_mismatch",
                f"the output {_shape_text(output)} is what a {layout.format} model of "
                f"{labels} classes gives, not a {declared.format} one",
            )


def _input_size(dims: tuple[int | None, ...], layout: Layout, declared: int | None) -> int | None:
    height, width = (dims[2], dims[3]) if layout.channels_first else (dims[1], dims[2])
    if height is None and width is None:
        return declared
    if height != width or height is None:
        raise ModelCheckError(
            "model_format_mismatch",
            f"Tally's slices are square; the model's input is {_shape_text(dims)}",
        )
    if declared is not None and declared != height:
        raise ModelCheckError(
            "model_format_mismatch",
            f"input_size {declared} was given, but the model's input is fixed at {height}",
        )
    return height


def _shape_text(dims: tuple[int | None, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
