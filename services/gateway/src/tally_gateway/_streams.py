"""Server-Sent Events: each session's stream read once per process, shared by its subscribers.

Each session's event stream in Redis (`session:{sid}:events`: `job`, `summary` and `done`
entries written by the projector's fold) is read once per gateway process, however many clients
watch it: one reader task reads every watched session's stream in one XREAD, and each entry
becomes its SSE frame once, the same bytes handed to every subscriber's bounded queue. A
subscriber that falls behind (its queue full: a slow client) does not hold anyone up: it is
marked lagged, its queue is dropped, and its writer sends a fresh snapshot instead (saying so)
and goes on from there.

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
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client import Gauge
from redis.asyncio import Redis
from redis.exceptions import RedisError
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tally_contracts import projection as redis_keys
from tally_gateway._views import job_from_projection, summary_from_session

log = logging.getLogger("tally_gateway.streams")

StreamId = tuple[int, int]
ORIGIN: Final[StreamId] = (0, 0)


_ID_PART_MAX = 2**64 - 1  # Redis stream ids are two unsigned 64-bit integers


def parse_id(text: str | None) -> StreamId | None:
    """A Redis stream id `ms-seq`; None for anything else: other digits than ASCII ones (which
    `int` would take), parts too long for Python to convert or too large for Redis to take
    (both once answered 500, or a stream cut at its first read)."""
    if not text:
        return None
    ms, dash, seq = text.strip().partition("-")
    parts = (ms, seq)
    if not (dash and all(p.isascii() and p.isdigit() and len(p) <= 20 for p in parts)):
        return None
    stream_id = int(ms), int(seq)
    if max(stream_id) > _ID_PART_MAX:
        return None
    return stream_id


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
    """The SSE frame of one stream entry (the projector's `job`, `summary`, `done` or
    `deleted`)."""
    event_id = parse_id(_text(raw_id))
    assert event_id is not None  # Redis gives stream ids
    fields = {_text(k): _text(v) for k, v in raw.items()}
    kind = fields.pop("type", "job")
    if kind == "job":
        data: dict[str, Any] = job_from_projection(fields)
    elif kind == "deleted":
        data = {"session_id": session_id, "job_id": fields["job_id"]}
    else:
        data = {"session_id": session_id, "summary": summary_from_session(fields)}
    return Frame(event_id, kind, frame(event_id, kind, data))


class Subscriber:
    """One client's place in a feed: the frames waiting for its writer (at most `buffer`), or
    `lagged` once it overflowed.

    Ten thousand of these live in one process, so each is small: a list and, only while its
    writer waits, one future (an asyncio.Queue and an Event would be five deques of ~760 bytes
    each, held for the stream's whole life)."""

    __slots__ = ("_frames", "_waiter", "buffer", "lagged")

    def __init__(self, buffer: int) -> None:
        self.buffer = buffer
        self.lagged = False
        self._frames: list[Frame] = []
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._frames)

    def offer(self, item: Frame) -> None:
        if self.lagged:
            return
        if len(self._frames) < self.buffer:
            self._frames.append(item)
        else:
            self.lagged = True
            self._frames = []
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def take(self) -> list[Frame]:
        """Every frame waiting, oldest first."""
        items, self._frames = self._frames, []
        return items

    async def next_frames(self, heartbeat_s: float) -> list[Frame] | None:
        """The frames waiting, waiting up to `heartbeat_s` for one; None when the heartbeat is
        due (or the subscriber lagged: check `lagged`)."""
        if not self._frames and not self.lagged:
            loop = asyncio.get_running_loop()
            self._waiter = waiter = loop.create_future()
            # A timer handle, not asyncio.timeout: nothing to cancel, no exception to catch.
            timer = loop.call_later(heartbeat_s, _resolve, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None
        if self.lagged:
            return None
        return self.take() or None


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass(eq=False)
class SessionFeed:
    """One watched session: its subscribers, and the last entry handed to them."""

    session_id: str
    subscribers: set[Subscriber] = field(default_factory=set)
    position: StreamId = ORIGIN  # the last entry handed out (or the stream's end at start)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    failed: BaseException | None = None

    def deliver(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        for raw_id, raw in entries:
            item = entry_frame(self.session_id, raw_id, raw)
            self.position = item.id
            for subscriber in tuple(self.subscribers):
                subscriber.offer(item)


class FeedHub:
    """The process's watched sessions, read from Redis by one task with one XREAD over all
    their streams (one connection, however many sessions). A session's feed starts with its
    first subscriber and stops with its last."""

    # Each XREAD blocks at most `block_ms` (under redis-py's 5 s read timeout), so a newly
    # watched session joins the read within that; after entries arrive, the reader waits
    # `gather_s` so that one read serves the events of many sessions.
    def __init__(
        self, redis: Redis, buffer: int, block_ms: int = 200, gather_s: float = 0.005
    ) -> None:
        self.redis = redis
        self.buffer = buffer
        self.block_ms = block_ms
        self.gather_s = gather_s
        self.feeds: dict[str, SessionFeed] = {}
        self._reader: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def subscribe(self, session_id: str) -> AsyncIterator[tuple[SessionFeed, Subscriber]]:
        feed = self.feeds.get(session_id)
        if feed is None:
            feed = self.feeds[session_id] = SessionFeed(session_id)
            await self._start(feed)
        subscriber = Subscriber(self.buffer)
        feed.subscribers.add(subscriber)
        try:
            await feed.ready.wait()
            if feed.failed is not None:
                raise feed.failed
            yield feed, subscriber
        finally:
            feed.subscribers.discard(subscriber)
            if not feed.subscribers and self.feeds.get(session_id) is feed:
                del self.feeds[session_id]

    async def _start(self, feed: SessionFeed) -> None:
        """Find where the session's stream ends (before any subscriber reads its catch-up, so
        that the two together miss nothing), then have the reader include it."""
        try:
            last: Any = await self.redis.xrevrange(
                redis_keys.session_events_key(feed.session_id), count=1
            )
            feed.position = (parse_id(last[0][0].decode()) if last else None) or ORIGIN
        except BaseException as exc:  # its waiters learn it too; the next subscriber retries
            feed.failed = exc
            if self.feeds.get(feed.session_id) is feed:
                del self.feeds[feed.session_id]
            raise
        finally:
            feed.ready.set()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.create_task(self._read(), name="session feeds")

    async def _read(self) -> None:
        delay = 0.1
        while self.feeds:
            watched = {
                redis_keys.session_events_key(feed.session_id): feed
                for feed in self.feeds.values()
                if feed.ready.is_set() and feed.failed is None
            }
            if not watched:
                await asyncio.sleep(0.01)
                continue
            streams: dict[Any, Any] = {k: format_id(f.position) for k, f in watched.items()}
            try:
                reply: Any = await self.redis.xread(streams, count=500, block=self.block_ms)
                delay = 0.1
            except RedisError as exc:
                log.warning("reading %d session streams failed (%s)", len(streams), exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            for raw_key, entries in reply or ():
                feed = watched[_text(raw_key)]
                if self.feeds.get(feed.session_id) is feed:  # still watched
                    feed.deliver(entries)
            if reply:
                await asyncio.sleep(self.gather_s)

    async def close(self) -> None:
        self.feeds.clear()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)


HEADERS: Final = {
    "Cache-Control": "no-cache",
    "X-Accel-Buffering": "no",  # nginx (the edge) passes each event on at once
}


SSE_CONNECTIONS = Gauge("tally_sse_connections", "Event streams open on this gateway process")


class EventStreamResponse(Response):
    """A response that sends what `events` yields until it ends, the client leaves (noticed
    at once from the `http.disconnect` message, not at the next write) or `until` is done (its
    key was revoked: the stream ends cleanly, and the client's reconnect meets a 401). Then
    `on_close` runs (the stream's lease goes), however it ended.

    Thousands of these are open at once, each for hours, so a stream holds little: the
    request's own task writes it, and one more task listens for the client leaving. That, or
    `until`, interrupts the writer by cancelling it (a cancellation it then takes back); no
    task waits on `until` and none waits on the writer and the listener (four tasks a stream
    were ~5 KiB)."""

    def __init__(
        self,
        events: AsyncGenerator[bytes],
        until: asyncio.Future[None] | None = None,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        # Not Response.__init__: its rendered empty body and its headers would be held for the
        # stream's life and never sent (the start message below has the stream's own).
        self.status_code = 200
        self.background = None
        self.events = events
        self.until = until
        self.on_close = on_close
        self._writer: asyncio.Task[Any] | None = None  # while it writes, and may be interrupted
        self._interrupted = False

    def _interrupt(self, _: object) -> None:
        # Runs from a done-callback: one scheduled before the writer left does nothing now.
        if self._writer is not None and not self._interrupted:
            self._interrupted = True
            self._writer.cancel()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
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
            listener = asyncio.create_task(_listen(receive))
            listener.add_done_callback(self._interrupt)
            if self.until is not None:
                self.until.add_done_callback(self._interrupt)
            writer = self._writer = asyncio.current_task()
            assert writer is not None
            SSE_CONNECTIONS.inc()
            finished = False
            try:
                async for chunk in self.events:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    del chunk  # not held while the stream waits for its next event
                finished = True
            except asyncio.CancelledError:
                # Ours (the client left, or `until`): taken back. Anyone else's (shutdown): raised.
                if not self._interrupted or writer.uncancel() > 0:
                    raise
            finally:
                self._writer = None
                SSE_CONNECTIONS.dec()
                listener.remove_done_callback(self._interrupt)
                if self.until is not None:
                    self.until.remove_done_callback(self._interrupt)
                listener.cancel()
                # Its cleanup (leaving the feed) runs now, not when the collector finds it.
                await self.events.aclose()
            await asyncio.gather(listener, return_exceptions=True)
            if finished or (self.until is not None and self.until.done()):
                with contextlib.suppress(OSError):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            if self.on_close is not None:
                await self.on_close()


async def _listen(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
