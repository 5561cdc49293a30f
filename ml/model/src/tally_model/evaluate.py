"""`tally-eval`: accuracy of the whole path (slice → Triton → merge) on held-out generated photos.

Prints one row per photo and the figures the model card quotes: AP@0.5 per class over all photos
and the per-photo seedling count error, for the standard photos or for each camera and light
condition (`--condition all`). Exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
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
from tally_synth import (
    CONDITIONS,
    GROUND_TRUTH_FILE,
    HELD_OUT,
    Annotation,
    load_ground_truth,
    write_dataset,
)

EVAL_SEED = 20_261_124  # never used for training (training uses small seeds)
TARGET_MAP = 0.90
TARGET_MEDIAN_COUNT_ERROR = 0.03
TARGET_WORST_COUNT_ERROR = 0.05
LARGEST_OBJECT = 120  # px across at the standard scale (the generator's largest seedling)
_HEADER = f"{'photo':34} {'slices':>6} {'true':>6} {'found':>6} {'error':>9} {'seconds':>7}"


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


@dataclass(frozen=True, slots=True)
class Figures:
    """What one set of photos (one condition) scored."""

    condition: str
    scores: list[PhotoScore]
    aps: dict[str, float]
    overlap: float

    @property
    def median(self) -> float:
        return statistics.median(s.error for s in self.scores)

    @property
    def worst(self) -> float:
        return max(s.error for s in self.scores)

    def to_json(self) -> dict[str, object]:
        return {
            "photos": len(self.scores),
            "seedlings": sum(s.true for s in self.scores),
            **{f"AP50_{label}": round(ap, 4) for label, ap in self.aps.items()},
            "count_error_median": round(self.median, 4),
            "count_error_worst": round(self.worst, 4),
            "seconds_per_photo_median": round(statistics.median(s.seconds for s in self.scores), 2),
            "overlap": self.overlap,
        }

    def verdicts(self) -> dict[str, bool]:
        where = f"[{self.condition}] "
        ap, median, worst = self.aps["seedling"], self.median, self.worst
        return {
            f"{where}seedling AP@0.5 = {ap:.4f} (target >= {TARGET_MAP})": ap >= TARGET_MAP,
            f"{where}median count error = {100 * median:.2f} % (target <= 3 %)": (
                median <= TARGET_MEDIAN_COUNT_ERROR
            ),
            f"{where}worst count error = {100 * worst:.2f} % (target <= 5 %)": (
                worst <= TARGET_WORST_COUNT_ERROR
            ),
        }


def overlap_for(condition: str, slice_size: int, overlap: float) -> float:
    """The slice overlap a condition needs: at least its largest object, in steps of 0.05.

    The merge drops a detection cut by an inner slice edge, trusting the neighbour slice to see
    the object whole; that holds only while the overlap in pixels holds the largest object.
    """
    largest = LARGEST_OBJECT * CONDITIONS[condition].max_scale
    needed = math.ceil(round(largest / slice_size / 0.05, 6)) * 0.05
    return round(max(overlap, needed), 2)


def ensure_dataset(
    directory: Path, count: int, seed: int, width: int, height: int, condition: str = "standard"
) -> None:
    truth = directory / GROUND_TRUTH_FILE
    if truth.exists() and len(json.loads(truth.read_text())) == count:
        return
    print(
        f"generating {count} {condition} evaluation photos ({width}x{height}, seed {seed}) "
        f"in {directory}"
    )
    write_dataset(directory, count, seed, width, height, workers=2, condition=condition)


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
    """Every photo of `directory` through the production path: per-photo scores, AP per class."""
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
                f"{filename:34} {score.slices:6d} {score.true:6d} {score.found:6d} "
                f"{100 * score.error:7.2f} % {score.seconds:7.2f}",
                flush=True,
            )
    aps = {label: average_precision(evals) for label, evals in per_class.items()}
    return scores, aps


async def evaluate_condition(
    condition: str,
    directory: Path,
    grpc_url: str,
    slice_params: SliceParams,
    params: DetectParams,
) -> Figures:
    overlap = overlap_for(condition, slice_params.slice_size, slice_params.overlap)
    scores, aps = await evaluate(
        directory, grpc_url, SliceParams(slice_params.slice_size, overlap), params
    )
    return Figures(condition, scores, aps, overlap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=20, help="photos per condition")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument(
        "--condition",
        choices=[*HELD_OUT, "all"],
        default="standard",
        help="camera and light of the photos (tally-synth --help); all: each in turn",
    )
    parser.add_argument("--data-dir", type=Path, help="default: .cache/eval-SEED-SIZE-N[-COND]")
    parser.add_argument(
        "--triton-url", help="gRPC host:port of a running Triton; default: start one"
    )
    parser.add_argument("--slice-size", type=int, default=SliceParams().slice_size)
    parser.add_argument(
        "--overlap",
        type=float,
        default=SliceParams().overlap,
        help="raised per condition to hold its largest object",
    )
    parser.add_argument("--confidence", type=float, default=DetectParams().confidence)
    parser.add_argument("--merge", choices=["GREEDYNMM", "NMS"], default=DetectParams().merge)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    conditions = list(HELD_OUT) if args.condition == "all" else [args.condition]
    if args.data_dir and len(conditions) > 1:
        parser.error("--data-dir needs a single --condition")
    directories = {}
    for condition in conditions:
        name = f"eval-{args.seed}-{args.size}-{args.photos}"
        default = Path(".cache") / (name if condition == "standard" else f"{name}-{condition}")
        directories[condition] = args.data_dir or default
        ensure_dataset(directories[condition], args.photos, args.seed, width, height, condition)
    slice_params = SliceParams(args.slice_size, args.overlap)
    params = DetectParams(confidence=args.confidence, merge=args.merge)

    results: list[Figures] = []
    with triton_endpoint(args.triton_url) as url:
        for condition in conditions:
            print(f"\n{condition}: {CONDITIONS[condition].description}")
            print(_HEADER)
            results.append(
                asyncio.run(
                    evaluate_condition(condition, directories[condition], url, slice_params, params)
                )
            )

    met: dict[str, bool] = {}
    print(f"\n{'condition':10} {'photos':>6} {'AP50':>7} {'median':>8} {'worst':>8} {'overlap':>7}")
    for figures in results:
        print(
            f"{figures.condition:10} {len(figures.scores):6d} {figures.aps['seedling']:7.4f} "
            f"{100 * figures.median:7.2f}% {100 * figures.worst:7.2f}% {figures.overlap:7.2f}"
        )
        met |= figures.verdicts()
    for figures in results:
        print(f"[{figures.condition}] weed AP@0.5 = {figures.aps['weed']:.4f} (no target)")
    for line, ok in met.items():
        print(f"{'PASS' if ok else 'MISS'}  {line}")
    if args.json:
        common = {
            "size": args.size,
            "seed": args.seed,
            "slice_size": args.slice_size,
            "confidence": args.confidence,
            "merge": args.merge,
        }
        if len(results) == 1:
            document: dict[str, object] = {**results[0].to_json(), **common}
            document["condition"] = results[0].condition
        else:
            by_condition = {f.condition: f.to_json() for f in results}
            document = {**common, "conditions": by_condition}
        args.json.write_text(json.dumps(document, indent=1) + "\n")
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
