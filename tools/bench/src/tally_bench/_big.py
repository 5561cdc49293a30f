"""Scenario 5 of `make bench-status`: what the status path costs against a session's size.

A 50-job and a 2,000-job session of one tenant, side by side in one run: an unchanged poll
(304), a poll after a change (the default page), a `since` poll after 10 changes, a page of 100
jobs from the middle of the big one, a session read and an SSE connect (until its snapshot),
each the median of sequential requests to the gateway; the ratios are the figures. Then
another tenant's poll latency alone and while the big session is changed and read 10 times a
second. Redis's SLOWLOG is watched for the whole scenario (it is the server's: anything else on
that Redis shows too). Changes go bus → projector → Redis, as in production.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from tally_bench import _http
from tally_bench._report import Row, Section, ms
from tally_bench._seed import SeededSession, _session, progress_event, wait_folded
from tally_bench._stats import Latencies
from tally_bus import Bus
from tally_contracts import projection as redis_keys
from tally_contracts import sequence
from tally_contracts.events import job_event
from tally_contracts.v1 import JobEvent, JobRef
from tally_db import Store

SLOW_US = 1000  # SLOWLOG keeps what takes longer (µs) while the scenario runs
TARGET_SLOW_US = 5000  # the bound: no command over 5 ms
PLANNED = 1_000_000  # slices per job: every progress event changes what the job shows


@dataclass(frozen=True, slots=True)
class BigPlan:
    small_jobs: int = 50
    big_jobs: int = 2000
    samples: int = 150
    neighbour_s: float = 10.0
    neighbour_rate: float = 20.0  # the other tenant's polls per second
    big_read_rate: float = 10.0  # changes and reads of the big session per second


@dataclass
class Tenant:
    key: str
    sessions: dict[str, SeededSession]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


class Client:
    """Sequential GETs on one keep-alive connection, timed."""

    def __init__(self, url: str) -> None:
        self.endpoint = _http.Endpoint.of(url)
        self.connection: _http.HttpConnection | None = None

    async def get(self, path: str, headers: dict[str, str]) -> tuple[float, _http.Response]:
        if self.connection is None:
            self.connection = await _http.HttpConnection.open(self.endpoint)
        raw = self.endpoint.request(path, headers)
        started = time.perf_counter()
        self.connection, response = await _http.request(self.connection, self.endpoint, raw)
        return (time.perf_counter() - started) * 1000, response

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()


class Changer:
    """Progress events for a session's jobs, published on the bus, waited for in Redis."""

    def __init__(self, bus: Bus, redis: Redis, session: SeededSession) -> None:
        self.bus, self.redis, self.session = bus, redis, session
        self.chunks: dict[str, int] = {}
        self.turn = 0

    async def rev(self) -> int:
        value = await self.redis.hget(redis_keys.session_key(self.session.id), "rev")
        return int(value or 0)

    async def change(self, count: int = 1, wait: bool = True) -> None:
        """Publish `count` changes; with `wait`, until the projector has folded them (the bench's
        loop polls Redis meanwhile, so the neighbour phase does not wait: its timings would carry
        that polling)."""
        before = await self.rev() if wait else 0
        for _ in range(count):
            job = self.session.jobs[self.turn % len(self.session.jobs)]
            self.turn += 1
            done = self.chunks[job.job_id] = self.chunks.get(job.job_id, 0) + 1
            await self.bus.publish(self.bus.topology.job_event, progress_event(job, done, PLANNED))
        if not wait:
            return
        deadline = time.monotonic() + 30
        while await self.rev() < before + count:
            if time.monotonic() > deadline:
                raise RuntimeError("the projector folded no change of the big session in 30 s")
            await asyncio.sleep(0.002)


