"""`tally-bench-pipeline` (make bench-pipeline): slices/s of the whole pipeline against raw Triton.

One run starts the whole local stack the way `make up` does (tally-stack: upload, orchestrator,
detector, projector, gateway, nginx edge, Triton, moto S3), in its own directory, edge port, bus
prefix, PostgreSQL database and Redis database, and then measures two things on it:

1. Raw Triton, while the pipeline is idle: a tight loop of requests against the stack's own
   Triton, full batches of the detector's batch size cut from a photo of the benchmarked size,
   with as many requests in flight as the detector keeps (2 chunks at a time, 1 request each),
   sent as the detector sends them (`--shared-memory`: through a shared-memory region, or plain
   tritonclient calls with the batch inside, `tally_model.bench.raw_triton`), for `--seconds`
   in all: half before the pipeline runs, half after, so a machine whose load drifts shows it.
2. The pipeline: `--photos` generated photos uploaded in one request with the SDK, from the start
   of that request until the last job is `completed` (its `completed_at`); slices are the sum of
   the jobs' `total`. The steady-state figure is the pace between 10 % and 90 % of the slices
   done, as polling saw it.

The ratio of the two is the pipeline's cost over bare inference on this machine, where the
services share the CPU with Triton. Where the time went comes with it: Triton's own statistics
(busy share, compute per slice) and the CPU time of every process of the stack, in both phases;
and with `--baseline`, an earlier run's figures beside this run's.
Everything it starts is stopped, its database dropped, its bus topology deleted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from numpy.typing import NDArray

from tally_bench._cpu import MachineStat, read_machine, read_tree, spent
from tally_bench._rates import Sample, epoch, rate, steady_rate
from tally_bench._report import Row, Section, machine, render
from tally_bench._stack import AMQP_URL, Names, database, redis_database
from tally_bench._triton_stats import TritonCounters, read_statistics
from tally_bus import Bus
from tally_client.sdk import FINAL, TallyClient, TallyError
from tally_inference import (
    DetectParams,
    SharedMemoryMode,
    SliceParams,
    TritonModel,
    cut_batch,
    decode_image,
    plan_slices,
)
from tally_model.bench import raw_triton
from tally_stack import free_port
from tally_stack._config import StackConfig
from tally_synth import PhotoSpec, write_dataset
from tally_synth import render as render_photo

TARGET = 0.9  # issue 15: the whole pipeline at 0.9 of raw Triton on this 2-core machine
SEED = 4242
# How the detector runs (its defaults, given to the stack's detector explicitly): chunks at once
# (TALLY_PREFETCH), requests in flight per chunk (TALLY_MAX_IN_FLIGHT); raw Triton gets as many
# requests in flight as the detector keeps in all.
BATCH_SIZE = DetectParams().batch_size
DETECTOR_CHUNKS = 2
CHUNK_IN_FLIGHT = 1
IN_FLIGHT = DETECTOR_CHUNKS * CHUNK_IN_FLIGHT
# Batches per raw round: short rounds end near the measuring time asked for, and a round's end
# costs Triton only one round trip of idleness (it runs one request at a time).
RAW_ROUND_BATCHES = 16
SERVERS = {"RabbitMQ": 5672, "PostgreSQL": 5432, "Redis": 6379}
# What the services log when a server under them goes away (fault tests restart RabbitMQ and
# Redis on this machine): a run that logged any of it measured a recovery, not the pipeline.
DISTURBANCES = {
    "RabbitMQ": ("CONNECTION_FORCED", "Connect call failed ('127.0.0.1', 5672)"),
    "Redis": ("Connection closed by server", "connecting to 127.0.0.1:6379"),
}


@dataclass(frozen=True, slots=True)
class Plan:
    photos: int
    width: int
    height: int
    raw_s: float
    poll_s: float = 0.2
    stall_s: float = 120.0  # no slice done and no job final for this long: the run failed
    request_timeout_s: float = 600.0
    keep_logs: bool = False
    # How slices reach Triton, in the detector (TALLY_TRITON_SHARED_MEMORY) and raw alike.
    shared_memory: SharedMemoryMode = "auto"
    chunk_slices: int | None = None  # the orchestrator's TALLY_CHUNK_SLICES; None: its default


@dataclass(frozen=True, slots=True)
class Usage:
    """What a phase cost: Triton's counters, CPU seconds by role, the machine's busy time."""

    triton: TritonCounters
    cpu_s: dict[str, float]  # the stack's processes by role, and `bench` (this process)
    machine_busy_s: float  # every process on the machine, all cores together
    wall_s: float

    def __add__(self, other: Usage) -> Usage:
        cpu = {
            k: self.cpu_s.get(k, 0.0) + other.cpu_s.get(k, 0.0) for k in self.cpu_s | other.cpu_s
        }
        return Usage(
            self.triton + other.triton,
            cpu,
            self.machine_busy_s + other.machine_busy_s,
            self.wall_s + other.wall_s,
        )

    def cores(self, role: str) -> float:
        return self.cpu_s.get(role, 0.0) / self.wall_s

    @property
    def others_cores(self) -> float:
        """What neither the stack nor the bench used: RabbitMQ, PostgreSQL, Redis, and whatever
        else runs on the machine."""
        return (self.machine_busy_s - sum(self.cpu_s.values())) / self.wall_s

    @property
    def triton_busy(self) -> float:
        return self.triton.busy_s / self.wall_s


@dataclass(frozen=True, slots=True)
class RawRun:
    slices: int
    seconds: float
    usage: Usage
    shared_memory: bool  # the batches went through shared memory, not inside the requests

    def __add__(self, other: RawRun) -> RawRun:
        return RawRun(
            self.slices + other.slices,
            self.seconds + other.seconds,
            self.usage + other.usage,
            self.shared_memory and other.shared_memory,
        )

    @property
    def slices_per_s(self) -> float:
        return rate(self.slices, self.seconds)


@dataclass(frozen=True, slots=True)
class JobRun:
    filename: str
    slices: int
    queued_s: float  # from the upload request's start, as the API's timestamps tell
    started_s: float
    completed_s: float


@dataclass(frozen=True, slots=True)
class PipelineRun:
    photos: int
    upload_bytes: int
    slices: int
    upload_s: float  # the upload request, start to answer
    wall_s: float  # upload start → last job completed
    seen_done_s: float  # upload start → the poll that saw every job completed
    last_slice_s: float | None  # upload start → the last slice counted (polling)
    steady_slices_per_s: float | None
    jobs: list[JobRun]
    usage: Usage
    failed: list[str]
    poll_errors: int

    @property
    def slices_per_s(self) -> float:
        return rate(self.slices, self.wall_s)


@dataclass(frozen=True, slots=True)
class RunningStack:
    config: StackConfig
    env: dict[str, str]
    directory: Path
    supervisor_pid: int

    @property
    def triton_url(self) -> str:
        return f"127.0.0.1:{self.config.triton_grpc_port}"


class Meter:
    """Readings before and after a phase: the phase's Usage."""

    def __init__(self, stack: RunningStack) -> None:
        self._stack = stack
        self._start = self._read()

    def _read(self) -> tuple[float, TritonCounters, dict[str, float], MachineStat]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        tree = read_tree(self._stack.supervisor_pid) | {"bench": usage.ru_utime + usage.ru_stime}
        return time.time(), read_statistics(self._stack.triton_url), tree, read_machine()

    def usage(self) -> Usage:
        at, triton, tree, whole = self._read()
        at0, triton0, tree0, whole0 = self._start
        return Usage(triton - triton0, spent(tree0, tree), whole.busy_s - whole0.busy_s, at - at0)


