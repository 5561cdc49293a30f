"""Server-Sent Events: one Redis reader per session per process, shared by its subscribers.

Each session's event stream in Redis (`session:{sid}:events`: `job`, `summary` and `done`
entries written by the projector's fold) is read by one `SessionFeed` per gateway process, however
many clients watch it. The feed turns each entry into its SSE frame once and hands the same bytes
to every subscriber's bounded queue. A subscriber that falls behind (its queue full: a slow
client) does not hold anyone up: it is marked lagged, its queue is dropped, and its writer
sends a fresh snapshot instead (saying so) and goes on from there.

Entry ids are the SSE event ids, so `Last-Event-ID` resumes exactly: every entry after it, each
once. A subscriber joins its feed before it reads its catch-up (a snapshot or the entries after
its Last-Event-ID), and the feed's start position was read before either, so together they
cover every entry; frames at or before the last one sent are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tally_gateway._views import job_from_projection, summary_from_session

log = logging.getLogger("tally_gateway.streams")

StreamId = tuple[int, int]
ORIGIN: Final[StreamId] = (0, 0)


def parse_id(text: str | None) -> StreamId | None:
    """A Redis stream id `ms-seq`; None for anything else."""
    if not text:
        return None
    ms, dash, seq = text.strip().partition("-")
    if not (dash and ms.isdigit() and seq.isdigit()):
        return None
    return int(ms), int(seq)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def frame(event_id: StreamId, kind: str, data: dict[str, Any]) -> bytes:
    body = json.dumps(data, separators=(",", ":"))
    return f"id: {format_id(event_id)}\nevent: {kind}\ndata: {body}\n\n".encode()


@dataclass(frozen=True, slots=True)
class Frame:
    id: StreamId
    kind: str
    data: bytes


def entry_frame(session_id: str, raw_id: bytes | str, raw: dict[Any, Any]) -> Frame:
    """The SSE frame of one stream entry (the projector's `job`, `summary` or `done`)."""
    event_id = parse_id(_text(raw_id))
    assert event_id is not None  # Redis gives stream ids
    fields = {_text(k): _text(v) for k, v in raw.items()}
    kind = fields.pop("type", "job")
    if kind == "job":
        data: dict[str, Any] = job_from_projection(fields)
    else:
        data = {"session_id": session_id, "summary": summary_from_session(fields)}
    return Frame(event_id, kind, frame(event_id, kind, data))


def stream_key(session_id: str) -> str:
    return f"session:{session_id}:events"


class Subscriber:
    """One client's place in a feed: a bounded queue of frames, or `lagged` once it overflowed."""

    def __init__(self, buffer: int) -> None:
        self.queue: asyncio.Queue[Frame] = asyncio.Queue(buffer)
        self.lagged = False
        self.wake = asyncio.Event()

    def offer(self, item: Frame) -> None:
        if self.lagged:
            return
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.lagged = True
            while not self.queue.empty():
                self.queue.get_nowait()
        self.wake.set()

    def take(self) -> list[Frame]:
        """Every frame waiting, oldest first."""
        items = []
        while not self.queue.empty():
            items.append(self.queue.get_nowait())
        self.wake.clear()
        return items


@dataclass(eq=False)
class SessionFeed:
    session_id: str
    redis: Redis
    block_ms: int
    subscribers: set[Subscriber] = field(default_factory=set)
    position: StreamId = ORIGIN  # the last entry handed out (or the stream's end at start)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        key = stream_key(self.session_id)
        delay = 0.1
        while True:
            try:
                if not self.ready.is_set():
                    last: Any = await self.redis.xrevrange(key, count=1)
                    self.position = (parse_id(last[0][0].decode()) if last else None) or ORIGIN
                    self.ready.set()
                reply: Any = await self.redis.xread(
                    {key: format_id(self.position)}, count=500, block=self.block_ms
                )
                delay = 0.1
            except RedisError as exc:
                log.warning("reading %s failed (%s); retrying in %.1f s", key, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for _, entries in reply:
                for raw_id, raw in entries:
                    item = entry_frame(self.session_id, raw_id, raw)
                    self.position = item.id
                    for subscriber in tuple(self.subscribers):
                        subscriber.offer(item)


class FeedHub:
    """The process's feeds, one per watched session, started by the first subscriber and stopped
    when the last one leaves."""

    # Redis clients time out reads after 5 s by default (redis-py 8): block for less.
    def __init__(self, redis: Redis, buffer: int, block_ms: int = 2000) -> None:
        self.redis = redis
        self.buffer = buffer
        self.block_ms = block_ms
        self.feeds: dict[str, SessionFeed] = {}

    @contextlib.asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[tuple[SessionFeed, Subscriber]]:
        feed = self.feeds.get(session_id)
        if feed is None:
            feed = SessionFeed(session_id, self.redis, self.block_ms)
            feed.task = asyncio.create_task(feed.run(), name=f"feed {session_id}")
            self.feeds[session_id] = feed
        subscriber = Subscriber(self.buffer)
        feed.subscribers.add(subscriber)
        try:
            await feed.ready.wait()
            yield feed, subscriber
        finally:
            feed.subscribers.discard(subscriber)
            if not feed.subscribers and self.feeds.get(session_id) is feed:
                del self.feeds[session_id]
                assert feed.task is not None
                feed.task.cancel()

    async def close(self) -> None:
        tasks = [feed.task for feed in self.feeds.values() if feed.task is not None]
        self.feeds.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def connections(self) -> int:
        return sum(len(feed.subscribers) for feed in self.feeds.values())


HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx (the edge) passes each event on at once
}


class EventStreamResponse(Response):
    """A response that sends what `events` yields until it ends or the client leaves (noticed
    at once from the `http.disconnect` message, not at the next write)."""

    def __init__(self, events: Callable[[], AsyncGenerator[bytes]]) -> None:
        super().__init__(status_code=200, media_type="text/event-stream")
        self.events = events

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/event-stream; charset=utf-8"),
                    *((k.lower().encode(), v.encode()) for k, v in HEADERS.items()),
                ],
            }
        )
        writer = asyncio.create_task(self._write(send))
        listener = asyncio.create_task(self._listen(receive))
        try:
            await asyncio.wait({writer, listener}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, listener):
                task.cancel()
            await asyncio.gather(writer, listener, return_exceptions=True)
        if writer.done() and not writer.cancelled() and writer.exception() is None:
            with contextlib.suppress(OSError):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _write(self, send: Send) -> None:
        # Closed here, whether it ends, fails or is cancelled (the client left): its cleanup
        # (leaving the feed) must not wait for the garbage collector.
        async with contextlib.aclosing(self.events()) as events:
            async for chunk in events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})

    @staticmethod
    async def _listen(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


async def next_frames(subscriber: Subscriber, heartbeat_s: float) -> list[Frame] | None:
    """The frames waiting for this subscriber, waiting up to `heartbeat_s` for one; None when
    the heartbeat is due (or the subscriber lagged: check `lagged`)."""
    if subscriber.queue.empty() and not subscriber.lagged:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscriber.wake.wait(), heartbeat_s)
    if subscriber.lagged:
        return None
    items = subscriber.take()
    return items or None
