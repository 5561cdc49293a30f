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
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import asyncpg

from tally_db import migrate
from tally_stack._config import REPO_ROOT, RUN_DIR, StackConfig

STATE = RUN_DIR / "state.json"
PID = RUN_DIR / "supervisor.pid"
LOG = RUN_DIR / "stack.log"
WORKERS_READY = {
    "orchestrator": "orchestrator ready",
    "detector": "ready (Triton at",
    "projector": "projector ready",
    "triton": "local Triton ready",
}
GRACE_S = 30


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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


def _http_ok(url: str) -> bool:
    with (
        contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
        urllib.request.urlopen(url, timeout=2) as response,
    ):
        return bool(response.status == 200)
    return False


def _wait_ready(config: StackConfig, supervisor: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    urls = {
        name: url
        for name, url in {
            "upload": f"http://127.0.0.1:{config.upload_port}/readyz",
            "gateway": f"http://127.0.0.1:{config.gateway_port}/readyz",
            "edge": f"{config.edge_url}/healthz",
        }.items()
        # The edge's /healthz is the gateway's: without it there, the edge is not asked.
        if name not in config.external and not (name == "edge" and "gateway" in config.external)
    }
    workers = {
        name: WORKERS_READY[name.split("-")[0]]
        for name in config.processes(RUN_DIR)
        if name.split("-")[0] in WORKERS_READY
    }
    pending = set(urls) | set(workers)
    while pending and time.monotonic() < deadline:
        if supervisor.poll() is not None:
            raise SystemExit(f"the stack stopped while starting; see {LOG}:\n{_tail()}")
        log = LOG.read_text(errors="replace") if LOG.exists() else ""
        for name in list(pending):
            if name in urls:
                ready = _http_ok(urls[name])
            else:
                # honcho's lines: "HH:MM:SS name | text"
                ready = any(
                    name in line.split("|", 1)[0].split() and workers[name] in line
                    for line in log.splitlines()
                )
            if ready:
                pending.discard(name)
        time.sleep(0.5)
    if pending:
        raise SystemExit(f"not ready after {timeout_s:.0f} s: {sorted(pending)}; see {LOG}")


def _tail(lines: int = 30) -> str:
    return "\n".join(LOG.read_text(errors="replace").splitlines()[-lines:]) if LOG.exists() else ""


def up(timeout_s: float) -> int:
    if PID.exists() and _running(int(PID.read_text())):
        config = StackConfig.load(STATE)
        print(f"the stack is already running: {config.edge_url}")
        return 0
    subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "ensure-servers.sh"), "rabbitmq", "postgres", "redis"],
        check=True,
    )
    config = StackConfig.fresh()
    asyncio.run(_prepare_database(config.database_url))
    (RUN_DIR / "nginx" / "tmp").mkdir(parents=True, exist_ok=True)
    (RUN_DIR / "nginx" / "nginx.conf").write_text(config.nginx_conf(RUN_DIR))
    config.save(STATE)
    with LOG.open("wb") as log:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "tally_stack.cli", "supervise"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=REPO_ROOT,
        )
    PID.write_text(str(supervisor.pid))
    try:
        _wait_ready(config, supervisor, timeout_s)
    except BaseException:
        down()
        raise
    print(f"Tally is up: {config.edge_url} (logs: {LOG})")
    for name, port in config.probes.items():
        print(f"  {name}: http://127.0.0.1:{port}/metrics")
    return 0


def down() -> int:
    if not PID.exists():
        print("the stack is not running")
        return 0
    pid = int(PID.read_text())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S + 15
    while _running(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.2)
    if _running(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    PID.unlink(missing_ok=True)
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
    running = PID.exists() and _running(int(PID.read_text()))
    print(json.dumps({"running": running, **(json.loads(STATE.read_text()) if running else {})}))
    return 0 if running else 1


if __name__ == "__main__":
    raise SystemExit(main())