# -- the stack ------------------------------------------------------------------------------


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


async def wait_for_servers(timeout_s: float = 180.0) -> None:
    """Wait for servers someone else stopped (fault tests restart RabbitMQ) rather than let
    tally-stack start them anew underneath those tests."""
    deadline = time.monotonic() + timeout_s
    while missing := [name for name, port in SERVERS.items() if not _listening(port)]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"not listening after {timeout_s:.0f} s: {', '.join(missing)}")
        print(f"waiting for {', '.join(missing)} to listen again", flush=True)
        await asyncio.sleep(5)


@contextlib.asynccontextmanager
async def local_stack(
    names: Names, directory: Path, plan: Plan, extra_env: dict[str, str] | None = None
) -> AsyncIterator[RunningStack]:
    """The whole stack by tally-stack, as `make up` starts it, all its state in `directory`,
    with `extra_env` over its settings; stopped on the way out, error or not."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TALLY_", "OTEL_"))}
    env = base | {
        "TALLY_STACK_DIR": str(directory),
        "TALLY_EDGE_PORT": str(free_port()),
        "TALLY_DATABASE_URL": names.database_url,
        "TALLY_AMQP_URL": AMQP_URL,
        "TALLY_REDIS_URL": names.redis_url,
        "TALLY_BUS_PREFIX": names.bus_prefix,
        "TALLY_BATCH_SIZE": str(BATCH_SIZE),
        "TALLY_PREFETCH": str(DETECTOR_CHUNKS),
        "TALLY_MAX_IN_FLIGHT": str(CHUNK_IN_FLIGHT),
        "TALLY_TRITON_SHARED_MEMORY": plan.shared_memory,
    }
    if plan.chunk_slices is not None:
        env["TALLY_CHUNK_SLICES"] = str(plan.chunk_slices)
    env |= extra_env or {}
    cli = [sys.executable, "-m", "tally_stack.cli"]
    try:
        await asyncio.to_thread(
            subprocess.run, [*cli, "up", "--timeout", "300"], env=env, check=True, timeout=360
        )
        yield RunningStack(
            StackConfig.load(directory / "state.json"),
            env,
            directory,
            int((directory / "supervisor.pid").read_text()),
        )
    finally:
        await asyncio.to_thread(subprocess.run, [*cli, "down"], env=env, timeout=120)


@contextlib.asynccontextmanager
async def own_topology(names: Names) -> AsyncIterator[None]:
    """The stack's queues and exchanges go with it: quorum queues left behind weigh on the
    broker."""
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            bus = await Bus.connect(AMQP_URL, declare=False)
            try:
                await names.topology.delete(await bus.connection.channel())
            finally:
                await bus.close()


def create_tenant(stack: RunningStack, name: str) -> str:
    """A tenant and its API key, made as an operator makes them (`tally admin create-tenant`)."""
    out = subprocess.run(
        [sys.executable, "-m", "tally_client.cli", "admin", "create-tenant", name, "--json"],
        env=stack.env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return str(json.loads(out)["api_key"])


def disturbances(log: str) -> list[str]:
    """The servers the stack's log shows going away, with how many lines say so."""
    found = []
    for server, markers in DISTURBANCES.items():
        lines = sum(any(m in line for m in markers) for line in log.splitlines())
        if lines:
            found.append(f"{server} went away under the stack ({lines} lines in its log)")
    return found


