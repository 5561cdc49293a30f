"""How good is the session ETA? Upload a folder to the running stack, follow the session's
event stream, and compare each prediction with what happened.

At each progress mark (20 %, 40 %, 60 %, 80 % of the session's slices done) the prediction is
the summary's `eta_seconds` when that summary arrived; the truth is the time from then until the
session's `done`. Error = |predicted - actual| / actual.

    make bench-eta            (starts the stack; photos: data/demo, as `make demo` makes them)
    .venv/bin/python scripts/measure_eta.py DIR [--url URL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tally_client.sdk import TallyClient

MARKS = (20.0, 40.0, 60.0, 80.0)


def _api_key() -> str:
    out = subprocess.run(
        [sys.executable, "-m", "tally_client.cli", "admin", "create-tenant"]
        + [f"eta-{int(time.time())}", "--json"],
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
    args = parser.parse_args()
    photos = sorted(args.directory.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"no photos in {args.directory} (make demo generates data/demo)")
    predictions: list[tuple[float, float, float]] = []  # (mark, received at, predicted s)
    with TallyClient(args.url, _api_key()) as client:
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
    print(f"{len(photos)} photos, {finished - uploaded:.1f} s from upload to done")
    print(f"{'mark':>6} {'predicted s':>12} {'actual s':>9} {'error':>7}")
    for mark, at, predicted in predictions:
        actual = finished - at
        error = abs(predicted - actual) / actual if actual > 0 else float("nan")
        print(f"{mark:>5.0f}% {predicted:>12.2f} {actual:>9.2f} {100 * error:>6.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
