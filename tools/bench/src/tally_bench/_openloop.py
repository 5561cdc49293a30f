"""Open-loop polling: many pollers on a fixed schedule, latency from the scheduled time.

Every request's send time is fixed before the run (poller p polls at phase_p + k·interval), and
its latency is counted from that time, not from when a connection was free to send it: a server
that falls behind shows its queueing in the figures instead of slowing the load down
(coordinated omission). The pollers share a pool of keep-alive connections; a request waits in
the client's queue, on the clock, while every connection is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from array import array
from collections import Counter
from dataclasses import dataclass, field

from tally_bench._http import Endpoint, HttpConnection, ProtocolError, request


def poll_schedule(pollers: int, interval_s: float, duration_s: float, seed: int) -> list[float]:
    """When each request is due, in seconds from the start, sorted: every poller polls each
    `interval_s` from a random phase, and no request is due at or after `duration_s`. Pure."""
    phases = random.Random(seed).random
    due = []
    for _ in range(pollers):
        at = phases() * interval_s
        while at < duration_s:
            due.append(at)
            at += interval_s
    due.sort()
    return due


@dataclass(frozen=True, slots=True)
class OpenLoopParams:
    url: str
    path: str
    headers: dict[str, str]
    pollers: int
    interval_s: float
    duration_s: float
    connections: int
    grace_s: float  # how long answers may still come once the last request is due
    seed: int = 1


@dataclass(frozen=True, slots=True)
class OpenLoopResult:
    scheduled: int
    ok: int
    errors: int  # a status other than 200, or a broken connection
    unfinished: int  # not answered within the grace period after the schedule ended
    latencies_ms: array[float]  # of the answered requests, from their scheduled time
    elapsed_s: float  # from the first due time to the last answer
    error_kinds: dict[str, int] = field(default_factory=dict)  # "HTTP 503", "ConnectionResetError"

    @property
    def achieved_rps(self) -> float:
        return self.ok / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def open_loop(params: OpenLoopParams) -> OpenLoopResult:
    endpoint = Endpoint.of(params.url)
    raw = endpoint.request(params.path, params.headers)
    due = poll_schedule(params.pollers, params.interval_s, params.duration_s, params.seed)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[float] = asyncio.Queue()
    latencies: array[float] = array("d")
    counts = {"ok": 0, "errors": 0}
    kinds: Counter[str] = Counter()
    all_answered = asyncio.Event()
    last_answer = 0.0
    connections = list(
        await asyncio.gather(*(HttpConnection.open(endpoint) for _ in range(params.connections)))
    )
    start = loop.time() + 0.2

    async def worker(connection: HttpConnection) -> None:
        nonlocal last_answer
        while True:
            at = await queue.get()
            try:
                used, response = await request(connection, endpoint, raw)
                if used is not connection:
                    connection = used
                    connections.append(connection)
            except (OSError, ProtocolError) as exc:
                counts["errors"] += 1
                kinds[type(exc).__name__] += 1
            else:
                last_answer = loop.time()
                if response.status == 200:
                    counts["ok"] += 1
                    latencies.append((last_answer - start - at) * 1000)
                else:
                    counts["errors"] += 1
                    kinds[f"HTTP {response.status}"] += 1
            if counts["ok"] + counts["errors"] == len(due):
                all_answered.set()

    workers = [asyncio.create_task(worker(c)) for c in list(connections)]
    try:
        for at in due:
            wait = start + at - loop.time()
            if wait > 0.0005:
                await asyncio.sleep(wait)
            queue.put_nowait(at)
        deadline = start + params.duration_s + params.grace_s
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_answered.wait(), max(0.0, deadline - loop.time()))
    finally:
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for connection in connections:
            connection.close()
    done = counts["ok"] + counts["errors"]
    return OpenLoopResult(
        scheduled=len(due),
        ok=counts["ok"],
        errors=counts["errors"],
        unfinished=len(due) - done,
        latencies_ms=latencies,
        elapsed_s=max(0.0, last_answer - start),
        error_kinds=dict(kinds),
    )


def run_open_loop(params: OpenLoopParams) -> OpenLoopResult:
    """The entry point of the load generator's own process."""
    return asyncio.run(open_loop(params))
