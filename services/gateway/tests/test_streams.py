"""An event stream's response and its subscriber, over a hand-driven ASGI connection: how a
stream ends (its events end, the client leaves, its key is revoked, the server shuts down) and
what it holds meanwhile."""

from __future__ import annotations

import asyncio
import gc
import uuid
from collections.abc import AsyncGenerator

import pytest
from prometheus_client import REGISTRY
from starlette.types import Message

from tally_gateway._gc import watch_collections
from tally_gateway._streams import EventStreamResponse, Frame, Subscriber
from tally_gateway.app import is_event_stream

SCOPE = {"type": "http", "method": "GET", "path": "/", "headers": []}


class Connection:
    """The server's side of one HTTP connection: what was sent, and a client that can leave."""

    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.body_sent = asyncio.Event()
        self._left = asyncio.Event()

    async def receive(self) -> Message:
        await self._left.wait()
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        if message["type"] == "http.response.body":
            self.body_sent.set()

    def leave(self) -> None:
        self._left.set()

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")

    @property
    def completed(self) -> bool:
        last = self.sent[-1] if self.sent else {}
        return last.get("type") == "http.response.body" and not last.get("more_body", False)


class Events:
    """An event stream that sends `first`, then waits for ever; it knows whether it was closed."""

    def __init__(self, first: bytes, then_end: bool = False) -> None:
        self.first = first
        self.then_end = then_end
        self.closed = False

    async def stream(self) -> AsyncGenerator[bytes]:
        try:
            yield self.first
            if not self.then_end:
                await asyncio.Event().wait()
        finally:
            self.closed = True


class Closing:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> None:
        self.calls += 1


async def _started(connection: Connection, response: EventStreamResponse) -> asyncio.Task[None]:
    task = asyncio.create_task(response(SCOPE, connection.receive, connection.send))
    await connection.body_sent.wait()
    return task


async def test_a_stream_whose_events_end_completes_its_response_and_closes() -> None:
    connection, events, on_close = Connection(), Events(b"data: 1\n\n", then_end=True), Closing()
    response = EventStreamResponse(events.stream(), on_close=on_close)
    await response(SCOPE, connection.receive, connection.send)
    assert connection.sent[0]["status"] == 200
    assert connection.body == b"data: 1\n\n"
    assert connection.completed
    assert (events.closed, on_close.calls) == (True, 1)


async def test_a_client_that_leaves_ends_its_stream_at_once_without_completing_it() -> None:
    connection, events, on_close = Connection(), Events(b"data: 1\n\n"), Closing()
    task = await _started(connection, EventStreamResponse(events.stream(), on_close=on_close))
    connection.leave()
    await asyncio.wait_for(task, 5)
    assert (events.closed, on_close.calls) == (True, 1)  # it left its feed; its lease went
    assert not connection.completed  # nobody to tell


async def test_a_revoked_stream_ends_cleanly() -> None:
    connection, events, on_close = Connection(), Events(b"data: 1\n\n"), Closing()
    until: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    response = EventStreamResponse(events.stream(), until=until, on_close=on_close)
    task = await _started(connection, response)
    until.set_result(None)
    await asyncio.wait_for(task, 5)
    assert (events.closed, on_close.calls) == (True, 1)
    assert connection.completed  # the client sees the stream end, and its reconnect a 401


async def test_a_server_that_cancels_a_stream_sees_the_cancellation() -> None:
    connection, events, on_close = Connection(), Events(b"data: 1\n\n"), Closing()
    task = await _started(connection, EventStreamResponse(events.stream(), on_close=on_close))
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (events.closed, on_close.calls) == (True, 1)


async def test_an_interruption_after_the_stream_ended_changes_nothing() -> None:
    """The client leaves just as the events end: the response completes, and nothing cancels
    what runs after it (on_close)."""
    connection, events = Connection(), Events(b"data: 1\n\n", then_end=True)
    closed = asyncio.Event()

    async def on_close() -> None:
        connection.leave()  # the listener's end is noticed only now
        await asyncio.sleep(0.01)
        closed.set()

    response = EventStreamResponse(events.stream(), on_close=on_close)
    await response(SCOPE, connection.receive, connection.send)
    assert (closed.is_set(), connection.completed) == (True, True)


async def test_an_open_stream_runs_one_task_beside_the_requests_own() -> None:
    before = len(asyncio.all_tasks())
    connection = Connection()
    task = await _started(connection, EventStreamResponse(Events(b"data: 1\n\n").stream()))
    assert len(asyncio.all_tasks()) == before + 2  # the request's task and its listener
    connection.leave()
    await asyncio.wait_for(task, 5)


def _frame(ms: int) -> Frame:
    return Frame((ms, 0), "job", f"id: {ms}-0\n\n".encode())


async def test_a_waiting_subscriber_gets_what_is_offered_and_a_heartbeat_when_nothing_is() -> None:
    subscriber = Subscriber(buffer=4)
    assert await subscriber.next_frames(0.01) is None  # nothing within the heartbeat
    waiting = asyncio.create_task(subscriber.next_frames(5))
    await asyncio.sleep(0)
    subscriber.offer(_frame(1))
    subscriber.offer(_frame(2))
    assert await asyncio.wait_for(waiting, 5) == [_frame(1), _frame(2)]
    subscriber.offer(_frame(3))
    assert await subscriber.next_frames(5) == [_frame(3)]  # already there: no wait


async def test_a_waiting_subscriber_that_overflows_wakes_lagged() -> None:
    subscriber = Subscriber(buffer=1)
    waiting = asyncio.create_task(subscriber.next_frames(5))
    await asyncio.sleep(0)
    subscriber.offer(_frame(1))
    subscriber.offer(_frame(2))  # before its writer ran: one more than it may hold
    assert await asyncio.wait_for(waiting, 5) is None
    assert subscriber.lagged


def test_only_event_streams_go_without_fastapis_request_span() -> None:
    assert is_event_stream({"type": "http", "path": f"/v1/sessions/{uuid.uuid4()}/events"})
    assert not is_event_stream({"type": "http", "path": f"/v1/sessions/{uuid.uuid4()}/jobs"})
    assert not is_event_stream({"type": "lifespan"})


def test_every_garbage_collection_is_timed_by_generation() -> None:
    def collections() -> float:
        count = REGISTRY.get_sample_value("tally_gc_pause_seconds_count", {"generation": "2"})
        return count or 0.0

    watch_collections()
    callbacks = len(gc.callbacks)
    watch_collections()  # once per process, however often asked
    assert len(gc.callbacks) == callbacks
    before = collections()
    gc.collect()
    assert collections() == before + 1
