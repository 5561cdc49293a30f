"""`tally-stack up|down|status`: the whole of Tally as local processes.

`up` makes sure PostgreSQL, Redis and RabbitMQ run (scripts/ensure-servers.sh), creates and
migrates the `tally` database, then starts a honcho supervisor in the background with moto's S3
server, Triton, nginx as the edge and the five services, and returns once all of them are ready.
Logs go to .run/stack/stack.log. `down` stops the supervisor, which stops every child (SIGTERM,
then SIGKILL after the grace period).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys

import asyncpg

from tally_db import migrate
from tally_stack import launcher
from tally_stack._config import REPO_ROOT, RUN_DIR, StackConfig, release_edge_dir

STATE = RUN_DIR / "state.json"
PID = RUN_DIR / "supervisor.pid"
LOG = RUN_DIR / "stack.log"
WORKERS_READY = {
    "orchestrator": "orchestrator ready",
    "detector": "ready (Triton at",
    "projector": "projector ready",
    "webhooks": "webhooks ready",
    "models": "models ready (Triton at",
    "triton": "local Triton ready",
}
GRACE_S = 30


async def _prepare_database(url: str) -> None:
    base, _, name = url.rpartition("/")
    admin = await asyncpg.connect(f"{base}/postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    connection = await asyncpg.connect(url)
    try:
        await migrate(connection)
    finally:
        await connection.close()


def _honcho_line(name: str, text: str) -> launcher.Ready:
    """`name` has written a line containing `text` (honcho's lines: "HH:MM:SS name | text")."""

    def check(supervisor: launcher.Process) -> bool:
        return any(
            name in line.split("|", 1)[0].split() and text in line for line in supervisor.lines()
        )

    return launcher.Ready(f"{name}: {text!r}", check)


def _readiness(config: StackConfig) -> list[launcher.Ready]:
    """What says that every process of the stack is ready: the HTTP services' /readyz, the
    edge's /healthz, and each worker's ready line."""
    urls = {
        "upload": f"http://127.0.0.1:{config.upload_port}/readyz",
        "gateway": f"http://127.0.0.1:{config.gateway_port}/readyz",
        "edge": f"{config.edge_url}/healthz",
    }
    return [
        launcher.Ready(name, launcher.http_ok(url).check)
        for name, url in urls.items()
        # The edge's /healthz is the gateway's: without it there, the edge is not asked.
        if name not in config.external and not (name == "edge" and "gateway" in config.external)
    ] + [
        _honcho_line(name, WORKERS_READY[name.split("-")[0]])
        for name in config.processes(RUN_DIR)
        if name.split("-")[0] in WORKERS_READY
    ]


def up(timeout_s: float) -> int:
    if PID.exists() and launcher.pid_running(int(PID.read_text())):
        config = StackConfig.load(STATE)
        print(f"the stack is already running: {config.edge_url}")
        return 0
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure-servers.sh"), "rabbitmq", "postgres", "redis"],
        check=True,
    )
    config = StackConfig.fresh()
    asyncio.run(_prepare_database(config.database_url))
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    edge = config.prepare_edge(RUN_DIR)
    config.save(STATE)
    # In a session of its own: it outlives this command, and a kill takes its children with it.
    supervisor = launcher.start(
        "the stack",
        [sys.executable, "-m", "tally_stack.cli", "supervise"],
        log_path=LOG,
        cwd=REPO_ROOT,
        own_session=True,
    )
    PID.write_text(str(supervisor.pid))
    try:
        supervisor.wait_until(*_readiness(config), timeout_s=timeout_s)
    except launcher.LaunchError as exc:
        down()
        raise SystemExit(str(exc)) from None
    except BaseException:
        down()
        raise
    print(f"Tally is up: {config.edge_url} (logs: {LOG}; the edge's: {edge})")
    for name, port in config.probes.items():
        print(f"  {name}: http://127.0.0.1:{port}/metrics")
    return 0


def down() -> int:
    if not PID.exists():
        print("the stack is not running")
        return 0
    # The supervisor stops its children (each given GRACE_S to drain); SIGKILL to all if not.
    launcher.stop_pid(int(PID.read_text()), grace_s=GRACE_S + 15)
    PID.unlink(missing_ok=True)
    release_edge_dir(RUN_DIR)
    print("the stack is down")
    return 0


def supervise() -> int:
    """Run every process of the stack under honcho until SIGTERM (or one of them dies)."""
    from honcho import manager as honcho

    honcho.KILL_WAIT = GRACE_S  # services drain in-flight work before they exit
    config = StackConfig.load(STATE)
    supervisor = honcho.Manager()
    for name, (command, env) in config.processes(RUN_DIR).items():
        supervisor.add_process(name, command, env={**os.environ, **env}, cwd=str(REPO_ROOT))
    supervisor.loop()
    return int(supervisor.returncode or 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-stack", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "status", "supervise"])
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args(argv)
    if args.command == "up":
        return up(args.timeout)
    if args.command == "down":
        return down()
    if args.command == "supervise":
        return supervise()
    running = PID.exists() and launcher.pid_running(int(PID.read_text()))
    print(json.dumps({"running": running, **(json.loads(STATE.read_text()) if running else {})}))
    return 0 if running else 1


if __name__ == "__main__":
    raise SystemExit(main())
