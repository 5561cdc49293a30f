"""Probes of a worker (a service without an HTTP API): /healthz, /readyz and /metrics.

A deliberately small HTTP/1.1 server on asyncio streams: Kubernetes probes and Prometheus
scrapes are all it serves. Readiness comes from the check the worker registers
(`set_readiness`), and turns false as soon as the worker is told to stop, before it drains.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger("tally_worker.probes")

Readiness = Callable[[], Awaitable[dict[str, bool]]]


class Probes:
    def __init__(self) -> None:
        self.readiness: Readiness | None = None
        self.stopping = False
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; return the port (useful when `port` is 0)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def checks(self) -> dict[str, bool]:
        checks = {"started": self.readiness is not None, "running": not self.stopping}
        if self.readiness is not None and not self.stopping:
            try:
                checks |= await asyncio.wait_for(self.readiness(), 5.0)
            except Exception:  # a check that fails or hangs is a not-ready answer
                log.exception("readiness check failed")
                checks["checks"] = False
        return checks

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
            method, path = request.split(b" ", 2)[:2]
            status, content_type, body = await self._answer(method.decode(), path.decode())
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass  # not a request we serve: just close
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _answer(self, method: str, path: str) -> tuple[str, str, bytes]:
        path = path.split("?", 1)[0]
        if method != "GET":
            return "405 Method Not Allowed", "text/plain", b"GET only\n"
        if path == "/healthz":
            return "200 OK", "application/json", b'{"status":"ok"}'
        if path == "/readyz":
            checks = await self.checks()
            ready = all(checks.values())
            body = json.dumps({"status": "ready" if ready else "not_ready", "checks": checks})
            return (
                ("200 OK" if ready else "503 Service Unavailable"),
                "application/json",
                (body.encode()),
            )
        if path == "/metrics":
            return "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        return "404 Not Found", "text/plain", b"not found\n"


probes = Probes()  # the process's probes: a worker is one process


def set_readiness(check: Readiness) -> None:
    """What /readyz asks (connections up, ...), once the worker has made them."""
    probes.readiness = check
