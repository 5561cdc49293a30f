"""`tally-bench-detector`: the client's slices/s against raw Triton throughput, in one run.

Raw Triton is a tight loop of plain tritonclient calls on pre-cut batches of the same photo, with
the same batch size and the same number of requests in flight as the client, so the ratio is the
cost of everything the client adds: cutting, decoding, NMS, shifting and SAHI merging. Rounds of
the two alternate, so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import numpy as np
from numpy.typing import NDArray
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.grpc.aio import InferenceServerClient

from tally_inference import (
    DetectParams,
    SlicedDetector,
    SliceParams,
    TritonModel,
    cut_batch,
    decode_image,
    plan_slices,
)
from tally_stack.local_triton import triton_endpoint
from tally_synth import PhotoSpec, render


async def raw_triton(
    url: str, batches: list[NDArray[np.uint8]], in_flight: int
) -> Callable[[], Awaitable[float]]:
    client = InferenceServerClient(url)
    gate = asyncio.Semaphore(in_flight)

    async def one(batch: NDArray[np.uint8]) -> None:
        request = InferInput("images", list(batch.shape), "UINT8")
        request.set_data_from_numpy(batch)
        async with gate:
            response = await client.infer(
                "tally_detector", [request], outputs=[InferRequestedOutput("detections")]
            )
        response.as_numpy("detections")

    async def run() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in batches))
        return time.perf_counter() - started

    return run


async def bench(url: str, args: argparse.Namespace) -> None:
    width, height = (int(v) for v in args.size.split("x"))
    data, _ = render(PhotoSpec(seed=777, index=0, width=width, height=height))
    image = decode_image(data)
    slice_params = SliceParams(args.slice_size, args.overlap)
    params = DetectParams(batch_size=args.batch_size, max_in_flight=args.in_flight)
    boxes = plan_slices(width, height, slice_params)
    step = args.batch_size
    batches = [
        cut_batch(image, boxes[i : i + step], args.slice_size) for i in range(0, len(boxes), step)
    ]
    raw = await raw_triton(url, batches, args.in_flight)

    async with TritonModel(url) as model:
        detector = SlicedDetector(model, slice_params, params)

        async def client() -> float:
            started = time.perf_counter()
            await detector.detect(image)
            return time.perf_counter() - started

        async def photo() -> float:
            started = time.perf_counter()
            await detector.detect_bytes(data)
            return time.perf_counter() - started

        await raw()  # warm-up: first requests pay for memory allocation in Triton and ORT
        await client()
        raw_s, client_s, photo_s = [], [], []
        for _ in range(args.rounds):
            raw_s.append(await raw())
            client_s.append(await client())
            photo_s.append(await photo())

    n = len(boxes)
    raw_rate = n / statistics.median(raw_s)
    client_rate = n / statistics.median(client_s)
    print(
        f"Triton at {url}: batch {args.batch_size}, {args.in_flight} requests in flight, "
        f"slices {args.slice_size}x{args.slice_size} (overlap {args.overlap}), "
        f"{n} slices per {width}x{height} photo, {args.rounds} alternating rounds"
    )
    print(f"{'':34}{'slices/s':>10}   rounds (s)")
    print(f"{'raw Triton (tritonclient loop)':34}{raw_rate:10.1f}   {_fmt(raw_s)}")
    print(f"{'Tally client (slice+infer+merge)':34}{client_rate:10.1f}   {_fmt(client_s)}")
    ratio = client_rate / raw_rate
    print(f"ratio client / raw: {ratio:.3f} (target >= 0.9)")
    print(
        f"raw latency per batch of {args.batch_size}: "
        f"{1000 * statistics.median(raw_s) / len(batches) * args.in_flight:.0f} ms "
        f"(with {args.in_flight} in flight)"
    )
    print(
        f"per-photo latency, JPEG bytes to merged detections: median "
        f"{statistics.median(photo_s):.2f} s, max {max(photo_s):.2f} s"
    )


def _fmt(values: list[float]) -> str:
    return " ".join(f"{v:.2f}" for v in values)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tally-bench-detector", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--triton-url", help="gRPC host:port of a running Triton; default: start one"
    )
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--slice-size", type=int, default=SliceParams().slice_size)
    parser.add_argument("--overlap", type=float, default=SliceParams().overlap)
    parser.add_argument("--batch-size", type=int, default=DetectParams().batch_size)
    parser.add_argument("--in-flight", type=int, default=DetectParams().max_in_flight)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    with triton_endpoint(args.triton_url) as url:
        asyncio.run(bench(url, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
