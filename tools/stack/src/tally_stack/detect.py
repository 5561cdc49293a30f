"""`tally-detect PHOTO...`: count objects in photos through Triton, sliced and merged.

The detector's inference alone, without the services (make detect): a development tool, which
starts a local Triton when no --triton-url is given."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

from tally_inference import (
    LABELS,
    DetectParams,
    ImageError,
    SlicedDetector,
    SliceParams,
    TritonModel,
)
from tally_stack.local_triton import triton_endpoint


def _truth_counts(photo: Path) -> dict[str, int] | None:
    """Counts from a ground_truth.json beside the photo (as tally-synth writes), if any."""
    truth_file = photo.parent / "ground_truth.json"
    if not truth_file.exists():
        return None
    objects = json.loads(truth_file.read_text()).get(photo.name)
    if objects is None:
        return None
    return {label: sum(1 for o in objects if o["label"] == label) for label in LABELS}


async def detect_all(
    photos: list[Path], url: str, detector_args: argparse.Namespace
) -> list[dict[str, object]]:
    slice_params = SliceParams(detector_args.slice_size, detector_args.overlap)
    params = DetectParams(confidence=detector_args.confidence)
    rows: list[dict[str, object]] = []
    header = f"{'photo':28} {'size':>10} {'slices':>6} " + " ".join(
        f"{label:>9}" for label in LABELS
    )
    print(header + f" {'seconds':>8}   truth")
    async with TritonModel(url) as model:
        detector = SlicedDetector(model, slice_params, params)
        for photo in photos:
            started = time.perf_counter()
            try:
                result = await detector.detect_bytes(photo.read_bytes())
            except ImageError as exc:
                print(f"{photo.name:28} rejected: {exc.code}: {exc.message}")
                rows.append(
                    {"filename": photo.name, "error": {"code": exc.code, "message": exc.message}}
                )
                continue
            seconds = time.perf_counter() - started
            truth = _truth_counts(photo)
            counts = result.counts
            print(
                f"{photo.name:28} {f'{result.width}x{result.height}':>10} {result.slices:6d} "
                + " ".join(f"{counts[label]:9d}" for label in LABELS)
                + f" {seconds:8.2f}   "
                + (" ".join(f"{truth[label]}" for label in LABELS) if truth else "-")
            )
            rows.append(
                {
                    "filename": photo.name,
                    "width": result.width,
                    "height": result.height,
                    "counts": counts,
                    "detections": [d.to_json() for d in result.detections],
                }
            )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-detect", description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", type=Path)
    parser.add_argument(
        "--triton-url", help="gRPC host:port of a running Triton; default: start one"
    )
    parser.add_argument("--json", type=Path, help="write counts and detections here")
    parser.add_argument("--slice-size", type=int, default=SliceParams().slice_size)
    parser.add_argument("--overlap", type=float, default=SliceParams().overlap)
    parser.add_argument("--confidence", type=float, default=DetectParams().confidence)
    args = parser.parse_args(argv)
    with triton_endpoint(args.triton_url) as url:
        rows = asyncio.run(detect_all(args.photos, url, args))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"detections written to {args.json}")
    return 1 if any("error" in row for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