def chunks_planned(log: str) -> int | None:
    """Chunks the orchestrator planned, from its `job …: 88 slices in 6 chunks` lines."""
    counts = [int(n) for n in re.findall(r": \d+ slices in (\d+) chunks", log)]
    return sum(counts) if counts else None


# -- the two measurements -------------------------------------------------------------------


class RawTriton:
    """Raw Triton on the stack's Triton: rounds of full batches cut from a photo of the
    benchmarked size, with the detector's number of requests in flight, sent the way the
    detector sends them: through shared memory when it does (TritonModel, each batch copied
    into a region), else plain tritonclient calls with the batch inside the request."""

    def __init__(self, stack: RunningStack, plan: Plan) -> None:
        self._stack = stack
        self._shared_memory = plan.shared_memory
        photo, _ = render_photo(PhotoSpec(SEED + 1, 0, plan.width, plan.height))
        image = decode_image(photo)
        params = SliceParams()
        slices = plan_slices(plan.width, plan.height, params)
        boxes = list(itertools.islice(itertools.cycle(slices), RAW_ROUND_BATCHES * BATCH_SIZE))
        self._batches = [
            cut_batch(image, boxes[i : i + BATCH_SIZE], params.slice_size)
            for i in range(0, len(boxes), BATCH_SIZE)
        ]

    async def measure(self, seconds: float) -> RawRun:
        """Whole rounds until `seconds` have passed, after one round of warm-up (the first
        requests pay for allocations in Triton and ONNX Runtime)."""
        url = self._stack.triton_url
        async with TritonModel(url, shared_memory=self._shared_memory) as model:
            if self._shared_memory == "off":
                run = await raw_triton(url, self._batches, IN_FLIGHT)
            else:
                run = _rounds(model, self._batches)
            await run()
            meter = Meter(self._stack)
            elapsed, slices = 0.0, 0
            while elapsed < seconds:
                elapsed += await run()
                slices += BATCH_SIZE * len(self._batches)
            return RawRun(slices, elapsed, meter.usage(), model.uses_shared_memory)


