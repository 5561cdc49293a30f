"""`tally-synth OUT_DIR --count N --seed S --size 4000x3000`."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

from tally_synth._conditions import CONDITIONS
from tally_synth._dataset import GROUND_TRUTH_FILE, write_dataset


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 4000x3000, not {text!r}") from None
    if width < 64 or height < 64:
        raise argparse.ArgumentTypeError("size must be at least 64x64")
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tally-synth", description="Generate greenhouse-tray photos with ground truth."
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=_size, default=(4000, 3000), help="WIDTHxHEIGHT")
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument(
        "--condition",
        choices=list(CONDITIONS),
        default="standard",
        help="camera and light: "
        + "; ".join(f"{c.name}: {c.description}" for c in CONDITIONS.values()),
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error("--count must be at least 1")

    started = time.perf_counter()
    width, height = args.size
    truth = write_dataset(
        args.out_dir, args.count, args.seed, width, height, args.workers, args.condition
    )
    labels = Counter(obj["label"] for objects in truth.values() for obj in objects)
    summary = ", ".join(f"{n} {label}" for label, n in sorted(labels.items()))
    elapsed = time.perf_counter() - started
    print(
        f"wrote {len(truth)} {args.condition} photos ({width}x{height}; {summary}) and "
        f"{GROUND_TRUTH_FILE} "
        f"to {args.out_dir} in {elapsed:.1f} s",
        file=sys.stdout,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
