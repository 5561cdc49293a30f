"""`tally-eval`: accuracy of the whole path (slice → Triton → merge) on held-out generated photos.

Prints one row per photo and the figures the model card quotes: AP@0.5 per class over all photos
and the per-photo seedling count error. Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tally_inference import (
    LABELS,
    DetectionResult,
    DetectParams,
    ImageEval,
    SlicedDetector,
    SliceParams,
    TritonModel,
    average_precision,
    count_error,
)
from tally_stack.local_triton import triton_endpoint
from tally_synth import GROUND_TRUTH_FILE, Annotation, load_ground_truth, write_dataset

EVAL_SEED = 20_261_124  # never used for training (training uses small seeds)
TARGET_MAP = 0.90
TARGET_MEDIAN_COUNT_ERROR = 0.03
TARGET_WORST_COUNT_ERROR = 0.08


@dataclass(frozen=True, slots=True)
class PhotoScore:
    filename: str
    slices: int
    true: int
    found: int
    seconds: float

    @property
    def error(self) -> float:
        return count_error(self.found, self.true)


def ensure_dataset(directory: Path, count: int, seed: int, width: int, height: int) -> None:
    truth = directory / GROUND_TRUTH_FILE
    if truth.exists() and len(json.loads(truth.read_text())) == count:
        return
    print(f"generating {count} evaluation photos ({width}x{height}, seed {seed}) in {directory}")
    write_dataset(directory, count, seed, width, height, workers=2)


def _class_eval(result: DetectionResult, truth: list[Annotation], label: str) -> ImageEval:
    mine = [d for d in result.detections if d.label == label]
    return ImageEval(
        np.array([d.bbox for d in mine], np.float32).reshape(-1, 4),
        np.array([d.score for d in mine], np.float32),
        np.array([a.bbox for a in truth if a.label == label], np.float32).reshape(-1, 4),
    )


async def evaluate(
    directory: Path, grpc_url: str, slice_params: SliceParams, params: DetectParams
) -> tuple[list[PhotoScore], dict[str, float]]:
    truth = load_ground_truth(directory)
    per_class: dict[str, list[ImageEval]] = {label: [] for label in LABELS}
    scores: list[PhotoScore] = []
    async with TritonModel(grpc_url) as model:
        detector = SlicedDetector(model, slice_params, params)
        for filename, objects in sorted(truth.items()):
            started = time.perf_counter()
            result = await detector.detect_bytes((directory / filename).read_bytes())
            seconds = time.perf_counter() - started
            for label in LABELS:
                per_class[label].append(_class_eval(result, objects, label))
            true = sum(1 for a in objects if a.label == "seedling")
            score = PhotoScore(filename, result.slices, true, result.counts["seedling"], seconds)
            scores.append(score)
            print(
                f"{filename:26} {score.slices:6d} {score.true:6d} {score.found:6d} "
                f"{100 * score.error:7.2f} % {score.seconds:7.2f}",
                flush=True,
            )
    aps = {label: average_precision(evals) for label, evals in per_class.items()}
    return scores, aps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20)
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--data-dir", type=Path, help="default: .cache/eval-SEED-SIZE-N")
    parser.add_argument(
        "--triton-url", help="gRPC host:port of a running Triton; default: start one"
    )
    parser.add_argument("--slice-size", type=int, default=SliceParams().slice_size)
    parser.add_argument("--overlap", type=float, default=SliceParams().overlap)
    parser.add_argument("--confidence", type=float, default=DetectParams().confidence)
    parser.add_argument("--merge", choices=["GREEDYNMM", "NMS"], default=DetectParams().merge)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    directory = args.data_dir or Path(".cache") / f"eval-{args.seed}-{args.size}-{args.photos}"
    ensure_dataset(directory, args.photos, args.seed, width, height)
    slice_params = SliceParams(args.slice_size, args.overlap)
    params = DetectParams(confidence=args.confidence, merge=args.merge)

    print(f"{'photo':26} {'slices':>6} {'true':>6} {'found':>6} {'error':>9} {'seconds':>7}")
    with triton_endpoint(args.triton_url) as url:
        scores, aps = asyncio.run(evaluate(directory, url, slice_params, params))

    errors = [s.error for s in scores]
    median, worst = statistics.median(errors), max(errors)
    figures = {
        "photos": len(scores),
        "size": args.size,
        "seed": args.seed,
        **{f"AP50_{label}": round(ap, 4) for label, ap in aps.items()},
        "count_error_median": round(median, 4),
        "count_error_worst": round(worst, 4),
        "seconds_per_photo_median": round(statistics.median(s.seconds for s in scores), 2),
        "slice_size": args.slice_size,
        "overlap": args.overlap,
        "confidence": args.confidence,
        "merge": args.merge,
    }
    met = {
        f"seedling AP@0.5 = {aps['seedling']:.4f} (target >= {TARGET_MAP})": (
            aps["seedling"] >= TARGET_MAP
        ),
        f"median count error = {100 * median:.2f} % (target <= 3 %)": (
            median <= TARGET_MEDIAN_COUNT_ERROR
        ),
        f"worst count error = {100 * worst:.2f} % (target <= 8 %)": (
            worst <= TARGET_WORST_COUNT_ERROR
        ),
    }
    print(f"weed AP@0.5 = {aps['weed']:.4f} (no target)")
    for line, ok in met.items():
        print(f"{'PASS' if ok else 'MISS'}  {line}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