def _rounds(model: TritonModel, batches: list[NDArray[np.uint8]]) -> Callable[[], Awaitable[float]]:
    """One round: every batch, IN_FLIGHT requests at a time; its seconds."""
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(batch: NDArray[np.uint8]) -> None:
        async with gate:
            await model.infer(batch)

    async def run() -> float:
        started = time.perf_counter()
        await asyncio.gather(*(one(b) for b in batches))
        return time.perf_counter() - started

    return run


def measure_pipeline(
    stack: RunningStack, api_key: str, photos: list[Path], plan: Plan
) -> PipelineRun:
    """Upload every photo in one request, poll the session until every job is final."""
    with TallyClient(stack.config.edge_url, api_key, timeout_s=plan.request_timeout_s) as client:
        session = client.create_session("bench-pipeline")
        meter = Meter(stack)
        started = time.time()
        answer = client.upload(session, photos)
        uploaded = time.time()
        if answer["rejected"]:
            raise RuntimeError(f"the upload refused photos: {answer['rejected']}")
        samples: list[Sample] = []
        poll_errors = 0
        jobs: list[dict[str, Any]] = []
        seen: tuple[int, int] = (-1, -1)  # slices done, jobs final: what progress changes
        progressed = time.monotonic()
        while True:
            try:
                jobs = client.jobs(session)["jobs"]
            except (TallyError, httpx.HTTPError, ValueError):
                poll_errors += 1  # counted and retried: a failed poll loses no slice
            else:
                now = time.time()
                final = sum(j["status"] in FINAL for j in jobs)
                samples.append(Sample(now, sum(j["processed"] for j in jobs)))
                if (samples[-1].processed, final) != seen:
                    seen, progressed = (samples[-1].processed, final), time.monotonic()
                if jobs and final == len(jobs):
                    break
            if time.monotonic() - progressed > plan.stall_s:
                raise RuntimeError(
                    f"no progress for {plan.stall_s:.0f} s ({seen[0]} slices done, {seen[1]} of "
                    f"{len(photos)} jobs final, {poll_errors} polls failed): see the stack's log"
                )
            time.sleep(plan.poll_s)
        usage = meter.usage()
    failed = [
        f"{j['filename']}: {j['status']} {j.get('error_message') or ''}"
        for j in jobs
        if j["status"] != "completed"
    ]
    runs = [
        JobRun(
            j["filename"],
            j["total"],
            epoch(j["created_at"]) - started,
            epoch(j["started_at"]) - started if j["started_at"] else float("nan"),
            epoch(j["completed_at"]) - started if j["completed_at"] else float("nan"),
        )
        for j in jobs
    ]
    slices = sum(j["total"] for j in jobs)
    last_slice = next((s.at for s in samples if s.processed >= slices), None)
    # The end is the last `completed_at` (the orchestrator's clock, this machine's), not the
    # poll that saw it, which comes up to `poll_s` later; a run with failures ends at that poll.
    end = max(r.completed_s for r in runs) if not failed else now - started
    return PipelineRun(
        photos=len(jobs),
        upload_bytes=sum(p.stat().st_size for p in photos),
        slices=slices,
        upload_s=uploaded - started,
        wall_s=end,
        seen_done_s=now - started,
        last_slice_s=last_slice - started if last_slice is not None else None,
        steady_slices_per_s=steady_rate(samples, slices),
        jobs=runs,
        usage=usage,
        failed=failed,
        poll_errors=poll_errors,
    )


# -- the run and its report -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Result:
    plan: Plan
    raw_before: RawRun
    raw_after: RawRun
    pipeline: PipelineRun
    stack_up_s: float
    disturbances: list[str]
    chunks: int | None  # planned by the orchestrator, from its log

    @property
    def raw(self) -> RawRun:
        return self.raw_before + self.raw_after

    @property
    def ratio(self) -> float:
        return rate(self.pipeline.slices_per_s, self.raw.slices_per_s)

    @property
    def raw_drift(self) -> float:
        """How far apart the raw figures before and after the pipeline are (0.05: 5 %)."""
        before, after = self.raw_before.slices_per_s, self.raw_after.slices_per_s
        return abs(before - after) / max(before, after)


async def bench(plan: Plan) -> Result:
    names = Names.fresh()
    work = Path(tempfile.mkdtemp(prefix=f"tally-bench-pipeline-{names.run}-"))
    print(
        f"run {names.run}: database tally_bench_{names.run}, bus prefix {names.bus_prefix}, "
        f"{names.redis_url}; stack and photos in {work}",
        flush=True,
    )
    done = False
    try:
        result = await _bench(plan, names, work)
        done = True
        return result
    finally:
        if done and not plan.keep_logs:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"the stack's logs: {work / 'stack' / 'stack.log'}", flush=True)


