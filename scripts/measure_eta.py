"""How good is the session ETA? Upload a folder to the running stack, follow the session's
event stream, and compare each prediction with what happened.

At each progress mark (20 %, 40 %, 60 %, 80 % of the session's slices done) the prediction is
the summary's `eta_seconds` when that summary arrived; the truth is the time from then until the
session's `done`. Error = |predicted - actual| / actual. A short session is noisy on a shared
2-core machine, so it runs several sessions one after the other and prints each and the median.

    make bench-eta            (starts the stack; photos: data/demo, as `make demo` makes them)
    .venv/bin/python scripts/measure_eta.py DIR [--url URL] [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from tally_client.sdk import TallyClient

MARKS = (20.0, 40.0, 60.0, 80.0)
ADMIN = [sys.executable, "-m", "tally_client.cli", "admin"]


def _api_key() -> str:
    out = subprocess.run(
        [*ADMIN, "create-tenant", f"eta-{int(time.time())}", "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return str(json.loads(out)["api_key"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path, nargs="?", default=Path("data/demo"))
    parser.add_argument(
        "--url", default=f"http://127.0.0.1:{os.environ.get('TALLY_EDGE_PORT', '8080')}"
    )
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    photos = sorted(args.directory.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {args.directory} (make demo generates data/demo)")
    errors: dict[float, list[float]] = {mark: [] for mark in MARKS}
    with TallyClient(args.url, _api_key()) as client:
        for run in range(1, args.runs + 1):
            print(f"run {run}:", end=" ")
            for mark, error in measure(client, photos).items():
                errors[mark].append(error)
    print(f"{'mark':>6} {'median error':>13} {'worst':>7}")
    for mark, found in errors.items():
        if found:
            print(
                f"{mark:>5.0f}% {100 * statistics.median(found):>12.1f}% {100 * max(found):>6.1f}%"
            )
    return 0


def measure(client: TallyClient, photos: list[Path]) -> dict[float, float]:
    """One session: the ETA's relative error at each mark it reached."""
    predictions: list[tuple[float, float, float]] = []  # (mark, received at, predicted s)
    session = client.create_session("eta")
    uploaded = time.monotonic()
    client.upload(session, photos)
    pending = list(MARKS)
    for event in client.events(session):
        if event.event not in ("summary", "done"):
            continue
        summary = event.data["summary"]
        progress = summary["overall_progress_percent"] or 0.0
        while pending and progress >= pending[0] and summary["eta_seconds"] is not None:
            predictions.append((pending.pop(0), time.monotonic(), summary["eta_seconds"]))
    finished = time.monotonic()
    print(f"{len(photos)} photos, {finished - uploaded:.1f} s from upload to done;", end=" ")
    errors = {}
    for mark, at, predicted in predictions:
        actual = finished - at
        errors[mark] = abs(predicted - actual) / actual
        print(f"{mark:.0f}%: {predicted:.1f} s predicted, {actual:.1f} s", end="; ")
    print()
    return errors


if __name__ == "__main__":
    raise SystemExit(main())
