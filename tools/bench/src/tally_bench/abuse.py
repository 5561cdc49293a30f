"""`tally-bench-abuse` (make bench-abuse): a noisy neighbour against the rate limits, one run.

Tenant B polls its 50-job session open-loop (`--pollers` pollers, each every `--interval`
seconds, latency from each request's scheduled time) alone, then while tenant A floods, one
flood after the other, each at an offered rate (`--flood-rate`, 0: back to back) and bounded in
time and in requests, loopback only:

1. `jobs`: GET /v1/jobs?limit=200 with A's key (A has 200 jobs: the dearest read there is),
2. `polls`: polls of A's own session with A's key,
3. `unknown-keys`: a made-up API key on each request (each one a database lookup, were the
   lookups not limited per address).

It prints B's p50 and p99 alone and under each flood side by side, and how A was answered (its
429s, and how many said when to retry). Each tenant's requests carry the X-Forwarded-For the
edge would set for it (A and B are different clients). The gateway runs as a subprocess with
its default limits (TALLY_LIMIT_* of the environment are not passed), on the bench's own
database, Redis database (12, or TALLY_BENCH_REDIS_URL) and bus prefix, as bench-status does.
Targets (B's p50 within +20 % of its idle p50, its p99 ≤ 100 ms, no 429 for B) are PASS/MISS;
a miss never fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from redis.asyncio import Redis

from tally_bench._flood import FloodParams, FloodResult, run_flood
from tally_bench._openloop import OpenLoopParams, OpenLoopResult, run_open_loop
from tally_bench._report import Row, Section, latencies, machine, render
from tally_bench._seed import SeededSession, history, publish_histories, seed_records, wait_folded
from tally_bench._stack import UNLIMITED, Names, Services, bench_bus, database, redis_database
from tally_bench._stats import Latencies

FLOODS: Final = ("jobs", "polls", "unknown-keys")
A_ADDRESS: Final = "203.0.113.10"  # what the edge would forward for each tenant's client
B_ADDRESS: Final = "203.0.113.20"


@dataclass(frozen=True, slots=True)
class Plan:
    idle_s: float = 15.0
    flood_s: float = 15.0
    pollers: int = 40
    interval_s: float = 2.0  # B: 20 polls/s, well within a key's read rate
    connections: int = 8  # B's keep-alive connections
    flood_connections: int = 16  # A's
    flood_rate: float = 1000.0  # A's offered requests/s, 20× a key's read rate; 0: back to back
    max_requests: int = 50_000  # per flood
    floods: tuple[str, ...] = FLOODS
    settle_s: float = 2.0  # between phases: the gateway's queue drains
    limits: bool = True  # False: the gateway with every rate limit lifted (what it was before)


@dataclass(frozen=True, slots=True)
class Phase:
    flood: str  # "" for B alone
    b: OpenLoopResult
    a: FloodResult | None


@dataclass(frozen=True, slots=True)
class AbuseRun:
    phases: list[Phase]

    @property
    def idle(self) -> Phase:
        return self.phases[0]


@dataclass(frozen=True, slots=True)
class _Tenant:
    key: str
    polled: SeededSession


async def _tenant(dsn: str, jobs: int) -> _Tenant:
    seed = await seed_records(dsn, polled_jobs=jobs, fanout_sessions=0, fanout_jobs=0, hot_jobs=1)
    return _Tenant(seed.api_key, seed.polled)


def _b_params(url: str, b: _Tenant, plan: Plan, duration_s: float) -> OpenLoopParams:
    return OpenLoopParams(
        url,
        f"/v1/sessions/{b.polled.id}/jobs",
        {"Authorization": f"Bearer {b.key}", "X-Forwarded-For": B_ADDRESS},
        pollers=plan.pollers,
        interval_s=plan.interval_s,
        duration_s=duration_s,
        connections=plan.connections,
        grace_s=5.0,
    )


def _a_params(url: str, a: _Tenant, plan: Plan, flood: str) -> FloodParams:
    auth = {"Authorization": f"Bearer {a.key}", "X-Forwarded-For": A_ADDRESS}
    path, headers, made_up = {
        "jobs": ("/v1/jobs?limit=200", auth, False),
        "polls": (f"/v1/sessions/{a.polled.id}/jobs", auth, False),
        "unknown-keys": ("/v1/jobs", {"X-Forwarded-For": A_ADDRESS}, True),
    }[flood]
    return FloodParams(
        url,
        path,
        headers,
        plan.flood_connections,
        plan.flood_s,
        plan.max_requests,
        made_up,
        plan.flood_rate,
    )


async def run(plan: Plan, names: Names | None = None, logs: Path | None = None) -> AbuseRun:
    """Set up (database, Redis, bus, projector, gateway; two tenants), then B alone, then B
    under each of A's floods. Everything is removed at the end, error or not."""
    names = names or Names.fresh()
    own_logs = logs is None
    logs = logs or Path(tempfile.mkdtemp(prefix=f"tally-bench-abuse-{names.run}-"))
    services = Services(names, logs, gateway_env=None if plan.limits else UNLIMITED)
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    try:
        async with contextlib.AsyncExitStack() as stack:
            dsn = await stack.enter_async_context(database(names))
            redis: Redis = await stack.enter_async_context(redis_database(names))
            bus = await stack.enter_async_context(bench_bus(names))
            stack.callback(services.stop_all)
            a, b = await _tenant(dsn, 200), await _tenant(dsn, 50)
            await services.projector()
            _, url = await services.gateway()
            rng = random.Random(7)
            origin = datetime.now(UTC) - timedelta(minutes=10)
            jobs = a.polled.jobs + b.polled.jobs
            histories = [history(job, i, rng, origin) for i, job in enumerate(jobs)]
            await publish_histories(bus, histories)
            await wait_folded(
                redis, {j.job_id: h.last_sequence for j, h in zip(jobs, histories, strict=True)}
            )
            # One process polls as B, another floods as A: neither shares a core's event
            # loop with the bench (which only waits).
            poller = stack.enter_context(
                concurrent.futures.ProcessPoolExecutor(1, mp_context=context)
            )
            flooder = stack.enter_context(
                concurrent.futures.ProcessPoolExecutor(1, mp_context=context)
            )
            await asyncio.gather(
                loop.run_in_executor(poller, os.getpid), loop.run_in_executor(flooder, os.getpid)
            )
            print(f"B alone: {plan.pollers} pollers every {plan.interval_s:g} s", flush=True)
            idle = await loop.run_in_executor(
                poller, run_open_loop, _b_params(url, b, plan, plan.idle_s)
            )
            phases = [Phase("", idle, None)]
            for flood in plan.floods:
                await asyncio.sleep(plan.settle_s)
                print(f"B while A floods {flood} for {plan.flood_s:g} s", flush=True)
                polled, flooded = await asyncio.gather(
                    loop.run_in_executor(
                        poller, run_open_loop, _b_params(url, b, plan, plan.flood_s)
                    ),
                    loop.run_in_executor(flooder, run_flood, _a_params(url, a, plan, flood)),
                )
                phases.append(Phase(flood, polled, flooded))
    finally:
        if own_logs:
            shutil.rmtree(logs, ignore_errors=True)
    return AbuseRun(phases)


