"""Live traffic on the bus while subscribers listen: progress events at a fixed rate, and the
probe that times one event from its publication to where a client sees it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from tally_bench._http import Endpoint, HttpConnection, ProtocolError, request
from tally_bench._seed import SLICES_PER_CHUNK, progress_event
from tally_bench._sse import Subscriber, stream_time
from tally_bus import Bus
from tally_client.sse import Frame
from tally_contracts.v1 import JobRef

PLANNED_SLICES = 1_000_000  # as seeded: no job of the bench ever finishes


@dataclass(slots=True)
class Feed:
    """What a feed published: per session, and the publishes the broker refused."""

    per_session: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    late_s: float = 0.0  # how far the publisher fell behind its own schedule, at worst

    @property
    def published(self) -> int:
        return sum(self.per_session.values())


async def feed_progress(
    bus: Bus,
    jobs: Sequence[JobRef],
    rate_per_s: float,
    duration_s: float,
    chunks: Counter[str] | None = None,
) -> Feed:
    """Progress events round-robin over `jobs`, event i due at i / rate (open loop: a slow
    confirm does not delay the next event), each emitted at its publication. `chunks` counts
    each job's chunks across feeds: a job fed again goes on from where it was (the projector
    ignores an event older than what it has folded)."""
    feed = Feed()
    chunks = Counter() if chunks is None else chunks
    loop = asyncio.get_running_loop()
    start = loop.time()
    pending: set[asyncio.Task[None]] = set()

    async def publish(job: JobRef) -> None:
        chunks[job.job_id] += 1
        event = progress_event(job, chunks[job.job_id], PLANNED_SLICES)
        try:
            await bus.publish(bus.topology.job_event, event)
        except Exception:
            feed.failed += 1
        else:
            feed.per_session[job.session_id] += 1

    for i in range(round(rate_per_s * duration_s)):
        wait = start + i / rate_per_s - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        else:
            feed.late_s = max(feed.late_s, -wait)
        task = asyncio.create_task(publish(jobs[i % len(jobs)]))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.wait(pending)
    return feed


@dataclass(slots=True)
class Visibility:
    """Milliseconds from publishing a progress event to a client seeing it."""

    polling_ms: list[float] = field(default_factory=list)
    sse_ms: list[float] = field(default_factory=list)
    folded_ms: list[float] = field(default_factory=list)  # publication → the session's stream
    probes: int = 0
    polling_missed: int = 0
    sse_missed: int = 0
    polls: Counter[str] = field(default_factory=Counter)  # the poller's answers: "200", "500"…


class Prober:
    """Times a probe job's progress events: a poller polls back-to-back from the moment of
    publication until the job's `processed` shows the new value, and one SSE subscriber waits
    for the `job` frame that carries it."""

    def __init__(self, url: str, api_key: str, job: JobRef, timeout_s: float = 5.0) -> None:
        self.endpoint = Endpoint.of(url)
        self.headers = {"Authorization": f"Bearer {api_key}"}
        self.job = job
        self.timeout_s = timeout_s
        self.subscriber: Subscriber | None = None
        self.connection: HttpConnection | None = None
        self.sse_status: int | None = None
        self._seen: dict[int, float] = {}  # processed → when the SSE frame arrived
        self._appended: dict[int, float] = {}  # processed → when its stream entry was appended
        self._arrived = asyncio.Event()

    async def subscribe(self) -> int:
        """Open the SSE subscription; its status (404: the gateway has no SSE endpoint)."""

        def on_frames(frames: list[Frame], now: float) -> None:
            for frame in frames:
                if frame.event == "job":
                    processed = json.loads(frame.data).get("processed")
                    if isinstance(processed, int) and processed not in self._seen:
                        self._seen[processed] = now
                        appended = stream_time(frame.id)
                        if appended is not None:
                            self._appended[processed] = appended
                        self._arrived.set()

        subscriber = await Subscriber.open(
            self.endpoint,
            f"/v1/sessions/{self.job.session_id}/events",
            self.headers,
            on_frames,
            time.time,
        )
        self.sse_status = await asyncio.wait_for(subscriber.status, 30)
        self.subscriber = subscriber if self.sse_status == 200 else None
        return self.sse_status

    async def _poll_until(self, processed: int, result: Visibility) -> float | None:
        """Polls back-to-back (a new connection when the server closes one) until the job
        shows `processed`: when that answer arrived, or None after the timeout."""
        raw = self.endpoint.request(f"/v1/sessions/{self.job.session_id}/jobs", self.headers)
        deadline = time.time() + self.timeout_s
        while time.time() < deadline:
            try:
                if self.connection is None:
                    self.connection = await HttpConnection.open(self.endpoint)
                self.connection, response = await request(self.connection, self.endpoint, raw)
            except (OSError, ProtocolError) as exc:
                result.polls[type(exc).__name__] += 1
                await asyncio.sleep(0.001)
                continue
            result.polls[str(response.status)] += 1
            if response.status != 200:
                continue
            jobs = json.loads(response.body)["jobs"]
            if any(j["job_id"] == self.job.job_id and j["processed"] >= processed for j in jobs):
                return time.time()
        return None

    async def _sse_until(self, processed: int, deadline: float) -> float | None:
        while processed not in self._seen:
            self._arrived.clear()
            left = deadline - time.time()
            if left <= 0 or self.subscriber is None:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        return self._seen[processed]

    async def run(self, bus: Bus, probes: int, gap_s: float, within_s: float) -> Visibility:
        """Up to `probes` probes, `gap_s` apart, none started after `within_s`."""
        result = Visibility()
        until = time.time() + within_s
        for k in range(1, probes + 1):
            if time.time() > until:
                break
            result.probes += 1
            processed = k * SLICES_PER_CHUNK
            event = progress_event(self.job, k, PLANNED_SLICES)
            published = event.emitted_at.ToNanoseconds() / 1e9
            polling = asyncio.create_task(self._poll_until(processed, result))
            await bus.publish(bus.topology.job_event, event)
            seen_polling = await polling
            if seen_polling is None:
                result.polling_missed += 1
            else:
                result.polling_ms.append((seen_polling - published) * 1000)
            if self.subscriber is not None:
                seen_sse = await self._sse_until(processed, published + self.timeout_s)
                if seen_sse is None:
                    result.sse_missed += 1
                else:
                    result.sse_ms.append((seen_sse - published) * 1000)
                    if processed in self._appended:
                        result.folded_ms.append((self._appended[processed] - published) * 1000)
            await asyncio.sleep(gap_s)
        return result

    def close(self) -> None:
        if self.subscriber is not None:
            self.subscriber.close()
        if self.connection is not None:
            self.connection.close()
