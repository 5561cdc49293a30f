"""What the bench runs on, all of it its own: a throwaway PostgreSQL database, a Redis database
it flushes, a bus prefix no stack uses, and the services as subprocesses on free ports,
configured by TALLY_* variables (libs never import services). Everything is removed or stopped
at the end, error or not."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from redis.asyncio import Redis

from tally_bus import Bus, Topology
from tally_stack import free_port, launcher

PG_ADMIN_DSN = os.environ.get("TALLY_PG_ADMIN_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TALLY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("TALLY_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
BIN = Path(sys.executable).parent
# What lifts every request rate limit (tally_web.limits) of a service: for the benches that
# measure a path at full load from one key, not the limits.
UNLIMITED: dict[str, str] = {
    f"TALLY_LIMIT_{who}{kind}_{what}".upper(): "1e9"
    for who in ("", "tenant_")
    for kind in ("read", "write", "stream")
    for what in ("rate", "burst")
}
# What lifts the caps on streams open at once (per key and per tenant): for the benches that
# open thousands of streams from one key.
UNCAPPED_STREAMS: dict[str, str] = {
    "TALLY_LIMIT_STREAMS_PER_KEY": "1000000",
    "TALLY_LIMIT_STREAMS_PER_TENANT": "1000000",
}


@dataclass(frozen=True, slots=True)
class Names:
    """This run's own database, bus prefix and Redis database."""

    run: str
    database_url: str
    bus_prefix: str
    redis_url: str

    @classmethod
    def fresh(cls) -> Names:
        run = uuid.uuid4().hex[:12]
        return cls(
            run,
            PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/tally_bench_{run}",
            f"tally-bench-{run}",
            REDIS_URL,
        )

    @property
    def topology(self) -> Topology:
        return Topology(self.bus_prefix)


async def _admin(sql: str) -> None:
    connection = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@contextlib.asynccontextmanager
async def database(names: Names) -> AsyncIterator[str]:
    """An empty database for this run (the services migrate it), dropped afterwards."""
    name = names.database_url.rsplit("/", 1)[1]
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield names.database_url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.asynccontextmanager
async def redis_database(names: Names) -> AsyncIterator[Redis]:
    """The bench's Redis database, flushed before and after."""
    redis = Redis.from_url(names.redis_url)
    try:
        await redis.flushdb()
        yield redis
    finally:
        with contextlib.suppress(Exception):
            await redis.flushdb()
        await redis.aclose()


class Service:
    """A service process of the bench, with its log in a file (a restart appends to it)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], logs: Path) -> None:
        self.name = name
        base = {k: v for k, v in os.environ.items() if not k.startswith(("TALLY_", "OTEL_"))}
        self.process = launcher.start(
            name,
            command,
            env=base | {"PYTHONUNBUFFERED": "1"} | env,
            log_path=logs / f"{name}.log",
            append_log=True,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def rss_kib(self) -> int:
        """Resident memory now (VmRSS of /proc/<pid>/status)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"{self.name} has no VmRSS")

    def cpu_s(self) -> float:
        """CPU time used so far, user and system (utime and stime of /proc/<pid>/stat)."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after the command's name, field 3 on
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def wait_for_log(self, text: str, timeout_s: float = 60.0) -> None:
        await asyncio.to_thread(
            self.process.wait_until, launcher.log_line(text), timeout_s=timeout_s
        )

    async def wait_for_http(self, url: str, path: str, timeout_s: float = 60.0) -> None:
        await asyncio.to_thread(
            self.process.wait_until, launcher.http_ok(url + path), timeout_s=timeout_s
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        self.process.stop(timeout_s)


class Services:
    """The bench's processes: the real gateway and projector, and the reference app."""

    def __init__(
        self,
        names: Names,
        logs: Path,
        gateway_redis_pool: int | None = None,
        gateway_env: dict[str, str] | None = None,
    ) -> None:
        self.names = names
        self.logs = logs
        self.gateway_env = gateway_env or {}  # more of the gateway's settings (TALLY_LIMIT_*)
        # redis-py reads a pool size from the URL: `max_connections` lifts its default cap.
        self.gateway_redis_url = names.redis_url + (
            f"?max_connections={gateway_redis_pool}" if gateway_redis_pool else ""
        )
        self._running: list[Service] = []

    def _start(self, name: str, command: list[str], env: dict[str, str]) -> Service:
        service = Service(name, command, env, self.logs)
        self._running.append(service)
        return service

    async def projector(self) -> Service:
        service = self._start(
            "projector",
            [str(BIN / "tally-projector")],
            {
                "TALLY_DATABASE_URL": self.names.database_url,
                "TALLY_REDIS_URL": self.names.redis_url,
                "TALLY_AMQP_URL": AMQP_URL,
                "TALLY_BUS_PREFIX": self.names.bus_prefix,
                "TALLY_SHUTDOWN_GRACE_S": "2",
            },
        )
        await service.wait_for_log("projector ready")
        return service

    async def gateway(self) -> tuple[Service, str]:
        port = free_port()
        service = self._start(
            "gateway",
            [str(BIN / "tally-gateway")],
            {
                "TALLY_HOST": "127.0.0.1",
                "TALLY_PORT": str(port),
                "TALLY_DATABASE_URL": self.names.database_url,
                "TALLY_REDIS_URL": self.gateway_redis_url,
                # The run's own bus (the gateway declares the topology and publishes deletions
                # there), not the default prefix a developer's stack uses.
                "TALLY_AMQP_URL": AMQP_URL,
                "TALLY_BUS_PREFIX": self.names.bus_prefix,
                # The gateway opens an S3 client at start but reads no object on the status
                # path: nothing needs to listen there.
                "TALLY_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}",
                "TALLY_S3_ACCESS_KEY_ID": "tally-local",
                "TALLY_S3_SECRET_ACCESS_KEY": "tally-local-secret",
                "TALLY_SHUTDOWN_GRACE_S": "2",
            }
            | self.gateway_env,
        )
        url = f"http://127.0.0.1:{port}"
        await service.wait_for_http(url, "/readyz")
        return service, url

    async def reference(self) -> tuple[Service, str]:
        port = free_port()
        service = self._start(
            "reference",
            [sys.executable, "-m", "tally_bench._reference"],
            {
                "TALLY_HOST": "127.0.0.1",
                "TALLY_PORT": str(port),
                "TALLY_REDIS_URL": self.names.redis_url,
            },
        )
        url = f"http://127.0.0.1:{port}"
        await service.wait_for_http(url, "/healthz")
        return service, url

    def stop(self, service: Service) -> None:
        service.stop()
        self._running.remove(service)

    def stop_all(self) -> None:
        while self._running:
            self._running.pop().stop()


@contextlib.asynccontextmanager
async def bench_bus(names: Names) -> AsyncIterator[Bus]:
    """The bench's own bus topology, deleted at the end."""
    bus = await Bus.connect(AMQP_URL, names.topology)
    try:
        yield bus
    finally:
        with contextlib.suppress(Exception):
            channel = await bus.connection.channel()
            await names.topology.delete(channel)
        await bus.close()
