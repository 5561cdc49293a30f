"""Triton Python-backend model: ONNX Runtime on CPU, running Tally's detector, or any model of
the registry (its configuration names its input, output and ONNX file; the registry's controller
loads it with this file beside the model).

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
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        # The slice sides of a request's array (B, H, W, 3) for Tally's graph, (B, 3, H, W) for
        # YOLO's: a configuration's dims end with the channels, or with the width.
        channels_first = config["input"][0]["dims"][-1] != 3
        self.sides = (2, 3) if channels_first else (1, 2)

    def execute(self, requests: list[Any]) -> list[Any]:
        arrays = [
            pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests
        ]
        responses: list[Any] = [None] * len(requests)
        # Group requests by slice shape: one ORT call per shape.
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for index, array in enumerate(arrays):
            by_shape.setdefault(array.shape[1:], []).append(index)
        for shape, indices in by_shape.items():
            height, width = shape[self.sides[0] - 1], shape[self.sides[1] - 1]
            if height % 32 or width % 32:  # the networks downsample by 32
                for i in indices:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(
                            f"slice size {width}x{height}: height and width must be multiples of 32"
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
                    self.output_name, np.ascontiguousarray(output[offset : offset + n])
                )
                responses[i] = pb_utils.InferenceResponse(output_tensors=[tensor])
                offset += n
        return responses
