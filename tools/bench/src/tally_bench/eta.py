"""`tally-bench-eta` (make bench-eta): how good is the ETA customers see?

The whole stack as `make up` runs it (real Triton on the CPU, two detectors), in its own
directory, database, Redis database and bus prefix. For sessions of 1, 3, 20 and 100 photos of
mixed sizes (6 to 48 slices each), three scenarios each:

- `alone`: the session has the detectors to itself;
- `shared`: a second tenant uploads when the first session is 30 % done, as much as it would do
  by 70 % at half the rate, so its work stops then (its photos known from its upload on);
- `killed`: one of the two detectors is killed (SIGKILL) when the session is 45 % done.

Each session is followed on its event stream, as the SDK's `follow` gives it. At 10, 20, 50 and
80 % of its slices done, the ETA is the first summary at or past the mark: its predicted finish
is `eta_at` + `eta_seconds`, its interval `eta_at` + `eta_range`. Against the actual finish (the
`done` event) it prints two errors: of the session's whole duration (upload to done: how far
the promise was off, as a customer measures it) and of the time that was still left (stricter:
near the end every second counts). And how often the actual finish fell inside `eta_range`:
from 20 % done; from 20 % done once the scenario's change has happened (before the second
tenant uploads or the detector dies, no estimate can know it will); the same for sessions of
20 photos or more (a 1-photo session lasts under a second here); and at every mark.

    make bench-eta                       (about 5 min on the 2-core machine)
    tally-bench-eta --sizes 1,3 --scenarios alone --json data/bench/eta.json
    tally-bench-eta --set TALLY_ETA_WINDOW_S=20    (the model's settings, to compare)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tally_bench._stack import UNLIMITED, Names, database, redis_database
from tally_bench.pipeline import Plan, create_tenant, local_stack, own_topology, wait_for_servers
from tally_client.sdk import TallyClient
from tally_inference import SliceParams, plan_slices
from tally_stack import launcher
from tally_synth import PhotoSpec, render

MARKS = (10.0, 20.0, 50.0, 80.0)
JUDGED = (20.0, 50.0, 80.0)  # the target holds from 20 % done on
# Photo sizes, cycled from the biggest (slices at a session's default 512 px with 25 % overlap:
# 48, 6, 20, 12).
SIZES = ((3000, 2250), (1024, 768), (2000, 1500), (1600, 1200))
SCENARIOS = ("alone", "shared", "killed")
SHARED_FROM, SHARED_UNTIL, KILL_AT = 30.0, 70.0, 45.0
KILLED = "detector-2"
SESSION_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class Sample:
    mark: float
    at: float  # epoch s the summary was estimated (eta_at) or received
    eta_s: float | None
    low_s: float | None
    high_s: float | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Run:
    photos: int
    scenario: str
    started: float  # epoch s, the upload's start
    finished: float  # epoch s, `done` seen
    samples: tuple[Sample, ...]

    def errors(self, sample: Sample) -> tuple[float, float] | None:
        """(error of the whole duration, of the time left), or None without an ETA."""
        if sample.eta_s is None:
            return None
        miss = abs(sample.at + sample.eta_s - self.finished)
        left = max(self.finished - sample.at, 1e-3)
        return miss / (self.finished - self.started), miss / left

    def inside(self, sample: Sample) -> bool | None:
        if sample.low_s is None or sample.high_s is None:
            return None
        return sample.at + sample.low_s <= self.finished <= sample.at + sample.high_s


def _photos(directory: Path, count: int, tag: str) -> list[Path]:
    """`count` photos of the mixed sizes (copies of one rendering per size)."""
    paths = []
    for index in range(count):
        width, height = SIZES[index % len(SIZES)]
        source = directory / f"size-{width}x{height}.jpg"
        if not source.exists():
            data, _ = render(
                PhotoSpec(seed=18, index=index % len(SIZES), width=width, height=height)
            )
            source.write_bytes(data)
        path = directory / f"{tag}-{index:03d}.jpg"
        path.write_bytes(source.read_bytes())
        paths.append(path)
    return paths


def _slices(count: int) -> int:
    return sum(len(plan_slices(*SIZES[i % len(SIZES)], SliceParams())) for i in range(count))


def _epoch(stamp: str | None, fallback: float) -> float:
    return datetime.fromisoformat(stamp).timestamp() if stamp else fallback


def _upload(client: TallyClient, session_id: str, photos: list[Path]) -> None:
    for start in range(0, len(photos), 10):  # ten to a request, as a browser sends them
        client.upload(session_id, photos[start : start + 10])


def _follow(client: TallyClient, session_id: str, on_progress: Any) -> tuple[list[Sample], float]:
    """Samples at the marks and the finish, from the session's stream."""
    samples: list[Sample] = []
    marks = list(MARKS)
    for state in client.follow(session_id):
        summary = state["summary"] or {}
        progress = summary.get("overall_progress_percent") or 0.0
        on_progress(progress)
        while (
            marks
            and progress >= marks[0]
            and summary.get("queued", 1) + summary.get("processing", 1)
        ):
            span = summary.get("eta_range")
            samples.append(
                Sample(
                    marks.pop(0),
                    _epoch(summary.get("eta_at"), time.time()),
                    summary.get("eta_seconds"),
                    span[0] if span else None,
                    span[1] if span else None,
                    summary.get("eta_reason"),
                )
            )
    return samples, time.time()


