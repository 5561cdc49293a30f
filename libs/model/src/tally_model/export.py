"""ONNX export with a dynamic batch (and spatial) dimension, checked against PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from tally_model.model import ExportWrapper, TallyNet

INPUT_NAME = "images"
OUTPUT_NAME = "detections"
OPSET = 17


def export_onnx(model: TallyNet, path: Path, check_size: int = 512) -> float:
    """Write the model to `path`; return the largest difference between ONNX Runtime and torch."""
    wrapper = ExportWrapper(model).eval()
    example = torch.zeros((2, check_size, check_size, 3), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        wrapper,
        (example,),
        str(path),
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes={
            INPUT_NAME: {0: "batch", 1: "height", 2: "width"},
            OUTPUT_NAME: {0: "batch", 1: "cells"},
        },
        opset_version=OPSET,
        dynamo=False,
    )
    onnx.checker.check_model(onnx.load(str(path)))

    rng = np.random.default_rng(0)
    probe = rng.integers(0, 256, (3, check_size, check_size, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0]
    with torch.no_grad():
        want = wrapper(torch.from_numpy(probe)).numpy()
    return float(np.abs(got - want).max())
