"""Server-Sent Events: a cheap subscriber on asyncio.Protocol (frames by tally_client.sse).

Thousands of subscribers share one process with the measurement, so a subscriber does the least
it can: it de-chunks, splits frames and hands them on with the time they arrived; what a frame
means is its caller's business (a load client only looks for `"updated_at"` in `job` frames).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

from tally_bench._http import Dechunker, Endpoint, ProtocolError, parse_head
from tally_client.sse import Frame, SSEParser

_UPDATED_AT = b'"updated_at"'


def updated_at_of(data: bytes) -> str | None:
    """The `"updated_at"` string of a JSON object's text, found without parsing the JSON (a
    job object has one; its nested objects have none)."""
    at = data.find(_UPDATED_AT)
    if at == -1:
        return None
    start = data.find(b'"', at + len(_UPDATED_AT))
    if start == -1 or data[at + len(_UPDATED_AT) : start].strip() != b":":
        return None  # null, or not a string
    end = data.find(b'"', start + 1)
    return None if end == -1 else data[start + 1 : end].decode()


def stream_time(event_id: str | None) -> float | None:
    """Epoch seconds of a Redis stream id (`<ms>-<seq>`: when the entry was appended, by Redis's
    clock); None for an id of another shape."""
    if not event_id:
        return None
    ms, _, seq = event_id.partition("-")
    return int(ms) / 1000 if ms.isdigit() and seq.isdigit() else None


class Clock:
    """Epoch seconds of ISO-8601 times, remembered: every subscriber of a session gets the same
    `updated_at`, and parsing it once per event rather than once per delivery keeps the
    clients cheap."""

    def __init__(self, size: int = 20_000) -> None:
        self._seen: dict[str, float] = {}
        self._size = size

    def epoch(self, iso: str) -> float:
        seen = self._seen.get(iso)
        if seen is None:
            if len(self._seen) >= self._size:
                self._seen.clear()
            seen = self._seen[iso] = datetime.fromisoformat(iso).timestamp()
        return seen


OnFrames = Callable[[list[Frame], float], None]


class Subscriber(asyncio.Protocol):
    """One SSE connection: `status` resolves with the response's status code; frames go to
    `on_frames` with the wall-clock time (epoch seconds) of the read that brought them."""

    def __init__(self, request: bytes, on_frames: OnFrames, now: Callable[[], float]) -> None:
        self._request = request
        self._on_frames = on_frames
        self._now = now
        self._transport: asyncio.Transport | None = None
        self._head = b""
        self._chunks: Dechunker | None = None
        self._parser = SSEParser()
        self.status: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @classmethod
    async def open(
        cls,
        endpoint: Endpoint,
        path: str,
        headers: dict[str, str],
        on_frames: OnFrames,
        now: Callable[[], float],
    ) -> Subscriber:
        request = endpoint.request(path, {"Accept": "text/event-stream", **headers})
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: cls(request, on_frames, now), endpoint.host, endpoint.port
        )
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        now = self._now()
        if not self.status.done():
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end == -1:
                return
            try:
                status, headers = parse_head(self._head[:end])
            except (ProtocolError, ValueError) as exc:
                self.status.set_exception(exc)
                self.close()
                return
            data, self._head = self._head[end + 4 :], b""
            if "chunked" in headers.get("transfer-encoding", ""):
                self._chunks = Dechunker()
            self.status.set_result(status)
            if status != 200:
                self.close()
                return
        if self._chunks is not None:
            data = self._chunks.feed(data)
        frames = self._parser.feed(data)
        if frames:
            self._on_frames(frames, now)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.status.done():
            self.status.set_exception(exc or ConnectionResetError("closed before a response"))
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