def _b_rows(name: str, result: OpenLoopResult, idle: Latencies | None) -> list[Row]:
    lat = Latencies.of(result.latencies_ms)
    refused = result.error_kinds.get("HTTP 429", 0)
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(result.error_kinds.items()))
    rows = [
        Row(
            f"{name}: B answered",
            f"{result.ok:,} of {result.scheduled:,} 200"
            + (f" ({kinds}; {result.unfinished} unanswered)" if kinds or result.unfinished else ""),
            "all 200, no 429",
            result.ok == result.scheduled and refused == 0,
        )
    ]
    if idle is None:
        rows.append(Row(f"{name}: B's latency", latencies(lat)))
        return rows
    within = idle.p50 * 1.2
    rows += [
        Row(
            f"{name}: B's p50 (idle {idle.p50:.1f} ms)",
            f"{lat.p50:.1f} ms ({(lat.p50 / idle.p50 - 1) * 100:+.0f} %)",
            f"≤ {within:.1f} ms (+20 %)",
            lat.count > 0 and lat.p50 <= within,
        ),
        Row(
            f"{name}: B's p99 (idle {idle.p99:.1f} ms)",
            f"{lat.p99:.1f} ms (max {lat.max:.1f} ms)",
            "≤ 100 ms",
            lat.count > 0 and lat.p99 <= 100,
        ),
    ]
    return rows


