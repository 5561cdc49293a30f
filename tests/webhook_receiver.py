"""A real webhook receiver for tests: an HTTP server on 127.0.0.1 (a thread of its own, so sync
and async tests alike can use it) that records every request and answers each from a script,
and an implementation of the Standard Webhooks signature check of its own, written from the
specification (https://www.standardwebhooks.com/), independent of Tally's signer and SDK."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() when it arrived
    path: str
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay_s: float = 0.0  # before answering


def signatures_valid(secret: str, received: Received) -> list[bool]:
    """For each `v1` signature the request carries, whether it is the HMAC-SHA256, keyed with
    the base64-decoded part of `whsec_…`, of `{webhook-id}.{webhook-timestamp}.{body}`."""
    key = base64.b64decode(secret.split("_", 1)[1])
    signed = b".".join(
        [
            received.headers["webhook-id"].encode(),
            received.headers["webhook-timestamp"].encode(),
            received.body,
        ]
    )
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    found = []
    for entry in received.headers["webhook-signature"].split(" "):
        version, _, value = entry.partition(",")
        if version == "v1":
            found.append(hmac.compare_digest(value, expected))
    return found


class Receiver:
    """Answers requests with `script`'s answers in turn, then with `then` (200 by default)."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.received: list[Received] = []
        self.script: list[Answer] = []
        self.then: Answer | Callable[[Received], Answer] = Answer()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                got = Received(
                    time.monotonic(),
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with receiver._arrived:
                    receiver.received.append(got)
                    receiver._arrived.notify_all()
                answer = receiver._answer(got)
                if answer.delay_s:
                    time.sleep(answer.delay_s)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(answer.body)))
                self.send_header("connection", "close")
                self.end_headers()
                with contextlib.suppress(OSError):  # the sender may stop reading: its cap
                    self.wfile.write(answer.body)
                    self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # https: every connection's TLS handshake first
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, path: str = "/hook", host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

    def _answer(self, got: Received) -> Answer:
        with self._lock:
            if self.script:
                return self.script.pop(0)
        return self.then(got) if callable(self.then) else self.then

    def wait_for(
        self, count: int, timeout_s: float = 30.0, path: str | None = None
    ) -> list[Received]:
        """The requests once `count` (to `path`, if given) have arrived; AssertionError if they
        have not within `timeout_s`."""

        def matching() -> list[Received]:
            return [r for r in self.received if path is None or r.path == path]

        with self._arrived:
            arrived = self._arrived.wait_for(lambda: len(matching()) >= count, timeout_s)
            found = matching()
        assert arrived, f"{len(found)} of {count} webhook requests arrived in {timeout_s} s"
        return found

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    with Receiver() as running:
        yield running