async def _bench(plan: Plan, names: Names, work: Path) -> Result:
    started = time.monotonic()
    photos_dir = work / "photos"
    await asyncio.to_thread(
        write_dataset,
        photos_dir,
        count=plan.photos,
        seed=SEED,
        width=plan.width,
        height=plan.height,
        workers=os.cpu_count() or 1,
    )
    photos = sorted(photos_dir.glob("*.jpg"))
    print(
        f"{len(photos)} photos of {plan.width}x{plan.height} generated in "
        f"{time.monotonic() - started:.0f} s; starting the stack",
        flush=True,
    )
    await wait_for_servers()
    async with contextlib.AsyncExitStack() as exits:
        await exits.enter_async_context(database(names))
        await exits.enter_async_context(redis_database(names))
        await exits.enter_async_context(own_topology(names))
        up = time.monotonic()
        stack = await exits.enter_async_context(local_stack(names, work / "stack", plan))
        stack_up_s = time.monotonic() - up
        api_key = await asyncio.to_thread(create_tenant, stack, f"bench-{names.run}")
        raw = RawTriton(stack, plan)
        half = plan.raw_s / 2
        print(
            f"stack up in {stack_up_s:.0f} s; raw Triton for {half:.0f} s (batch {BATCH_SIZE}, "
            f"{IN_FLIGHT} in flight), the pipeline idle",
            flush=True,
        )
        before = await raw.measure(half)
        print(
            f"raw Triton: {before.slices_per_s:.1f} slices/s; the pipeline: {len(photos)} photos "
            "in one upload",
            flush=True,
        )
        pipeline = await asyncio.to_thread(measure_pipeline, stack, api_key, photos, plan)
        print(
            f"the pipeline: {pipeline.slices_per_s:.1f} slices/s; raw Triton again for "
            f"{half:.0f} s",
            flush=True,
        )
        after = await raw.measure(half)
        log = (stack.directory / "stack.log").read_text(errors="replace")
    return Result(plan, before, after, pipeline, stack_up_s, disturbances(log), chunks_planned(log))


# Roles that are not the services measured against Triton: Triton itself and this process.
NOT_SERVICES = frozenset({"triton", "bench"})
# Roles shown one by one in the comparison with an earlier run, the rest summed under "others".
SERVICES = ("detector", "upload", "orchestrator", "gateway", "projector", "s3", "edge")
OTHERS = "servers and other processes"


@dataclass(frozen=True, slots=True)
class Figures:
    """What a run is compared with another on: from its Result, or from the JSON it wrote
    (`--json`), read from the fields every run has written, so an earlier run's file serves."""

    ratio: float
    steady_ratio: float | None
    raw_slices_per_s: float
    pipeline_slices_per_s: float
    triton_ms: tuple[float, float]  # compute per slice: raw phase, pipeline phase
    cpu_ms: dict[str, float]  # CPU per slice in the pipeline phase by role, and OTHERS
    warnings: list[str]  # what made that run's figures doubtful

    @property
    def services_ms(self) -> float:
        """Everything outside Triton: the stack's processes and the servers under them."""
        return sum(v for k, v in self.cpu_ms.items() if k not in NOT_SERVICES)

    @classmethod
    def of(cls, result: Result) -> Figures:
        return cls.from_json(json.loads(json.dumps(to_json(result))))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Figures:
        def triton_ms(*counters: dict[str, int]) -> float:
            inferences = sum(c["inferences"] for c in counters)
            return sum(c["running_ns"] for c in counters) / 1e6 / inferences

        pipe = data["pipeline"]
        usage, slices = pipe["usage"], pipe["slices"]
        cpu = {role: s * 1000 / slices for role, s in usage["cpu_s"].items()}
        cpu[OTHERS] = (usage["machine_busy_s"] - sum(usage["cpu_s"].values())) * 1000 / slices
        steady = data["steady_slices_per_s"]
        raw = [data[k]["usage"]["triton"] for k in ("raw_before", "raw_after")]
        return cls(
            ratio=data["ratio"],
            steady_ratio=steady / data["raw_slices_per_s"] if steady else None,
            raw_slices_per_s=data["raw_slices_per_s"],
            pipeline_slices_per_s=data["pipeline_slices_per_s"],
            triton_ms=(triton_ms(*raw), triton_ms(usage["triton"])),
            cpu_ms=cpu,
            warnings=list(data.get("warnings", [])),
        )