class Detectors:
    """The second detector, run by the bench (the stack leaves it out) so that it can be
    killed without stopping the stack."""

    def __init__(self, stack: Any, logs: Path) -> None:
        config = dataclasses.replace(stack.config, external=[])
        command, env = config.processes(stack.directory)[KILLED]
        self._command, self._env, self._logs = command, env, logs
        self.process: launcher.Process | None = None

    def start(self) -> None:
        if self.process is not None and self.process.running():
            return
        self.process = launcher.start(
            KILLED,
            ["bash", "-c", self._command],
            env=self._env,
            log_path=self._logs / f"{KILLED}.log",
            append_log=True,
        )
        self.process.wait_until(launcher.log_line("ready (Triton at"), timeout_s=120)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def run_one(
    url: str, keys: tuple[str, str], photos: int, scenario: str, work: Path, detectors: Detectors
) -> Run:
    directory = work / f"{scenario}-{photos}"
    directory.mkdir(parents=True)
    mine = _photos(directory, photos, "a")
    # The second tenant's work: what the first one does between 30 and 70 % at half the rate.
    theirs_slices = _slices(photos) * (SHARED_UNTIL - SHARED_FROM) / 100
    theirs = _photos(directory, max(photos, 8), "b")
    while len(theirs) > 1 and _slices(len(theirs)) > theirs_slices:
        theirs.pop()
    events: dict[str, threading.Event] = {"shared": threading.Event(), "killed": threading.Event()}

    def on_progress(progress: float) -> None:
        if scenario == "shared" and progress >= SHARED_FROM and not events["shared"].is_set():
            events["shared"].set()
        if scenario == "killed" and progress >= KILL_AT and not events["killed"].is_set():
            events["killed"].set()
            detectors.kill()

    with TallyClient(url, keys[0]) as client, TallyClient(url, keys[1]) as other:
        session = client.create_session(f"eta {scenario} {photos}")
        second = other.create_session(f"eta {scenario} {photos}: the other tenant")

        def neighbour() -> None:
            if events["shared"].wait(SESSION_TIMEOUT_S):
                _upload(other, second, theirs)

        helper = threading.Thread(target=neighbour, daemon=True)
        helper.start()
        started = time.time()
        uploader = threading.Thread(target=_upload, args=(client, session, mine), daemon=True)
        uploader.start()
        samples, finished = _follow(client, session, on_progress)
        uploader.join()
        events["shared"].set()  # the neighbour uploads now if it has not (a session too fast)
        helper.join(SESSION_TIMEOUT_S)
        for _ in other.follow(second):  # its work done before the next run
            pass
    if scenario == "killed":
        detectors.start()
    return Run(photos, scenario, started, finished, tuple(samples))


def _foreseeable(run: Run, sample: Sample) -> bool:
    """From 20 % done, once the change a scenario brings has happened (the second tenant's
    photos are all known from its upload on; a detector lost is lost): what an estimate can
    know. Before it, the change is in the future."""
    after = {"shared": SHARED_FROM, "killed": KILL_AT}.get(run.scenario, 0.0)
    return sample.mark in JUDGED and sample.mark >= after


SUMMARIES: tuple[tuple[str, Callable[[Run, Sample], bool]], ...] = (
    ("from 20 % done", lambda run, sample: sample.mark in JUDGED),
    ("from 20 % done, after the scenario's change", _foreseeable),
    (
        "the same, sessions of 20 photos or more",
        lambda run, sample: run.photos >= 20 and _foreseeable(run, sample),
    ),
    ("every mark", lambda run, sample: True),
)


def _pct(value: float) -> str:
    return f"{100 * value:5.1f} %"