async def _seed(dsn: str, bus: Bus, redis: Redis, plan: BigPlan) -> tuple[Tenant, Tenant]:
    async with Store.open(dsn) as store:
        tenants = []
        for name, sizes in (
            ("a", {"small": plan.small_jobs, "big": plan.big_jobs}),
            ("b", {"small": plan.small_jobs}),
        ):
            tenant = await store.create_tenant(f"bench-big-{name}-{uuid.uuid4().hex[:6]}")
            key = await store.create_api_key(tenant.id)
            sessions = {
                size: await _session(store, tenant.id, f"{size}-{name}", jobs, PLANNED)
                for size, jobs in sizes.items()
            }
            tenants.append(Tenant(key.key, sessions))
    jobs = [job for tenant in tenants for s in tenant.sessions.values() for job in s.jobs]
    for index, job in enumerate(jobs):
        await bus.publish(bus.topology.job_event, _queued(job, index))
        await bus.publish(
            bus.topology.job_event,
            job_event(
                job,
                sequence.PLANNED,
                "orchestrator",
                planned=JobEvent.Planned(total_slices=PLANNED, chunk_count=PLANNED // 16),
            ),
        )
    await wait_folded(redis, {job.job_id: sequence.PLANNED for job in jobs}, timeout_s=180)
    return tenants[0], tenants[1]


def _queued(job: JobRef, index: int) -> JobEvent:
    return job_event(
        job,
        sequence.QUEUED,
        "upload",
        queued=JobEvent.Queued(
            image_id=str(uuid.uuid4()), filename=f"tray-{index:04d}.jpg", width=4000, height=3000
        ),
    )


async def _timed(
    samples: int, before: Callable[[], Awaitable[None]], request: Callable[[], Awaitable[float]]
) -> Latencies:
    times = []
    for _ in range(samples):
        await before()
        times.append(await request())
    return Latencies.of(times)


async def _nothing() -> None:
    return None


def _has_snapshot(received: bytes) -> bool:
    """The stream so far holds its snapshot whole (its frame's blank line arrived)."""
    _, found, after = received.partition(b"event: snapshot")
    return bool(found) and b"\n\n" in after


async def _sse_connect(url: str, path: str, auth: dict[str, str]) -> float:
    """Milliseconds from the request until its snapshot has arrived whole."""
    endpoint = _http.Endpoint.of(url)
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(endpoint.host, endpoint.port)
    try:
        writer.write(endpoint.request(path, auth | {"Accept": "text/event-stream"}))
        seen = b""
        async with asyncio.timeout(30):
            while not _has_snapshot(seen):
                chunk = await reader.read(65536)
                if not chunk:
                    raise RuntimeError(f"the stream ended before its snapshot: {seen[:200]!r}")
                seen += chunk
        return (time.perf_counter() - started) * 1000
    finally:
        writer.close()


async def _costs(
    client: Client, url: str, tenant: Tenant, size: str, changer: Changer, plan: BigPlan
) -> dict[str, Latencies]:
    session = tenant.sessions[size]
    jobs = f"/v1/sessions/{session.id}/jobs"
    auth = tenant.auth
    _, first = await client.get(jobs, auth)
    if first.status != 200:
        raise RuntimeError(f"the poll of the {size} session answered {first.status}")
    etag = first.headers["etag"]

    async def unchanged() -> float:
        took, answer = await client.get(jobs, auth | {"If-None-Match": etag})
        if answer.status != 304:
            raise RuntimeError(f"an unchanged poll answered {answer.status}")
        return took

    async def plain(path: str) -> float:
        took, answer = await client.get(path, auth)
        if answer.status != 200:
            raise RuntimeError(f"GET {path} answered {answer.status}")
        return took

    version = ""

    async def ten_changes() -> None:
        nonlocal version
        _, answer = await client.get(jobs + "?limit=1", auth)
        version = json.loads(answer.body)["version"]
        await changer.change(10)

    async def since() -> float:
        took, answer = await client.get(f"{jobs}?since={version}", auth)
        changed = len(json.loads(answer.body)["jobs"])
        if answer.status != 200 or changed != 10:
            raise RuntimeError(f"a since poll answered {answer.status} with {changed} jobs")
        return took

    samples, few = plan.samples, max(10, plan.samples // 4)
    costs = {
        "unchanged poll (304)": await _timed(samples, _nothing, unchanged),
        "poll after a change (first page)": await _timed(
            samples, changer.change, lambda: plain(jobs)
        ),
        "since poll after 10 changes": await _timed(few, ten_changes, since),
        "session read (GET …/{sid})": await _timed(
            samples, changer.change, lambda: plain(f"/v1/sessions/{session.id}")
        ),
        "SSE connect (until its snapshot)": await _timed(
            few, changer.change, lambda: _sse_connect(url, f"{jobs[:-5]}/events", auth)
        ),
    }
    if len(session.jobs) > 1000:
        _, page = await client.get(f"{jobs}?limit=1000", auth)
        middle = json.loads(page.body)["next_cursor"]
        costs["page of 100 jobs (mid-session cursor)"] = await _timed(
            samples, changer.change, lambda: plain(f"{jobs}?limit=100&cursor={middle}")
        )
    return costs


async def _paced(
    seconds: float, rate: float, tick: Callable[[], Awaitable[float | None]]
) -> list[float]:
    """`tick` `rate` times a second for `seconds` (bounded: rate × seconds ticks at most)."""
    out = []
    start = time.perf_counter()
    for n in range(int(seconds * rate)):
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        took = await tick()
        if took is not None:
            out.append(took)
    return out


async def _neighbour(
    url: str, a: Tenant, b: Tenant, changer: Changer, plan: BigPlan
) -> tuple[Latencies, Latencies, int]:
    """B's poll latency alone, then while A's big session is changed and read at the rate."""
    b_client, a_client = Client(url), Client(url)
    b_jobs = f"/v1/sessions/{b.sessions['small'].id}/jobs"
    big = a.sessions["big"].id

    async def b_poll() -> float:
        took, answer = await b_client.get(b_jobs, b.auth)
        if answer.status != 200:
            raise RuntimeError(f"B's poll answered {answer.status}")
        return took

    reads = 0

    async def a_read() -> None:
        nonlocal reads
        await changer.change(wait=False)
        for path in (f"/v1/sessions/{big}", f"/v1/sessions/{big}/jobs"):
            _, answer = await a_client.get(path, a.auth)
            reads += answer.status == 200

    async def a_tick() -> float | None:
        await a_read()
        return None

    try:
        idle = await _paced(plan.neighbour_s, plan.neighbour_rate, b_poll)
        loaded, _ = await asyncio.gather(
            _paced(plan.neighbour_s, plan.neighbour_rate, b_poll),
            _paced(plan.neighbour_s, plan.big_read_rate, a_tick),
        )
    finally:
        b_client.close()
        a_client.close()
    return Latencies.of(idle), Latencies.of(loaded), reads


async def _slowlog_start(redis: Redis) -> str:
    before: Any = await redis.config_get("slowlog-log-slower-than")
    await redis.config_set("slowlog-log-slower-than", SLOW_US)
    await redis.slowlog_reset()
    return str(before["slowlog-log-slower-than"])


async def _slowlog_end(redis: Redis, before: str) -> list[tuple[int, str]]:
    entries: Any = await redis.slowlog_get(1000)
    await redis.config_set("slowlog-log-slower-than", before)
    out = []
    for entry in entries:
        command = entry["command"]
        text = command.decode(errors="replace") if isinstance(command, bytes) else str(command)
        out.append((int(entry["duration"]), text.split(" ", 1)[0]))
    return sorted(out, reverse=True)


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


async def big_sessions(dsn: str, bus: Bus, redis: Redis, url: str, plan: BigPlan) -> Section:
    print(
        f"5. big sessions: {plan.small_jobs} and {plan.big_jobs:,} jobs, "
        f"{plan.samples} samples each; another tenant for {2 * plan.neighbour_s:.0f} s",
        flush=True,
    )
    a, b = await _seed(dsn, bus, redis, plan)
    slowlog = await _slowlog_start(redis)
    client = Client(url)
    try:
        small = await _costs(
            client, url, a, "small", Changer(bus, redis, a.sessions["small"]), plan
        )
        big_changer = Changer(bus, redis, a.sessions["big"])
        big = await _costs(client, url, a, "big", big_changer, plan)
        idle, loaded, reads = await _neighbour(url, a, b, big_changer, plan)
    finally:
        client.close()
        slow = await _slowlog_end(redis, slowlog)

    rows = [
        Row(
            f"{name}",
            f"{ms(small[name].p50)} vs {ms(big[name].p50)} "
            f"({_ratio(big[name].p50, small[name].p50):.2f}×)",
        )
        for name in small
    ]
    unchanged = _ratio(big["unchanged poll (304)"].p50, small["unchanged poll (304)"].p50)
    changed_small = small["poll after a change (first page)"].p50
    since = _ratio(big["since poll after 10 changes"].p50, changed_small)
    page = _ratio(big["page of 100 jobs (mid-session cursor)"].p50, changed_small)
    neighbour = _ratio(loaded.p50, idle.p50)
    over = [(us, name) for us, name in slow if us > TARGET_SLOW_US]
    worst = f"max {slow[0][0] / 1000:.1f} ms ({slow[0][1]})" if slow else "none"
    rows += [
        Row(
            "page of 100 jobs (2,000-job session) p50",
            f"{ms(big['page of 100 jobs (mid-session cursor)'].p50)}",
        ),
        Row("2,000 / 50: unchanged poll", f"{unchanged:.2f}×", "≤ 2×", unchanged <= 2),
        Row("2,000 since 10 changes / 50 changed poll", f"{since:.2f}×", "≤ 3×", since <= 3),
        Row("2,000 page of 100 / 50 changed poll", f"{page:.2f}×", "≤ 3×", page <= 3),
        Row("other tenant's poll, idle", f"p50 {ms(idle.p50)}  p99 {ms(idle.p99)}"),
        Row(
            f"… while the big session is read at {plan.big_read_rate:.0f}/s",
            f"p50 {ms(loaded.p50)}  p99 {ms(loaded.p99)} ({reads} big reads answered)",
        ),
        Row("other tenant's p50, loaded / idle", f"{neighbour:.2f}×", "≤ 1.2×", neighbour <= 1.2),
        Row(
            f"Redis commands over {SLOW_US / 1000:.0f} ms (SLOWLOG)",
            f"{len(slow)}, {len(over)} over {TARGET_SLOW_US / 1000:.0f} ms; {worst}",
            f"none over {TARGET_SLOW_US / 1000:.0f} ms",
            not over,
        ),
    ]
    return Section(
        f"5. Big sessions: p50 of sequential requests to the gateway, {plan.small_jobs}-job vs "
        f"{plan.big_jobs:,}-job session (ratio); another tenant polling at "
        f"{plan.neighbour_rate:.0f}/s",
        rows,
    )