def compared_rows(before: Figures, now: Figures) -> list[Row]:
    def pair(a: float | None, b: float | None, spec: str) -> str:
        def one(v: float | None) -> str:
            return "—" if v is None else format(v, spec)

        change = f" ({b / a:.2f}×)" if a and b is not None else ""
        return f"{one(a)} → {one(b)}{change}"

    rows = [
        Row("ratio pipeline / raw, whole run", pair(before.ratio, now.ratio, ".3f")),
        Row(
            "ratio pipeline / raw, steady state", pair(before.steady_ratio, now.steady_ratio, ".3f")
        ),
        Row("raw Triton, slices/s", pair(before.raw_slices_per_s, now.raw_slices_per_s, ".1f")),
        Row(
            "whole pipeline, slices/s",
            pair(before.pipeline_slices_per_s, now.pipeline_slices_per_s, ".1f"),
        ),
        Row(
            "Triton compute per slice, raw, ms",
            pair(before.triton_ms[0], now.triton_ms[0], ".1f"),
        ),
        Row(
            "Triton compute per slice, pipeline, ms",
            pair(before.triton_ms[1], now.triton_ms[1], ".1f"),
        ),
        Row("CPU per slice in the pipeline phase, ms", ""),
        Row("  triton", pair(before.cpu_ms.get("triton"), now.cpu_ms.get("triton"), ".2f")),
    ]
    rest = [r for r in before.cpu_ms | now.cpu_ms if r not in NOT_SERVICES and r != OTHERS]
    for role in sorted(
        rest, key=lambda r: (r not in SERVICES, SERVICES.index(r) if r in SERVICES else 0, r)
    ):
        rows.append(Row(f"  {role}", pair(before.cpu_ms.get(role), now.cpu_ms.get(role), ".2f")))
    rows += [
        Row(f"  {OTHERS}", pair(before.cpu_ms[OTHERS], now.cpu_ms[OTHERS], ".2f")),
        Row(
            "  everything outside Triton (the bench left out)",
            pair(before.services_ms, now.services_ms, ".2f"),
        ),
    ]
    return rows


def _per_slice_ms(usage: Usage) -> float:
    t = usage.triton
    return t.busy_s * 1000 / t.inferences if t.inferences else float("nan")


def _throughput_rows(result: Result) -> list[Row]:
    plan, raw, pipe = result.plan, result.raw, result.pipeline
    steady = pipe.steady_slices_per_s
    rows = [
        Row(
            "raw Triton, pipeline idle (before / after it)",
            f"{raw.slices_per_s:.1f} slices/s ({result.raw_before.slices_per_s:.1f} / "
            f"{result.raw_after.slices_per_s:.1f}; {raw.slices:,} slices in {raw.seconds:.1f} s)",
        ),
        Row(
            "how the slices reached Triton (raw; the detector was told the same)",
            "through shared memory"
            if raw.shared_memory
            else f"inside the gRPC requests (--shared-memory {plan.shared_memory})",
        ),
        Row(
            "whole pipeline, upload start → last job completed",
            f"{pipe.slices_per_s:.1f} slices/s ({pipe.photos} photos of {plan.width}x"
            f"{plan.height}, {pipe.slices:,} slices in {pipe.wall_s:.1f} s)",
        ),
        Row(
            "ratio pipeline / raw",
            f"{result.ratio:.3f}",
            f"≥ {TARGET}",
            # No verdict on a disturbed run: the warnings under the table say why.
            False if pipe.failed else None if warnings(result) else result.ratio >= TARGET,
        ),
        Row(
            "steady state (10 % → 90 % of the slices done)",
            f"{steady:.1f} slices/s = {steady / raw.slices_per_s:.3f} of raw"
            if steady
            else "— (the polls saw too little)",
        ),
    ]
    if pipe.failed:
        rows.append(Row("jobs not completed", "; ".join(pipe.failed)))
    return rows


