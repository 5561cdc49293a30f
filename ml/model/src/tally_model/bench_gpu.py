"""`tally-bench-gpu` (`make bench-gpu`): the shipped model's slices/s on an NVIDIA GPU, raw ONNX
Runtime against the same through Tally's client, in one run. For a machine with a GPU (none is
here, and CI never has one): where there is no GPU it says so and exits 0.

- **raw**: a tight loop of ONNX Runtime calls on pre-cut batches of one 4000x3000 generated photo
  (8 slices of 512 px a call, the detectors' default), on each GPU execution provider this
  onnxruntime has: CUDA, and TensorRT (FP16, its engine built once before timing).
- **client**: `SlicedDetector.detect` on the same photo with the same provider underneath
  (cutting, decoding, NMS, edge filtering and the SAHI merge included), so the ratio is what the
  client costs on top of the GPU.

Rounds alternate so that clocks and thermals hit both alike; every measurement is bounded in
rounds and seconds, and the whole run in `--budget-s` (7 minutes by default: under 8 with the
set-up). `--provider cpu` runs the same code on the CPU (a dry run where there is no GPU; its
figures are not GPU figures and are labelled so). onnxruntime-gpu is not in the locked
environment (the CPU build is); `make bench-gpu` installs it beside it in its own venv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from tally_inference import (
    DetectParams,
    SlicedDetector,
    SliceParams,
    cut_batch,
    decode_image,
    plan_slices,
)
from tally_synth import PhotoSpec, render

SHIPPED = Path(__file__).resolve().parents[4] / "deploy/triton/gpu/tally_detector/1/model.onnx"
PROVIDERS = {
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "cpu": "CPUExecutionProvider",
}


@dataclass(frozen=True)
class Figure:
    provider: str
    raw_slices_per_s: float
    client_slices_per_s: float
    rounds: int

    @property
    def client_over_raw(self) -> float:
        return self.client_slices_per_s / self.raw_slices_per_s


def gpu_present() -> str | None:
    """Why there is no usable GPU here, or None when there is one."""
    if shutil.which("nvidia-smi") is None:
        return "no nvidia-smi on PATH: no NVIDIA driver on this machine"
    probe = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0 or "GPU" not in probe.stdout:
        return f"nvidia-smi finds no GPU ({probe.stderr.strip() or probe.stdout.strip()})"
    if PROVIDERS["cuda"] not in ort.get_available_providers():
        return (
            "this onnxruntime has no CUDA execution provider: install onnxruntime-gpu "
            "(make bench-gpu does, in its own environment)"
        )
    return None


def session(provider: str, model: Path) -> ort.InferenceSession:
    name = PROVIDERS[provider]
    if provider == "tensorrt":
        cache = Path(".cache/tally-trt")
        cache.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {
            "trt_fp16_enable": True,
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
        }
        providers: list[Any] = [(name, options), PROVIDERS["cuda"]]
    else:
        providers = [name]
    return ort.InferenceSession(str(model), providers=providers)


class OrtModel:
    """The InferenceModel the client runs on: one ONNX Runtime session, called in a thread (ONNX
    Runtime releases the GIL), as Triton's backends call it."""

    def __init__(self, onnx: ort.InferenceSession) -> None:
        self._session = onnx
        self._input = onnx.get_inputs()[0].name

    def run(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        output = self._session.run(None, {self._input: batch})[0]
        return np.asarray(output, dtype=np.float32)

    async def infer(self, batch: NDArray[np.uint8]) -> NDArray[np.float32]:
        return await asyncio.to_thread(self.run, batch)


def timed(work: Callable[[], object]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def measure(provider: str, args: argparse.Namespace, deadline: float) -> Figure:
    width, height = (int(v) for v in args.size.split("x"))
    data, _ = render(PhotoSpec(seed=777, index=0, width=width, height=height))
    image = decode_image(data)
    slice_params = SliceParams(args.slice_size, args.overlap)
    boxes = plan_slices(width, height, slice_params)
    batches = [
        cut_batch(image, boxes[i : i + args.batch_size], args.slice_size)
        for i in range(0, len(boxes), args.batch_size)
    ]
    model = OrtModel(session(provider, args.model))
    detector = SlicedDetector(
        model, slice_params, DetectParams(batch_size=args.batch_size, max_in_flight=1)
    )
    model.run(batches[0])  # warm-up: CUDA context, TensorRT's engine (built once, then cached)

    def raw() -> None:
        for batch in batches:
            model.run(batch)

    def client() -> None:
        asyncio.run(detector.detect(image))

    raw_s: list[float] = []
    client_s: list[float] = []
    for _ in range(args.rounds):
        if time.monotonic() > deadline:
            break
        raw_s.append(timed(raw))
        client_s.append(timed(client))
    if not raw_s:
        raise SystemExit(f"no time left for {provider}: raise --budget-s")
    return Figure(
        provider=provider,
        raw_slices_per_s=len(boxes) / statistics.median(raw_s),
        client_slices_per_s=len(boxes) / statistics.median(client_s),
        rounds=len(raw_s),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-bench-gpu", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--provider",
        action="append",
        choices=sorted(PROVIDERS),
        help="what to run on (repeat; default: every GPU provider this onnxruntime has)",
    )
    parser.add_argument("--model", type=Path, default=SHIPPED)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--slice-size", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--budget-s", type=float, default=420.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    providers = args.provider
    if providers is None:
        missing = gpu_present()
        if missing is not None:
            print(f"bench-gpu skipped: {missing}")
            return 0
        available = ort.get_available_providers()
        providers = [p for p in ("cuda", "tensorrt") if PROVIDERS[p] in available]
    figures = [measure(provider, args, deadline) for provider in providers]
    print(f"{'provider':10} {'raw slices/s':>13} {'client slices/s':>16} {'client/raw':>11} rounds")
    for figure in figures:
        label = figure.provider + (" (not a GPU)" if figure.provider == "cpu" else "")
        print(
            f"{label:10} {figure.raw_slices_per_s:13.1f} {figure.client_slices_per_s:16.1f} "
            f"{figure.client_over_raw:11.2f} {figure.rounds}"
        )
    if args.json:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
