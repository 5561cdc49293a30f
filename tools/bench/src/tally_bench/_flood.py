"""A bounded flood: requests on a few keep-alive connections, at an offered rate (or back to
back), for at most a time and a count, answered statuses counted (and whether each 429 said
when to retry). Loopback only: the URL must name 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from dataclasses import dataclass, field

from tally_bench._http import Endpoint, HttpConnection, ProtocolError, request


@dataclass(frozen=True, slots=True)
class FloodParams:
    url: str
    path: str
    headers: dict[str, str]
    connections: int
    duration_s: float
    max_requests: int
    made_up_keys: bool = False  # each request with a fresh key nobody issued
    rate: float = 0.0  # requests per second offered in all; 0: each connection back to back


@dataclass(frozen=True, slots=True)
class FloodResult:
    sent: int
    statuses: dict[int, int] = field(default_factory=dict)
    retry_after: int = 0  # 429s with a Retry-After of at least one second
    errors: int = 0  # broken connections
    elapsed_s: float = 0.0

    @property
    def rps(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


async def flood(params: FloodParams) -> FloodResult:
    endpoint = Endpoint.of(params.url)
    if endpoint.host != "127.0.0.1":
        raise ValueError(f"a flood stays on loopback, not {endpoint.host}")
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    counts = {"sent": 0, "retry_after": 0, "errors": 0}
    fixed = endpoint.request(params.path, params.headers)
    started = loop.time()
    deadline = started + params.duration_s

    async def worker(index: int) -> None:
        connection = await HttpConnection.open(endpoint)
        gap = params.connections / params.rate if params.rate > 0 else 0.0
        due = started + index * gap / params.connections
        try:
            while counts["sent"] < params.max_requests and loop.time() < deadline:
                if gap:  # a connection that falls behind sends back to back until it catches up
                    due += gap
                    if due > loop.time():
                        await asyncio.sleep(due - loop.time())
                counts["sent"] += 1
                raw = fixed
                if params.made_up_keys:
                    made_up = {"Authorization": f"Bearer tly_{uuid.uuid4().hex}"}
                    raw = endpoint.request(params.path, params.headers | made_up)
                try:
                    connection, response = await request(connection, endpoint, raw)
                except (OSError, ProtocolError):
                    counts["errors"] += 1
                    connection = await HttpConnection.open(endpoint)
                    continue
                statuses[response.status] += 1
                if response.status == 429:
                    with contextlib.suppress(ValueError):
                        if int(response.headers.get("retry-after", "0")) >= 1:
                            counts["retry_after"] += 1
        finally:
            connection.close()

    await asyncio.gather(*(worker(i) for i in range(params.connections)))
    return FloodResult(
        counts["sent"],
        dict(statuses),
        counts["retry_after"],
        counts["errors"],
        loop.time() - started,
    )


def run_flood(params: FloodParams) -> FloodResult:
    """The entry point of the flood's own process."""
    return asyncio.run(flood(params))