def _timeline_rows(result: Result) -> list[Row]:
    pipe = result.pipeline
    jobs = sorted(pipe.jobs, key=lambda j: j.completed_s)
    work = sorted(j.completed_s - j.started_s for j in jobs)
    last_slice = f"{pipe.last_slice_s:.1f}" if pipe.last_slice_s is not None else "—"
    return [
        Row(
            "upload request (every photo in one)",
            f"{pipe.upload_s:.2f} s for {pipe.upload_bytes / 1e6:.1f} MB",
        ),
        Row("first chunk started at the detector", f"{min(j.started_s for j in jobs):.2f} s"),
        Row("first job completed", f"{jobs[0].completed_s:.2f} s"),
        Row(
            "last slice counted (polling) / last job completed",
            f"{last_slice} / {pipe.wall_s:.2f} s",
        ),
        Row(
            "one job, started → completed",
            f"median {work[len(work) // 2]:.2f} s, max {work[-1]:.2f} s",
        ),
    ]


def _triton_rows(result: Result) -> list[Row]:
    raw, pipe = result.raw.usage, result.pipeline.usage
    busy = pipe.triton_busy / raw.triton_busy if raw.triton_busy else float("nan")
    speed = _per_slice_ms(raw) / _per_slice_ms(pipe)
    chunks = f", {result.chunks} chunks" if result.chunks else ""
    return [
        Row(
            "busy (model running / wall time)",
            f"raw {raw.triton_busy:.0%}, pipeline {pipe.triton_busy:.0%}",
        ),
        Row(
            "compute per slice",
            f"raw {_per_slice_ms(raw):.1f} ms, pipeline {_per_slice_ms(pipe):.1f} ms",
        ),
        Row(
            "  the ratio as busy share × compute speed",
            f"{busy:.3f} × {speed:.3f} = {busy * speed:.3f}",
        ),
        Row(
            "slices per request",
            f"raw {_slices_per_request(raw)}, pipeline {_slices_per_request(pipe)}{chunks}",
        ),
        Row(
            "requests per model run (dynamic batching)",
            f"raw {_joined(raw)}, pipeline {_joined(pipe)}",
        ),
        *_idle_rows(result),
    ]


def _idle_rows(result: Result) -> list[Row]:
    """Triton's idle time in the pipeline phase, split where it fell: before the first chunk,
    after the last slice, and between chunks (the rest)."""
    pipe = result.pipeline
    usage = pipe.usage
    idle = usage.wall_s - usage.triton.busy_s
    rows = [Row("idle in the pipeline phase", f"{idle:.1f} s of {usage.wall_s:.1f} s")]
    if pipe.last_slice_s is None:
        return rows
    before = min(j.started_s for j in pipe.jobs)
    after = max(0.0, usage.wall_s - pipe.last_slice_s)
    between = idle - before - after
    per_chunk = f" ({between / result.chunks * 1000:.0f} ms a chunk)" if result.chunks else ""
    return [
        *rows,
        Row("  before the first chunk (upload, planning)", f"{before:.1f} s"),
        Row("  between chunks (the detector's turnaround)", f"{between:.1f} s{per_chunk}"),
        Row("  after the last slice (merge, storing, last poll)", f"{after:.1f} s"),
    ]


def _slices_per_request(usage: Usage) -> str:
    t = usage.triton
    return f"{t.inferences / t.requests:.2f}" if t.requests else "—"


def _joined(usage: Usage) -> str:
    t = usage.triton
    return f"{t.requests / t.executions:.2f}" if t.executions else "—"


def _cpu_rows(raw: Usage, pipeline: Usage, slices: int) -> list[Row]:
    rows = [
        Row(
            f"  {role}",
            f"{raw.cores(role):.2f} / {pipeline.cores(role):.2f} "
            f"({pipeline.cpu_s[role] * 1000 / slices:.1f} ms a slice)",
        )
        for role in pipeline.cpu_s
        if raw.cores(role) >= 0.005 or pipeline.cores(role) >= 0.005
    ]
    cores = os.cpu_count() or 1
    rows += [
        Row(
            "  other processes (RabbitMQ, PostgreSQL, Redis, …)",
            f"{raw.others_cores:.2f} / {pipeline.others_cores:.2f}",
        ),
        Row(
            "  idle",
            f"{cores - raw.machine_busy_s / raw.wall_s:.2f} / "
            f"{cores - pipeline.machine_busy_s / pipeline.wall_s:.2f}",
        ),
    ]
    return rows


