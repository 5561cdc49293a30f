"""ONNX export with a dynamic batch (and spatial) dimension, checked against PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from tally_model.model import ExportWrapper, TallyNet

INPUT_NAME = "images"
OUTPUT_NAME = "detections"
OPSET = 18
MAX_BATCH = 64
MAX_SIDE = 4096  # slice sides up to this, in steps of 32


def export_onnx(model: TallyNet, path: Path, check_size: int = 512) -> float:
    """Write the model to `path`; return the largest difference between ONNX Runtime and torch."""
    wrapper = ExportWrapper(model).eval()
    example = torch.zeros((2, check_size, check_size, 3), dtype=torch.uint8)
    # Height and width are multiples of 32, the network's total downsampling.
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    rows = torch.export.Dim("rows", min=1, max=MAX_SIDE // 32)
    cols = torch.export.Dim("cols", min=1, max=MAX_SIDE // 32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # torch.export's own internals raise FutureWarnings about torch's own APIs.
        warnings.simplefilter("ignore", FutureWarning)
        program = torch.onnx.export(
            wrapper,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes={"images": {0: batch, 1: 32 * rows, 2: 32 * cols}},
            opset_version=OPSET,
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    program.save(str(path))
    onnx.checker.check_model(onnx.load(str(path)))

    rng = np.random.default_rng(0)
    probe = rng.integers(0, 256, (3, check_size, check_size, 3), dtype=np.uint8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0]
    with torch.no_grad():
        want = wrapper(torch.from_numpy(probe)).numpy()
    return float(np.abs(got - want).max())
