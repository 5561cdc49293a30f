"""`tally-bench-status` (make bench-status): the status path under load, side by side, in one run.

1. Polling saturation: wrk (-t1 -c50) on `GET /v1/sessions/{sid}/jobs` of a 50-job session on the
   real gateway, 200 and 304 (If-None-Match) paths, against the seeds' N+1 reference endpoint
   reading the same Redis data.
2. Open-loop polling: 2,000 pollers each polling every 2 s (1,000 requests/s) from a load
   generator in its own process, latency from each request's scheduled time.
3. SSE fan-out: (A) 200 sessions × 10 subscribers while 200 JobEvents/s flow bus → projector →
   Redis → gateway; (B) one session, 500 subscribers, 50 events/s; (C, `10k`) 10,000 streams on
   one gateway process: 1,000 sessions × 9 subscribers and one session × 1,000, 200 + 10
   events/s, clients in 4 processes, memory per connection against 32 KiB. Delivery latency is
   the arrival time of a `job` frame minus its `updated_at` (the event's emitted_at).
4. End-to-end status latency under A's load: a probe job's progress event, from its publication
   until a back-to-back poller, and an SSE subscriber, see it.
5. Big sessions (tally_bench._big): a 50-job and a 2,000-job session side by side (unchanged
   poll, poll after a change, `since` after 10 changes, a page of 100, session read, SSE
   connect), another tenant's poll latency while the big one is read 10 times a second, and
   Redis's SLOWLOG meanwhile.

Everything runs on this machine's PostgreSQL, Redis and RabbitMQ, in the bench's own database,
Redis database (12, or TALLY_BENCH_REDIS_URL; the tests use 13 to 15) and bus prefix; the
gateway and projector run as subprocesses, as in production. Targets are reported as PASS/MISS;
a miss never fails the run.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import dataclasses
import json
import multiprocessing
import random
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from tally_bench import _http
from tally_bench._big import BigPlan, big_sessions
from tally_bench._fanout import FanoutParams, FanoutProcess, FanoutResult
from tally_bench._feed import Feed, Prober, Visibility, feed_progress
from tally_bench._openloop import OpenLoopParams, OpenLoopResult, run_open_loop
from tally_bench._report import Row, Section, latencies, machine, ms, render
from tally_bench._seed import (
    Seed,
    history,
    publish_histories,
    seed_records,
    wait_folded,
)
from tally_bench._stack import (
    UNCAPPED_STREAMS,
    UNLIMITED,
    Names,
    Service,
    Services,
    bench_bus,
    database,
    redis_database,
)
from tally_bench._stats import Latencies
from tally_bench._wrk import WrkResult, ensure_wrk, run_wrk
from tally_bus import Bus
from tally_contracts.v1 import JobRef

SCENARIOS = ("polling", "open-loop", "big", "fanout", "hot", "10k")
# Each job's chunks so far, over every scenario of the run: 3C feeds the jobs 3A and 3B fed.
CHUNKS: Counter[str] = Counter()


@dataclass(frozen=True, slots=True)
class Plan:
    wrk_s: float
    open_loop_s: float
    fanout_s: float
    hot_s: float
    scenarios: frozenset[str] = frozenset(SCENARIOS)
    gateway_redis_pool: int | None = None
    keep_logs: bool = False
    pollers: int = 2000
    poll_interval_s: float = 2.0
    connections: int = 250
    sessions: int = 200
    per_session: int = 10
    fanout_rate: float = 200.0
    hot_subscribers: int = 500
    hot_rate: float = 50.0
    probes: int = 50
    client_processes: int = 2
    big: BigPlan = dataclasses.field(default_factory=BigPlan)
    # 3C: 10,000 streams on one gateway (many sessions, and one hot session beside them).
    streams_s: float = 15.0
    streams_sessions: int = 1000
    streams_per_session: int = 9
    streams_hot: int = 1000
    streams_rate: float = 200.0  # over the many sessions' jobs
    streams_hot_rate: float = 10.0
    streams_processes: int = 4


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _wrk_value(result: WrkResult) -> str:
    value = f"{result.rps:,.0f} req/s  p50 {ms(result.p50_ms)}  p99 {ms(result.p99_ms)}"
    errors = result.bad_status + result.socket_errors
    return value + (f"  ({errors} errors)" if errors else "")


async def check_polled(gateway: str, reference: str, seed: Seed) -> _http.Response:
    """Both endpoints answer with every job of the polled session (before a scenario, and after
    it: a figure measured on a Redis that something else flushed meanwhile is worthless)."""
    tally = await _http.get(
        gateway, f"/v1/sessions/{seed.polled.id}/jobs", {"Authorization": f"Bearer {seed.api_key}"}
    )
    ref = await _http.get(reference, f"/sessions/{seed.polled.id}/jobs")
    for name, answer in (("the gateway", tally), ("the reference", ref)):
        jobs = json.loads(answer.body).get("jobs", []) if answer.status == 200 else []
        if len(jobs) != len(seed.polled.jobs):
            raise RuntimeError(
                f"{name} answered {answer.status} with {len(jobs)} of {len(seed.polled.jobs)} "
                "jobs: did something else flush the bench's Redis database?"
            )
    return tally


async def polling_saturation(
    wrk: str, gateway: str, reference: str, seed: Seed, plan: Plan
) -> Section:
    path = f"/v1/sessions/{seed.polled.id}/jobs"
    auth = {"Authorization": f"Bearer {seed.api_key}"}
    first = await check_polled(gateway, reference, seed)
    etag = first.headers["etag"]
    cached = await _http.get(gateway, path, auth | {"If-None-Match": etag})
    if cached.status != 304:
        raise RuntimeError(f"If-None-Match got {cached.status}, not 304")
    ref_path = f"/sessions/{seed.polled.id}/jobs"

    def run(url: str, headers: dict[str, str], seconds: float) -> WrkResult:
        return run_wrk(wrk, url, headers, connections=50, threads=1, duration_s=seconds)

    print(f"1. polling saturation: wrk -t1 -c50 for {plan.wrk_s:.0f} s each", flush=True)
    warm = min(2.0, plan.wrk_s)
    await asyncio.to_thread(run, gateway + path, auth, warm)
    await asyncio.to_thread(run, reference + ref_path, {}, warm)
    full = await asyncio.to_thread(run, gateway + path, auth, plan.wrk_s)
    not_modified = await asyncio.to_thread(
        run, gateway + path, auth | {"If-None-Match": etag}, plan.wrk_s
    )
    n_plus_1 = await asyncio.to_thread(run, reference + ref_path, {}, plan.wrk_s)
    await check_polled(gateway, reference, seed)
    ratio_200 = _ratio(full.rps, n_plus_1.rps)
    ratio_304 = _ratio(not_modified.rps, n_plus_1.rps)
    return Section(
        f"1. Polling saturation: wrk -t1 -c50, {plan.wrk_s:.0f} s each, "
        f"GET …/jobs of a {len(seed.polled.jobs)}-job session ({len(first.body):,} bytes)",
        [
            Row("Tally, 200 path", _wrk_value(full)),
            Row("Tally, 304 path (If-None-Match)", _wrk_value(not_modified)),
            Row("reference N+1 (no auth, no ETag)", _wrk_value(n_plus_1)),
            Row("Tally/reference, 200", f"{ratio_200:.1f}×", "≥ 10×", ratio_200 >= 10),
            Row("Tally/reference, 304", f"{ratio_304:.1f}×", "≥ 15×", ratio_304 >= 15),
        ],
    )


def _open_loop_rows(name: str, result: OpenLoopResult, target_ms: float | None) -> list[Row]:
    lat = Latencies.of(result.latencies_ms)
    # Unanswered requests count as slower than any answer: p99 cannot hide them.
    missing = result.errors + result.unfinished
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(result.error_kinds.items()))
    p99_ok = lat.count > 0 and missing <= 0.01 * result.scheduled
    p99 = lat.p99 if p99_ok else float("inf")
    return [
        Row(
            f"{name}: achieved",
            f"{result.achieved_rps:,.0f} req/s ({result.ok:,} of {result.scheduled:,} answered"
            f" 200; {result.errors} errors{f' ({kinds})' if kinds else ''}, "
            f"{result.unfinished} unanswered)",
        ),
        Row(
            f"{name}: latency",
            latencies(lat),
            f"p99 ≤ {target_ms:.0f} ms" if target_ms else "",
            p99 <= target_ms if target_ms else None,
        ),
    ]


async def open_loop_polling(gateway: str, reference: str, seed: Seed, plan: Plan) -> Section:
    rate = plan.pollers / plan.poll_interval_s
    print(
        f"2. open-loop polling: {plan.pollers:,} pollers every {plan.poll_interval_s:.0f} s "
        f"({rate:,.0f} req/s) for {plan.open_loop_s:.0f} s each",
        flush=True,
    )
    tally = OpenLoopParams(
        gateway,
        f"/v1/sessions/{seed.polled.id}/jobs",
        {"Authorization": f"Bearer {seed.api_key}"},
        pollers=plan.pollers,
        interval_s=plan.poll_interval_s,
        duration_s=plan.open_loop_s,
        connections=plan.connections,
        grace_s=3.0,
    )
    ref = dataclasses.replace(
        tally, url=reference, path=f"/sessions/{seed.polled.id}/jobs", headers={}
    )
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        tally_result = await loop.run_in_executor(pool, run_open_loop, tally)
        ref_result = await loop.run_in_executor(pool, run_open_loop, ref)
    await check_polled(gateway, reference, seed)
    return Section(
        f"2. Open-loop polling: {plan.pollers:,} pollers every {plan.poll_interval_s:.0f} s = "
        f"{rate:,.0f} req/s offered for {plan.open_loop_s:.0f} s over {plan.connections} "
        "keep-alive connections, 200 path, latency from the scheduled time",
        _open_loop_rows("Tally", tally_result, 25) + _open_loop_rows("reference", ref_result, None),
    )


@dataclass(frozen=True, slots=True)
class FanoutRun:
    wanted: int
    subscribers: int
    ready_per_session: dict[str, int]
    refused: dict[int, int]
    rss_before_kib: int
    rss_after_kib: int
    rss_end_kib: int
    cpu_s: float  # the gateway's, while events flowed
    load_s: float
    feed: Feed
    results: list[FanoutResult]
    visibility: Visibility | None


def _spread(subscriptions: dict[str, int], parts: int) -> list[dict[str, int]]:
    """Each session's subscribers split evenly over `parts` client processes (the remainders
    taken in turn), so that every process carries the same load."""
    shares: list[dict[str, int]] = [{} for _ in range(parts)]
    turn = 0
    for session, n in subscriptions.items():
        each, extra = divmod(n, parts)
        for k in range(parts):
            count = each + (1 if (k - turn) % parts < extra else 0)
            if count:
                shares[k][session] = count
        turn = (turn + extra) % parts
    return shares


def _merged(feeds: Sequence[Feed]) -> Feed:
    merged = Feed()
    for feed in feeds:
        merged.per_session.update(feed.per_session)
        merged.failed += feed.failed
        merged.late_s = max(merged.late_s, feed.late_s)
    return merged


async def _warm_up(url: str, api_key: str, subscriptions: dict[str, int], streams: int) -> None:
    """`streams` streams opened and closed: what the gateway loads and builds once, at its first
    streams, is not counted as memory per connection."""
    some = dict.fromkeys(list(subscriptions)[:streams], 1)
    client = FanoutProcess(FanoutParams(url, api_key, some))
    try:
        await client.connected()
        client.start(time.time())
        await client.stop()
    finally:
        client.kill()
    await asyncio.sleep(1.0)  # their leases released, their feeds stopped


async def fanout(
    gateway: Service,
    url: str,
    bus: Bus,
    subscriptions: dict[str, int],
    traffic: Sequence[tuple[Sequence[JobRef], float]],
    duration_s: float,
    plan: Plan,
    prober: Prober | None,
    api_key: str,
    processes: int | None = None,
    warm_up: int = 0,
) -> FanoutRun:
    """`subscriptions` (session → subscribers) connect, spread over `processes` client
    processes (their snapshots arrive), then each (jobs, events/s) of `traffic` flows for
    `duration_s`; the prober, if any, times its probes meanwhile."""
    parts = processes or plan.client_processes
    if warm_up:
        await _warm_up(url, api_key, subscriptions, warm_up)
    rss_before = gateway.rss_kib()
    # At most ~100 opens in flight at the gateway, however many client processes.
    concurrency = max(1, 100 // parts)
    clients = [
        FanoutProcess(FanoutParams(url, api_key, share, connect_concurrency=concurrency))
        for share in _spread(subscriptions, parts)
        if share
    ]
    try:
        connected = [await p.connected() for p in clients]
        subscribers = sum(c.ready for c in connected)
        ready: dict[str, int] = {}
        refused: dict[int, int] = {}
        for c in connected:
            for session, n in c.per_session.items():
                ready[session] = ready.get(session, 0) + n
            for status, n in c.statuses.items():
                if status != 200:
                    refused[status] = refused.get(status, 0) + n
        await asyncio.sleep(1.0)  # let the gateway settle before reading its memory
        rss_after = gateway.rss_kib()
        since = time.time()
        for p in clients:
            p.start(since)
        cpu_before, started = gateway.cpu_s(), time.monotonic()
        feeding = [
            asyncio.create_task(feed_progress(bus, jobs, rate, duration_s, CHUNKS))
            for jobs, rate in traffic
        ]
        visibility = None
        if prober is not None:
            gap = max(0.05, duration_s / plan.probes - 0.05)
            visibility = await prober.run(bus, plan.probes, gap, duration_s)
        feed = _merged(await asyncio.gather(*feeding))
        rss_end = gateway.rss_kib()
        await asyncio.sleep(2.0)  # the last events' way through projector and gateway
        cpu_s, load_s = gateway.cpu_s() - cpu_before, time.monotonic() - started
        results = [await p.stop() for p in clients]
    finally:
        for p in clients:
            p.kill()
    return FanoutRun(
        sum(subscriptions.values()),
        subscribers,
        ready,
        refused,
        rss_before,
        rss_after,
        rss_end,
        cpu_s,
        load_s,
        feed,
        results,
        visibility,
    )


def _fanout_rows(run: FanoutRun, memory_target_kib: float | None = None) -> list[Row]:
    lat = Latencies.of(x for r in run.results for x in r.latencies_ms)
    folded = Latencies.of(x for r in run.results for x in r.folded_ms)
    served = Latencies.of(x for r in run.results for x in r.served_ms)
    delivered = sum(r.delivered for r in run.results)
    expected = sum(n * run.ready_per_session.get(s, 0) for s, n in run.feed.per_session.items())
    dropped = sum(r.dropped for r in run.results)
    resnapshots: dict[str, int] = {}
    for r in run.results:
        for reason, n in r.resnapshots.items():
            resnapshots[reason] = resnapshots.get(reason, 0) + n
    snapshots = ", ".join(f"{n} {reason}" for reason, n in sorted(resnapshots.items()))
    per_connection = (run.rss_after_kib - run.rss_before_kib) / max(1, run.subscribers)
    refused = ", ".join(f"{n}× {status or 'no answer'}" for status, n in run.refused.items())
    return [
        Row(
            "subscribers ready (snapshot received)",
            f"{run.subscribers:,} of {run.wanted:,}" + (f"; refused: {refused}" if refused else ""),
            "all",
            run.subscribers == run.wanted,
        ),
        Row(
            "job events published",
            f"{run.feed.published:,} ({run.feed.failed} refused by the broker; publisher at "
            f"worst {run.feed.late_s * 1000:.0f} ms behind schedule)",
        ),
        Row(
            "job frames delivered / expected",
            f"{delivered:,} / {expected:,} ({dropped} connections dropped; snapshots "
            f"instead of frames: {snapshots or 'none'})",
            "all",
            delivered == expected and expected > 0,
        ),
        Row(
            "delivery latency (arrival − updated_at)",
            latencies(lat, p90=False),
            "p99 ≤ 250 ms",
            lat.count > 0 and lat.p99 <= 250,
        ),
        Row("  of which publication → Redis stream", latencies(folded, p90=False)),
        Row("  of which Redis stream → client", latencies(served, p90=False)),
        Row(
            "gateway memory per connection",
            f"{per_connection:.1f} KiB (RSS {run.rss_before_kib / 1024:.0f} → "
            f"{run.rss_after_kib / 1024:.0f} MiB connected, {run.rss_end_kib / 1024:.0f} MiB "
            "after the load)",
            f"≤ {memory_target_kib:.0f} KiB" if memory_target_kib else "",
            per_connection <= memory_target_kib if memory_target_kib else None,
        ),
        Row(
            "gateway CPU while events flowed",
            f"{run.cpu_s:.1f} s in {run.load_s:.1f} s ({run.cpu_s / run.load_s:.0%} of a core)",
        ),
    ]


def _visibility_rows(visibility: Visibility, sse: bool) -> list[Row]:
    polling = Latencies.of(visibility.polling_ms)
    polls = ", ".join(f"{n:,}× {answer}" for answer, n in visibility.polls.most_common())
    rows = [
        Row(
            "polling back-to-back: seen after",
            latencies(polling, p90=False)
            + f"  ({visibility.polling_missed} missed; polls answered {polls})",
            "p99 ≤ 100 ms",
            polling.p99 <= 100 if polling.count and not visibility.polling_missed else False,
        )
    ]
    if sse:
        stream = Latencies.of(visibility.sse_ms)
        rows.append(
            Row(
                "SSE: seen after",
                latencies(stream, p90=False) + f"  ({visibility.sse_missed} missed)",
                "p99 ≤ 100 ms",
                stream.p99 <= 100 if stream.count and not visibility.sse_missed else False,
            )
        )
        folded = Latencies.of(visibility.folded_ms)
        rows.append(Row("  of which publication → Redis stream", latencies(folded, p90=False)))
    else:
        rows.append(Row("SSE: seen after", "skipped: the gateway has no SSE endpoint (404)"))
    return rows


async def _restart_gateway(services: Services, gateway: Service) -> tuple[Service, str]:
    """A fresh gateway: its memory is measured from its own start, not after earlier load."""
    services.stop(gateway)
    return await services.gateway()


async def sse_scenarios(
    services: Services, gateway: Service, bus: Bus, seed: Seed, plan: Plan
) -> list[Section]:
    """3A with 4 under its load, then 3B; each on a fresh gateway, whose memory is then
    measured from its own start rather than after the polling load."""
    sections = []
    gateway, url = await _restart_gateway(services, gateway)
    prober = Prober(url, seed.api_key, seed.probe.jobs[0])
    sse = await prober.subscribe() == 200
    if not sse:
        print(
            f"3. SSE: GET /v1/sessions/{{sid}}/events answered {prober.sse_status}: skipping "
            "the fan-out; 4. runs with polling only, under A's event load",
            flush=True,
        )
    if "fanout" in plan.scenarios:
        per_session = plan.per_session if sse else 0
        print(
            f"3A/4. {plan.sessions} sessions × {per_session} subscribers, "
            f"{plan.fanout_rate:.0f} events/s for {plan.fanout_s:.0f} s, {plan.probes} probes",
            flush=True,
        )
        try:
            sessions = seed.fanout[: plan.sessions]
            run_a = await fanout(
                gateway,
                url,
                bus,
                {s.id: per_session for s in sessions},
                [([job for s in sessions for job in s.jobs], plan.fanout_rate)],
                plan.fanout_s,
                plan,
                prober,
                seed.api_key,
            )
        finally:
            prober.close()
        if sse:
            sections.append(
                Section(
                    f"3A. SSE fan-out: {plan.sessions} sessions × {plan.per_session} subscribers "
                    f"on one gateway, {plan.fanout_rate:.0f} JobEvents/s for {plan.fanout_s:.0f} "
                    "s (bus → projector → Redis → gateway)",
                    _fanout_rows(run_a),
                )
            )
        assert run_a.visibility is not None
        sections.append(
            Section(
                "4. End-to-end status latency under A's load: "
                f"{run_a.visibility.probes} progress events of a probe job, publication → visible",
                _visibility_rows(run_a.visibility, sse),
            )
        )
    else:
        prober.close()
    if not sse:
        sections.append(
            Section("3. SSE fan-out", [Row("scenarios A and B", "skipped: no SSE endpoint (404)")])
        )
    elif "hot" in plan.scenarios:
        if "fanout" in plan.scenarios:
            gateway, url = await _restart_gateway(services, gateway)
        print(
            f"3B. one session × {plan.hot_subscribers} subscribers, {plan.hot_rate:.0f} "
            f"events/s for {plan.hot_s:.0f} s",
            flush=True,
        )
        run_b = await fanout(
            gateway,
            url,
            bus,
            {seed.hot.id: plan.hot_subscribers},
            [(seed.hot.jobs, plan.hot_rate)],
            plan.hot_s,
            plan,
            None,
            seed.api_key,
        )
        sections.append(
            Section(
                f"3B. SSE hot session: 1 session × {plan.hot_subscribers} subscribers, "
                f"{plan.hot_rate:.0f} JobEvents/s for {plan.hot_s:.0f} s",
                _fanout_rows(run_b),
            )
        )
    if sse and "10k" in plan.scenarios:
        gateway, url = await _restart_gateway(services, gateway)
        sections.append(await ten_thousand_streams(gateway, url, bus, seed, plan))
    return sections


async def ten_thousand_streams(
    gateway: Service, url: str, bus: Bus, seed: Seed, plan: Plan
) -> Section:
    """3C: many sessions with a few subscribers each and one hot session with many, all on one
    fresh gateway process, events flowing to both at once."""
    many = seed.fanout[: plan.streams_sessions]
    subscriptions = {s.id: plan.streams_per_session for s in many}
    subscriptions[seed.hot.id] = plan.streams_hot
    streams = sum(subscriptions.values())
    print(
        f"3C. {streams:,} streams: {len(many)} sessions × {plan.streams_per_session} + one "
        f"session × {plan.streams_hot}, {plan.streams_rate:.0f} + {plan.streams_hot_rate:.0f} "
        f"events/s for {plan.streams_s:.0f} s, {plan.streams_processes} client processes",
        flush=True,
    )
    run = await fanout(
        gateway,
        url,
        bus,
        subscriptions,
        [
            ([job for s in many for job in s.jobs], plan.streams_rate),
            (seed.hot.jobs, plan.streams_hot_rate),
        ],
        plan.streams_s,
        plan,
        None,
        seed.api_key,
        processes=plan.streams_processes,
        warm_up=100,
    )
    frames_per_s = (
        plan.streams_rate * plan.streams_per_session + plan.streams_hot_rate * plan.streams_hot
    )
    return Section(
        f"3C. SSE at scale: {streams:,} streams on one gateway process ({len(many)} sessions × "
        f"{plan.streams_per_session} subscribers + 1 session × {plan.streams_hot}), "
        f"{plan.streams_rate:.0f} + {plan.streams_hot_rate:.0f} JobEvents/s "
        f"(~{frames_per_s:,.0f} frames/s) for {plan.streams_s:.0f} s, clients in "
        f"{plan.streams_processes} processes",
        _fanout_rows(run, memory_target_kib=32),
    )


async def bench(plan: Plan) -> list[Section]:
    """Every scenario of the plan; the services' logs are removed after a run that ends
    normally, unless the plan keeps them."""
    wrk = ensure_wrk()
    names = Names.fresh()
    logs = Path(tempfile.mkdtemp(prefix=f"tally-bench-{names.run}-"))
    print(
        f"run {names.run}: database tally_bench_{names.run}, bus prefix {names.bus_prefix}, "
        f"{names.redis_url}; logs in {logs}",
        flush=True,
    )
    sections = await _bench(plan, wrk, names, logs)
    if plan.keep_logs:
        print(f"the services' logs: {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)
    return sections


async def _bench(plan: Plan, wrk: str, names: Names, logs: Path) -> list[Section]:
    # One key polls and subscribes thousands of times a second and holds thousands of streams
    # open: the rate limits and the caps on open streams are lifted.
    services = Services(names, logs, plan.gateway_redis_pool, UNLIMITED | UNCAPPED_STREAMS)
    sections: list[Section] = []
    async with contextlib.AsyncExitStack() as stack:
        dsn = await stack.enter_async_context(database(names))
        redis: Redis = await stack.enter_async_context(redis_database(names))
        bus = await stack.enter_async_context(bench_bus(names))
        stack.callback(services.stop_all)

        started = time.monotonic()
        seed = await seed_records(
            dsn,
            polled_jobs=50,
            fanout_sessions=max(
                plan.sessions, plan.streams_sessions if "10k" in plan.scenarios else 0
            ),
            fanout_jobs=5,
            hot_jobs=25,
        )
        await services.projector()  # rebuilds Redis from PostgreSQL, as after a restart
        (gateway, gateway_url), (reference, reference_url) = await asyncio.gather(
            services.gateway(), services.reference()
        )
        rng = random.Random(7)
        origin = datetime.now(UTC) - timedelta(minutes=10)
        histories = [history(job, i, rng, origin) for i, job in enumerate(seed.polled.jobs)]
        await publish_histories(bus, histories)
        await wait_folded(
            redis,
            {j.job_id: h.last_sequence for j, h in zip(seed.polled.jobs, histories, strict=True)},
        )
        print(f"set up in {time.monotonic() - started:.1f} s", flush=True)

        if "polling" in plan.scenarios:
            sections.append(await polling_saturation(wrk, gateway_url, reference_url, seed, plan))
        if "open-loop" in plan.scenarios:
            sections.append(await open_loop_polling(gateway_url, reference_url, seed, plan))
        services.stop(reference)
        if "big" in plan.scenarios:
            sections.append(await big_sessions(dsn, bus, redis, gateway_url, plan.big))
        if not plan.scenarios & {"fanout", "hot", "10k"}:
            return sections

        sections += await sse_scenarios(services, gateway, bus, seed, plan)
    return sections


def _raise_open_files_limit() -> None:
    """Thousands of connections: the soft limit up to the hard one (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C: every process stopped, the database dropped."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-bench-status", description=__doc__.splitlines()[0])
    parser.add_argument("--wrk-seconds", type=float, default=10.0)
    parser.add_argument("--open-loop-seconds", type=float, default=15.0)
    parser.add_argument("--fanout-seconds", type=float, default=20.0)
    parser.add_argument("--hot-seconds", type=float, default=10.0)
    parser.add_argument(
        "--streams-seconds", type=float, default=15.0, help="how long events flow in 3C (10k)"
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"which to run, comma-separated, of {', '.join(SCENARIOS)} (4 runs within fanout)",
    )
    parser.add_argument(
        "--gateway-redis-max-connections",
        type=int,
        metavar="N",
        help="run the gateway with ?max_connections=N on its Redis URL (redis-py 8 caps an "
        "asyncio pool at 100 and fails requests beyond); default: the gateway as configured",
    )
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the services' logs (they are kept anyway when the run fails)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="short runs (a smoke test of the bench itself)"
    )
    args = parser.parse_args(argv)
    scenarios = frozenset(s.strip() for s in args.scenarios.split(",") if s.strip())
    if scenarios - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(scenarios - set(SCENARIOS)))}")
    pool, keep = args.gateway_redis_max_connections, args.keep_logs
    plan = (
        Plan(
            3,
            5,
            6,
            4,
            scenarios,
            pool,
            keep,
            probes=15,
            big=BigPlan(samples=30, neighbour_s=4),
            streams_s=5,
        )
        if args.quick
        else Plan(
            args.wrk_seconds,
            args.open_loop_seconds,
            args.fanout_seconds,
            args.hot_seconds,
            scenarios,
            pool,
            keep,
            streams_s=args.streams_seconds,
        )
    )
    _raise_open_files_limit()
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    sections = asyncio.run(bench(plan))
    pool = (
        f"max_connections={plan.gateway_redis_pool} (--gateway-redis-max-connections)"
        if plan.gateway_redis_pool
        else "as configured (redis-py default)"
    )
    print(
        f"\nTally status path — {machine()}; gateway's Redis pool {pool}; "
        f"run took {time.monotonic() - started:.0f} s"
    )
    print(render(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