def _a_row(name: str, result: FloodResult) -> Row:
    answered = ", ".join(f"{n:,}× {status}" for status, n in sorted(result.statuses.items()))
    refused = result.statuses.get(429, 0)
    return Row(
        f"{name}: A's requests",
        f"{result.sent:,} in {result.elapsed_s:.1f} s ({result.rps:,.0f}/s): {answered}; "
        f"{result.retry_after:,} of the 429s with Retry-After"
        + (f"; {result.errors} broken" if result.errors else ""),
        "429s, each with Retry-After",
        refused > 0 and result.retry_after == refused,
    )


def report(run: AbuseRun, plan: Plan) -> list[Section]:
    idle = Latencies.of(run.idle.b.latencies_ms)
    rate = plan.pollers / plan.interval_s
    sections = [
        Section(
            f"B alone: {plan.pollers} pollers every {plan.interval_s:g} s ({rate:g} polls/s) "
            f"for {plan.idle_s:g} s, GET …/jobs of a 50-job session",
            _b_rows("idle", run.idle.b, None),
        )
    ]
    offered = f"{plan.flood_rate:g}/s offered" if plan.flood_rate else "back to back"
    for phase in run.phases[1:]:
        assert phase.a is not None
        sections.append(
            Section(
                f"A floods {phase.flood} ({offered} on {plan.flood_connections} connections, at "
                f"most {plan.max_requests:,} requests in {plan.flood_s:g} s) while B polls",
                [*_b_rows(phase.flood, phase.b, idle), _a_row(phase.flood, phase.a)],
            )
        )
    return sections


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C: every process stopped, the database dropped."""
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    default = Plan()
    parser = argparse.ArgumentParser(prog="tally-bench-abuse", description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=default.idle_s)
    parser.add_argument("--flood-seconds", type=float, default=default.flood_s)
    parser.add_argument("--pollers", type=int, default=default.pollers)
    parser.add_argument("--interval", type=float, default=default.interval_s)
    parser.add_argument("--flood-connections", type=int, default=default.flood_connections)
    parser.add_argument(
        "--flood-rate",
        type=float,
        default=default.flood_rate,
        help="A's offered requests per second (0: every connection back to back)",
    )
    parser.add_argument(
        "--floods",
        default=",".join(FLOODS),
        help=f"which, comma-separated, of {', '.join(FLOODS)}",
    )
    parser.add_argument(
        "--no-limits",
        action="store_true",
        help="the gateway with every rate limit lifted: the same floods without the limits",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs (a smoke test of the bench itself)"
    )
    args = parser.parse_args(argv)
    floods = tuple(f.strip() for f in args.floods.split(",") if f.strip())
    if set(floods) - set(FLOODS):
        parser.error(f"unknown floods: {', '.join(sorted(set(floods) - set(FLOODS)))}")
    plan = Plan(
        idle_s=3 if args.quick else args.idle_seconds,
        flood_s=3 if args.quick else args.flood_seconds,
        pollers=args.pollers,
        interval_s=args.interval,
        flood_connections=args.flood_connections,
        flood_rate=args.flood_rate,
        floods=floods,
        limits=not args.no_limits,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    result = asyncio.run(run(plan))
    print(
        f"\nTally under a noisy neighbour — {machine()}; gateway "
        f"{'with its default limits' if plan.limits else 'with every rate limit lifted'}; "
        f"run took {time.monotonic() - started:.0f} s"
    )
    print(render(report(result, plan)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