def report(runs: list[Run]) -> Iterator[str]:
    yield (
        f"{'photos':>6} {'scenario':<8} {'slices':>6} {'took':>6}  "
        + "  ".join(f"{f'{m:.0f} %: err/dur err/left in':<26}" for m in MARKS)
    )
    for run in runs:
        cells = []
        for sample in run.samples:
            errors = run.errors(sample)
            inside = run.inside(sample)
            cells.append(
                f"{sample.reason or 'none':<26}"
                if errors is None
                else f"{_pct(errors[0])} {_pct(errors[1])} {'yes' if inside else 'no ':<5}"
                + " " * 4
            )
        yield (
            f"{run.photos:>6} {run.scenario:<8} {_slices(run.photos):>6} "
            f"{run.finished - run.started:>5.1f}s  " + "  ".join(cells)
        )
    for title, judged in SUMMARIES:
        found = [
            (run.errors(s), run.inside(s)) for run in runs for s in run.samples if judged(run, s)
        ]
        measured = [error for error, _ in found if error is not None]
        within = [hit for _, hit in found if hit is not None]
        missing = sum(1 for error, _ in found if error is None)
        if not measured:
            continue
        of_duration = [error[0] for error in measured]
        of_left = [error[1] for error in measured]
        yield (
            f"{title}: {len(found)} samples ({missing} without an ETA); error of the duration "
            f"median {_pct(statistics.median(of_duration))} worst {_pct(max(of_duration))}; "
            f"of the time left median {_pct(statistics.median(of_left))} worst "
            f"{_pct(max(of_left))}; actual finish inside eta_range "
            f"{sum(within)}/{len(within)} ({_pct(sum(within) / max(len(within), 1))})"
        )


async def bench(
    sizes: list[int], scenarios: list[str], work: Path, settings: dict[str, str] | None = None
) -> list[Run]:
    names = Names.fresh()
    await wait_for_servers()
    env = (
        UNLIMITED
        | (settings or {})
        | {"TALLY_STACK_DETECTORS": "2", "TALLY_STACK_EXTERNAL": KILLED}
    )
    runs: list[Run] = []
    async with contextlib.AsyncExitStack() as exits:
        await exits.enter_async_context(database(names))
        await exits.enter_async_context(redis_database(names))
        await exits.enter_async_context(own_topology(names))
        plan = Plan(photos=0, width=0, height=0, raw_s=0)
        stack = await exits.enter_async_context(
            local_stack(names, work / "stack", plan, extra_env=env)
        )
        detectors = Detectors(stack, work)
        exits.callback(detectors.stop)
        await asyncio.to_thread(detectors.start)
        keys = (
            await asyncio.to_thread(create_tenant, stack, f"eta-a-{names.run}"),
            await asyncio.to_thread(create_tenant, stack, f"eta-b-{names.run}"),
        )
        url = stack.config.edge_url
        # A warm-up of about the model's window of work (TALLY_ETA_WINDOW_S, 60 s): the
        # detectors' rate is measured on warm work, as in a running service (a CPU Triton's
        # first ten seconds or so run about 20 % slower).
        await asyncio.to_thread(run_one, url, keys, 100, "warm-up", work, detectors)
        header, *_ = report([])
        print(header, flush=True)
        for photos in sizes:
            for scenario in scenarios:
                run = await asyncio.to_thread(run_one, url, keys, photos, scenario, work, detectors)
                runs.append(run)
                print(list(report([run]))[1], flush=True)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,20,100", help="photos per session")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--json", type=Path, metavar="PATH", help="write every sample there")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR and keep it (the stack's logs)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="TALLY_NAME=VALUE",
        help="a setting of the stack's services, e.g. TALLY_ETA_WINDOW_S=20 (repeatable)",
    )
    args = parser.parse_args(argv)
    if unset := [item for item in args.set if "=" not in item]:
        parser.error(f"--set takes TALLY_NAME=VALUE, not {', '.join(unset)}")
    settings = dict(item.partition("=")[::2] for item in args.set)
    if bad := [k for k in settings if not k.startswith("TALLY_") or k.startswith("TALLY_STACK_")]:
        parser.error(f"--set takes the services' TALLY_* settings, not {', '.join(bad)}")
    sizes = [int(n) for n in args.sizes.split(",")]
    scenarios = args.scenarios.split(",")
    if unknown := set(scenarios) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if args.keep:
        args.keep.mkdir(parents=True)
        runs = asyncio.run(bench(sizes, scenarios, args.keep, settings))
    else:
        with tempfile.TemporaryDirectory(prefix="tally-bench-eta-") as work:
            runs = asyncio.run(bench(sizes, scenarios, Path(work), settings))
    print()
    for line in report(runs):
        print(line)
    if args.json:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in runs], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