def sections(result: Result, baseline: tuple[Path, Figures] | None = None) -> list[Section]:
    pipe = result.pipeline
    compared = []
    if baseline is not None:
        path, before = baseline
        compared.append(
            Section(f"Before ({path}) → this run", compared_rows(before, Figures.of(result)))
        )
    return [
        Section(
            f"Throughput: batch {BATCH_SIZE}, {IN_FLIGHT} requests in flight, "
            f"{SliceParams().slice_size} px slices",
            _throughput_rows(result),
        ),
        Section(
            "The pipeline's timeline (seconds from the upload's start)", _timeline_rows(result)
        ),
        Section("Triton, from its own statistics", _triton_rows(result)),
        Section(
            f"CPU, cores busy on average: raw phase / pipeline phase (of {os.cpu_count()})",
            _cpu_rows(result.raw.usage, pipe.usage, pipe.slices),
        ),
        *compared,
    ]


def warnings(result: Result) -> list[str]:
    """What makes this run's figures doubtful."""
    found = [f"{d}: the figures measured a recovery" for d in result.disturbances]
    if result.pipeline.poll_errors:
        found.append(f"{result.pipeline.poll_errors} polls of the session failed")
    busiest = max(result.raw.usage.others_cores, result.pipeline.usage.others_cores)
    if busiest > 0.25:
        found.append(
            f"processes outside the stack used up to {busiest:.2f} cores on average (another "
            "test or benchmark on this machine?): both figures are disturbed"
        )
    if result.raw_drift > 0.1:
        found.append(
            f"raw Triton differs by {result.raw_drift:.0%} before and after the pipeline: the "
            "machine's load changed during the run"
        )
    return found


def to_json(result: Result) -> dict[str, Any]:
    return {
        "raw_slices_per_s": result.raw.slices_per_s,
        "pipeline_slices_per_s": result.pipeline.slices_per_s,
        "ratio": result.ratio,
        "target": TARGET,
        "steady_slices_per_s": result.pipeline.steady_slices_per_s,
        "raw_drift": result.raw_drift,
        "warnings": warnings(result),
        "batch_size": BATCH_SIZE,
        "in_flight": IN_FLIGHT,
        "machine": machine(),
        **dataclasses.asdict(result),
    }


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    try:
        return int(width), int(height)
    except ValueError:
        raise argparse.ArgumentTypeError(f"WIDTHxHEIGHT, not {text!r}") from None


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C: the stack stopped, the database dropped."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tally-bench-pipeline", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--photos", type=int, default=16, help="photos uploaded (default: 16)")
    parser.add_argument(
        "--size",
        type=_size,
        default=(4000, 3000),
        help="WIDTHxHEIGHT of each photo (default: 4000x3000)",
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=30.0,
        help="raw Triton's measuring time, half before the pipeline, half after (default: 30)",
    )
    parser.add_argument(
        "--json", type=Path, metavar="PATH", help="write every figure there as JSON"
    )
    parser.add_argument(
        "--shared-memory",
        choices=["auto", "on", "off"],
        default="auto",
        help="how slices reach Triton, in the detector (TALLY_TRITON_SHARED_MEMORY) and in the "
        "raw figure alike (default: auto)",
    )
    parser.add_argument(
        "--chunk-slices",
        type=int,
        metavar="N",
        help="slices per chunk (the orchestrator's TALLY_CHUNK_SLICES; default: its own)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="PATH",
        help="an earlier run's --json: its figures are printed beside this run's",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the stack's directory and logs (kept anyway when the run fails)",
    )
    args = parser.parse_args(argv)
    if args.photos < 1:
        parser.error("--photos must be at least 1")
    # Read before the run: `--baseline` and `--json` may name the same file (the last run).
    baseline = (
        (args.baseline, Figures.from_json(json.loads(args.baseline.read_text())))
        if args.baseline
        else None
    )
    width, height = args.size
    plan = Plan(
        args.photos,
        width,
        height,
        args.seconds,
        keep_logs=args.keep_logs,
        shared_memory=args.shared_memory,
        chunk_slices=args.chunk_slices,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    result = asyncio.run(bench(plan))
    print(
        f"\nTally pipeline against raw Triton — {machine()}; "
        f"stack up in {result.stack_up_s:.0f} s, run took {time.monotonic() - started:.0f} s"
    )
    print(render(sections(result, baseline)))
    for warning in warnings(result):
        print(f"warning: {warning}")
    if baseline is not None:
        for warning in baseline[1].warnings:
            print(f"warning: the earlier run ({baseline[0]}): {warning}")
    if args.json:
        args.json.write_text(json.dumps(to_json(result), indent=1) + "\n")
        print(f"\nfigures: {args.json}")
    return 0 if not result.pipeline.failed else 1


if __name__ == "__main__":
    sys.exit(main())
