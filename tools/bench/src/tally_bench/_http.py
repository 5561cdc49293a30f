"""A minimal HTTP/1.1 keep-alive client on asyncio.Protocol.

A load generator on a 2-core machine cannot afford a full client (httpx spends more CPU per
request than the server it measures): this one writes prepared request bytes and parses only the
status, the headers and a Content-Length or chunked body.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname or not parts.port:
            raise ValueError(f"an http://host:port URL, not {url!r}")
        return cls(parts.hostname, parts.port)

    def request(self, path: str, headers: dict[str, str] | None = None) -> bytes:
        """The bytes of a keep-alive GET."""
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes


class ProtocolError(Exception):
    pass


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers of a response head (without its blank line)."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    if not version.startswith("HTTP/1."):
        raise ProtocolError(f"not an HTTP/1.x response: {status_line!r}")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers


class Dechunker:
    """The payload of a chunked body, fed as it arrives; `done` after the last chunk and its
    trailers, with whatever came after them in `rest`."""

    def __init__(self) -> None:
        self._buffer = b""
        self._left = 0  # payload bytes still due in the current chunk
        self._crlf = False  # the CRLF that ends a chunk is due
        self._trailers = False  # the last chunk was read: lines up to an empty one follow
        self.done = False

    @property
    def rest(self) -> bytes:
        return self._buffer if self.done else b""

    def feed(self, data: bytes) -> bytes:
        buffer = self._buffer + data if self._buffer else data
        out: list[bytes] = []
        position = 0
        while not self.done:
            if self._left:
                piece = buffer[position : position + self._left]
                out.append(piece)
                self._left -= len(piece)
                position += len(piece)
                if self._left:
                    break
                self._crlf = True
            if self._crlf:
                if len(buffer) - position < 2:
                    break
                position += 2
                self._crlf = False
            end = buffer.find(b"\r\n", position)
            if end == -1:
                break
            line = buffer[position:end]
            position = end + 2
            if self._trailers:
                self.done = not line
                continue
            self._left = int(line.split(b";", 1)[0], 16)
            self._trailers = self._left == 0
        self._buffer = buffer[position:]
        return b"".join(out)


class ResponseParser:
    """Whole responses out of a byte stream: Content-Length or chunked bodies."""

    def __init__(self) -> None:
        self._buffer = b""
        self._head: tuple[int, dict[str, str]] | None = None
        self._length = 0
        self._chunks: Dechunker | None = None
        self._body: list[bytes] = []

    def feed(self, data: bytes) -> list[Response]:
        self._buffer += data
        responses: list[Response] = []
        while True:
            if self._head is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end == -1:
                    return responses
                self._head = parse_head(self._buffer[:end])
                self._buffer = self._buffer[end + 4 :]
                headers = self._head[1]
                if "chunked" in headers.get("transfer-encoding", ""):
                    self._chunks = Dechunker()
                else:
                    self._length = int(headers.get("content-length", "0"))
            status, headers = self._head
            if self._chunks is not None:
                self._body.append(self._chunks.feed(self._buffer))
                self._buffer = b""
                if not self._chunks.done:
                    return responses
                self._buffer, self._chunks = self._chunks.rest, None
            else:
                if len(self._buffer) < self._length:
                    return responses
                self._body.append(self._buffer[: self._length])
                self._buffer = self._buffer[self._length :]
            responses.append(Response(status, headers, b"".join(self._body)))
            self._head, self._body = None, []


class HttpConnection(asyncio.Protocol):
    """One keep-alive connection; one request at a time (no pipelining)."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = ResponseParser()
        self._waiting: deque[asyncio.Future[Response]] = deque()
        self.closed = False
        self.answered = 0  # responses received on this connection

    @classmethod
    async def open(cls, endpoint: Endpoint) -> HttpConnection:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(cls, endpoint.host, endpoint.port)
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            responses = self._parser.feed(data)
        except (ProtocolError, ValueError) as exc:
            self._fail(exc)
            return
        for response in responses:
            self.answered += 1
            if response.headers.get("connection", "").lower() == "close":
                self.close()  # the next request goes on a new connection
            if self._waiting:
                waiter = self._waiting.popleft()
                if not waiter.done():
                    waiter.set_result(response)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))

    def _fail(self, exc: Exception) -> None:
        self.closed = True
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
        if self._transport is not None:
            self._transport.close()

    async def request(self, raw: bytes) -> Response:
        if self.closed or self._transport is None:
            raise ConnectionResetError("the connection is closed")
        waiter: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._transport.write(raw)
        return await waiter

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


async def request(
    connection: HttpConnection, endpoint: Endpoint, raw: bytes
) -> tuple[HttpConnection, Response]:
    """A request on `connection`, or on a new one when that one turns out closed by the server
    while idle (as a server does after an error, or an idle timeout): retried once there, as
    HTTP clients do with idempotent requests on a reused connection."""
    if connection.closed:
        connection = await HttpConnection.open(endpoint)
    try:
        return connection, await connection.request(raw)
    except ConnectionResetError:
        if not connection.answered:
            raise
    connection = await HttpConnection.open(endpoint)
    return connection, await connection.request(raw)


async def get(url: str, path: str, headers: dict[str, str] | None = None) -> Response:
    """One GET on a fresh connection (set-up checks, not load)."""
    endpoint = Endpoint.of(url)
    connection = await HttpConnection.open(endpoint)
    try:
        return await asyncio.wait_for(connection.request(endpoint.request(path, headers)), 30)
    finally:
        connection.close()
