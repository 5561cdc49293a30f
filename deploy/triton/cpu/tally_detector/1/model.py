"""Triton Python-backend model: ONNX Runtime on CPU, running Tally's detector.

Requests that Triton's dynamic batcher groups together are run as one ONNX Runtime call when their
slices have the same size.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        directory = Path(args["model_repository"]) / args["model_version"]
        onnx_file = directory / parameters.get("onnx_file", "model.onnx")
        options = ort.SessionOptions()
        threads = int(parameters.get("intra_op_threads", "0"))
        options.intra_op_num_threads = threads or (os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(onnx_file), options, providers=["CPUExecutionProvider"]
        )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [pb_utils.get_input_tensor_by_name(r, "images").as_numpy() for r in requests]
        responses: list[Any] = [None] * len(requests)
        # Group requests by slice shape: one ORT call per shape.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            by_shape.setdefault(array.shape[1:], []).append(index)
        for shape, indices in by_shape.items():
            if shape[0] % 32 or shape[1] % 32:  # the network downsamples by 32
                for i in indices:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            f"slice size {shape[1]}x{shape[0]}: height and width must be "
                            "multiples of 32"
                        )
                    )
                continue
            try:
                batch = np.concatenate([arrays[i] for i in indices])
                output = self.session.run([self.output_name], {self.input_name: batch})[0]
            except Exception as exc:  # a bad request fails alone, with Triton's error type
                for i in indices:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"inference failed: {exc}")
                    )
                continue
            offset = 0
            for i in indices:
                n = arrays[i].shape[0]
                tensor = pb_utils.Tensor(
                    "detections", np.ascontiguousarray(output[offset : offset + n])
                )
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
                offset += n
        return responses
