"""SSE fan-out load: a process of many cheap subscribers, steered by its parent over a pipe.

The parent says when counting starts (`start`, with the epoch time from which events count)
and when it ends (`stop`); the subscribers answer with the delivery latency of every `job` frame
in between: the time the frame arrived minus the `updated_at` it carries (the emitted_at of the
JobEvent behind it, set by the publisher on the same machine clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from tally_bench._http import Endpoint
from tally_bench._sse import Clock, Subscriber, stream_time, updated_at_of
from tally_client.sse import Frame


@dataclass(frozen=True, slots=True)
class FanoutParams:
    url: str
    api_key: str
    subscriptions: dict[str, int]  # session id → how many subscribers it gets here
    connect_concurrency: int = 50
    ready_timeout_s: float = 15.0


@dataclass(frozen=True, slots=True)
class Connected:
    ready: int  # answered 200 and sent their snapshot
    per_session: dict[str, int]  # ready subscribers of each session
    statuses: dict[int, int]  # response status → subscribers (0: no answer)


@dataclass(frozen=True, slots=True)
class FanoutResult:
    delivered: int
    latencies_ms: array[float]
    # The same deliveries split where the projector appended the entry to the session's Redis
    # stream (its id is Redis's clock in ms): publication → stream, stream → arrival.
    folded_ms: array[float]
    served_ms: array[float]
    dropped: int  # connections the server closed while counting
    resnapshots: dict[str, int]  # snapshots sent while counting, by reason (`lagged`: the
    # gateway dropped a slow subscriber's queued frames and sent the whole state instead)
    heartbeats_only: int = 0  # subscribers that got no job frame while counting
    per_session: dict[str, int] = field(default_factory=dict)  # job frames delivered


class _Counting:
    """What every subscriber of this process adds to."""

    def __init__(self) -> None:
        self.on = False
        self.since = 0.0
        self.delivered = 0
        self.latencies: array[float] = array("d")
        self.folded: array[float] = array("d")
        self.served: array[float] = array("d")
        self.per_session: Counter[str] = Counter()
        self.resnapshots: Counter[str] = Counter()
        self.clock = Clock()


def _reason(snapshot: bytes) -> str:
    at = snapshot.find(b'"reason":"')
    return snapshot[at + 10 : snapshot.find(b'"', at + 10)].decode() if at != -1 else "?"


async def _subscribe(
    endpoint: Endpoint, session_id: str, api_key: str, counting: _Counting, ready_timeout_s: float
) -> tuple[Subscriber | None, int, list[int]]:
    """A subscriber that has its snapshot: (it, 200, its job-frame count) or (None, status)."""
    snapshot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    mine = [0]

    def on_frames(frames: list[Frame], now: float) -> None:
        for frame in frames:
            if frame.event == "job":
                if not counting.on:
                    continue
                iso = updated_at_of(frame.data)
                if iso is None:
                    continue
                emitted = counting.clock.epoch(iso)
                if emitted >= counting.since:
                    counting.delivered += 1
                    counting.latencies.append((now - emitted) * 1000)
                    appended = stream_time(frame.id)
                    if appended is not None:
                        counting.folded.append((appended - emitted) * 1000)
                        counting.served.append((now - appended) * 1000)
                    counting.per_session[session_id] += 1
                    mine[0] += 1
            elif frame.event == "snapshot":
                if not snapshot.done():
                    snapshot.set_result(None)
                elif counting.on:
                    counting.resnapshots[_reason(frame.data)] += 1

    try:
        subscriber = await Subscriber.open(
            endpoint,
            f"/v1/sessions/{session_id}/events",
            {"Authorization": f"Bearer {api_key}"},
            on_frames,
            time.time,
        )
    except OSError:
        return None, 0, mine
    try:
        status = await asyncio.wait_for(asyncio.shield(subscriber.status), ready_timeout_s)
        if status == 200:
            await asyncio.wait_for(snapshot, ready_timeout_s)
    except (OSError, TimeoutError):
        status = 0  # no answer, or no snapshot, in time
    if status != 200:
        subscriber.close()
        return None, status, mine
    return subscriber, 200, mine


async def _fanout(params: FanoutParams, pipe: Connection) -> None:
    endpoint = Endpoint.of(params.url)
    counting = _Counting()
    loop = asyncio.get_running_loop()
    commands: asyncio.Queue[tuple[Any, ...]] = asyncio.Queue()

    def on_command() -> None:
        try:
            commands.put_nowait(pipe.recv())
        except (EOFError, OSError):  # the parent has gone: stop
            loop.remove_reader(pipe.fileno())
            commands.put_nowait(("gone",))

    loop.add_reader(pipe.fileno(), on_command)
    gate = asyncio.Semaphore(params.connect_concurrency)

    async def one(session_id: str) -> tuple[Subscriber | None, int, list[int]]:
        async with gate:
            return await _subscribe(
                endpoint, session_id, params.api_key, counting, params.ready_timeout_s
            )

    sessions = [s for s, n in params.subscriptions.items() for _ in range(n)]
    opened = await asyncio.gather(*(one(s) for s in sessions))
    subscribers = [(s, mine) for s, _, mine in opened if s is not None]
    ready = Counter(session for session, (s, _, _) in zip(sessions, opened, strict=True) if s)
    statuses = Counter(status for _, status, _ in opened)
    # Thousands of long-lived subscribers: out of the collector's sight, so that its full
    # collections (which would stall every subscriber here) do not add to the latencies.
    gc.collect()
    gc.freeze()
    pipe.send(Connected(len(subscribers), dict(ready), dict(statuses)))
    try:
        while True:
            command = await commands.get()
            if command[0] == "start":
                counting.since, counting.on = command[1], True
            elif command[0] == "stop":
                counting.on = False
                pipe.send(
                    FanoutResult(
                        delivered=counting.delivered,
                        latencies_ms=counting.latencies,
                        folded_ms=counting.folded,
                        served_ms=counting.served,
                        dropped=sum(s.lost.done() for s, _ in subscribers),
                        resnapshots=dict(counting.resnapshots),
                        heartbeats_only=sum(1 for _, mine in subscribers if not mine[0]),
                        per_session=dict(counting.per_session),
                    )
                )
                return
            elif command[0] == "gone":
                return
    finally:
        loop.remove_reader(pipe.fileno())
        for subscriber, _ in subscribers:
            subscriber.close()
        await asyncio.sleep(0)


def run_fanout(params: FanoutParams, pipe: Connection) -> None:
    """The entry point of a subscriber process."""
    asyncio.run(_fanout(params, pipe))


class FanoutProcess:
    """A subscriber process as the parent sees it."""

    def __init__(self, params: FanoutParams) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self.process: BaseProcess = context.Process(
            target=run_fanout, args=(params, child), daemon=True, name="tally-bench-sse"
        )
        self.process.start()
        child.close()

    async def _receive(self, timeout_s: float) -> Any:
        def wait() -> Any:
            if not self._pipe.poll(timeout_s):
                raise TimeoutError(f"no answer from the subscriber process in {timeout_s} s")
            return self._pipe.recv()

        return await asyncio.to_thread(wait)

    async def connected(self, timeout_s: float = 180.0) -> Connected:
        answer = await self._receive(timeout_s)
        assert isinstance(answer, Connected)
        return answer

    def start(self, since: float) -> None:
        self._pipe.send(("start", since))

    async def stop(self, timeout_s: float = 60.0) -> FanoutResult:
        self._pipe.send(("stop",))
        answer = await self._receive(timeout_s)
        assert isinstance(answer, FanoutResult)
        return answer

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.terminate()
        self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        with contextlib.suppress(OSError):
            self._pipe.close()
