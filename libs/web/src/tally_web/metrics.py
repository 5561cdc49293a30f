"""Request metrics of an HTTP service: how many answers of each status per route, and the time
to each answer's first byte (an event stream counts once, when it starts).

Routes are counted by their template (`/v1/jobs/{job_id}`), so the labels stay few whatever
the ids; a path no route matches counts as "unmatched".
"""

from __future__ import annotations

import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter(
    "tally_http_requests",
    "HTTP requests answered, by service, method, route template and status",
    ["service", "method", "route", "status"],
)
LATENCY = Histogram(
    "tally_http_request_duration_seconds",
    "Time from a request's arrival to its answer's first byte, by service and route template",
    ["service", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


class RequestMetrics:
    """Pure ASGI middleware (streams pass straight through): `app.add_middleware(RequestMetrics,
    service="gateway")`."""

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        answered = False

        def record(status: int) -> None:
            route = getattr(scope.get("route"), "path", "unmatched")
            REQUESTS.labels(self.service, scope["method"], route, str(status)).inc()
            LATENCY.labels(self.service, route).observe(time.perf_counter() - started)

        async def sending(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start" and not answered:
                answered = True
                record(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except BaseException:
            if not answered:
                record(500)
            raise
