"""What the end-to-end tests share: the local stack as `make up` starts it, extra service
processes the tests kill and restart, and a TCP proxy that cuts connections on demand."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika

from tally_bus import Topology
from tally_client.sdk import TallyClient
from tally_contracts.statuses import FINAL
from tally_stack import free_port, launcher
from tally_stack._config import StackConfig
from tests.eventually import eventually

REDIS_URL = "redis://127.0.0.1:6379/14"
AMQP_URL = os.environ.get("TALLY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Worker:
    """A service process started by a test, and the line it writes once it is ready."""

    process: launcher.Process
    ready_line: str

    @property
    def lines(self) -> list[str]:
        """What it has written so far (stdout and stderr)."""
        return self.process.lines()

    def is_ready(self) -> bool:
        return self.process.is_ready(launcher.log_line(self.ready_line))

    def wait_ready(self, timeout_s: float) -> bool:
        """True once it is ready; False if it exits first or is not ready in time."""
        try:
            self.process.wait_until(launcher.log_line(self.ready_line), timeout_s=timeout_s)
        except launcher.LaunchError:
            return False
        return True

    def kill(self) -> None:
        self.process.kill()


@dataclass(frozen=True)
class Stack:
    url: str
    env: dict[str, str]
    run_dir: Path

    @property
    def config(self) -> StackConfig:
        return StackConfig.load(self.run_dir / "state.json")

    def admin_key(self, tenant: str) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "tally_client.cli", "admin", "create-tenant", tenant, "--json"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return str(json.loads(out)["api_key"])

    def start(self, service: str, ready_text: str, **env: str) -> Worker:
        """Another process of `service` (e.g. "detector") on this stack's servers, with `env`
        over the stack's; its output goes to a log of its own in the stack's directory."""
        name = f"{service}-{uuid.uuid4().hex[:8]}"
        process = launcher.start(
            name,
            [BIN / f"tally-{service}"],
            env={**self.env, **self.config.service_env(), **env},
            log_path=self.run_dir / "workers" / f"{name}.log",
        )
        return Worker(process, ready_text)


@contextlib.contextmanager
def local_stack(database: str, run_dir: Path, **env: str) -> Iterator[Stack]:
    """The whole stack (tally-stack up) on its own database, bus prefix and edge port; its
    processes and queues are gone afterwards."""
    environment = {
        **os.environ,
        "TALLY_STACK_DIR": str(run_dir),
        "TALLY_EDGE_PORT": str(free_port()),
        "TALLY_DATABASE_URL": database,
        "TALLY_BUS_PREFIX": f"e2e-{uuid.uuid4().hex[:8]}",
        "TALLY_REDIS_URL": REDIS_URL,
        **env,
    }
    cli = [sys.executable, "-m", "tally_stack.cli"]
    subprocess.run([*cli, "up", "--timeout", "300"], env=environment, check=True, timeout=360)
    try:
        yield Stack(f"http://127.0.0.1:{environment['TALLY_EDGE_PORT']}", environment, run_dir)
    finally:
        subprocess.run([*cli, "down"], env=environment, check=True, timeout=120)
        asyncio.run(delete_topology(environment["TALLY_BUS_PREFIX"]))
        leftovers = subprocess.run(
            ["pgrep", "-f", str(run_dir)], capture_output=True, text=True
        ).stdout.split()
        assert leftovers == [], f"processes left behind: {leftovers}"


async def delete_topology(prefix: str) -> None:
    """The stack's queues go with it: quorum queues left behind weigh on the broker."""
    for _ in range(30):  # the broker may be coming back from a restart
        try:
            connection = await aio_pika.connect(AMQP_URL)
        except aio_pika.exceptions.AMQPConnectionError:
            await asyncio.sleep(1)
            continue
        async with connection:
            await Topology(prefix).delete(await connection.channel())
        return


def final_state(client: TallyClient, session: str, timeout_s: float) -> dict[str, Any]:
    return eventually(
        lambda: client.jobs(session),
        timeout_s,
        every_s=0.3,
        until=lambda state: state["jobs"] and all(j["status"] in FINAL for j in state["jobs"]),
        what=f"session {session} finished",
    )
