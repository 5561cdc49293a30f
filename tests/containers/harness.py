"""The compose stack as the container tests run it: docker-compose.yml through
scripts/compose.sh (as `make compose-up` does), on a project name, env file and edge port of
its own, with the Docker Engine API (docker SDK) to find, inspect and kill its containers."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.models.containers import Container

from tally_stack import free_port
from tests.eventually import eventually

REPO = Path(__file__).resolve().parents[2]
VERSION = os.environ.get("TALLY_VERSION", "dev")
# What `make images` builds; the tests run these.
IMAGES = [
    f"tally/{name}:{VERSION}"
    for name in ("tally", "triton-cpu", "edge", "s3", "rabbitmq", "postgres", "redis")
]
# Services that run until stopped (migrate runs once; admin only when asked).
LONG_RUNNING = {
    "rabbitmq", "postgres", "redis", "s3", "triton", "upload", "gateway", "orchestrator",
    "projector", "webhooks", "models", "detector", "edge",
}  # fmt: skip


def engine() -> docker.DockerClient:
    """The local Docker engine; without one the container tests cannot run (outside CI they are
    skipped: `make images` starts one and builds what they need)."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no Docker engine ({exc}); `make images` starts one")
    missing = [image for image in IMAGES if not client.images.list(name=image)]
    if missing:
        if os.environ.get("CI"):
            raise AssertionError(f"images not built: {missing} (make images)")
        pytest.skip(f"images not built: {missing}; run `make images`")
    return client


@dataclass
class ComposeStack:
    project: str
    env_file: Path
    edge_port: int
    client: docker.DockerClient

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def compose(self, *args: str, timeout_s: float = 300) -> str:
        env = {
            **os.environ,
            "COMPOSE_PROJECT_NAME": self.project,
            "TALLY_COMPOSE_ENV_FILE": str(self.env_file),
        }
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "compose.sh"), *args],
            env=env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        if done.returncode != 0:
            # `up` fails when a dependency turns unhealthy: say which, why, and what it logged.
            said = f"\n{self.health()}\n{self.logs()}" if args[:1] == ("up",) else ""
            raise AssertionError(
                f"compose {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
                + said
            )
        return done.stdout

    def health(self) -> str:
        """Each container's state and its healthcheck's last answers."""
        lines = []
        for container in self.containers(every=True):
            container.reload()
            health = container.attrs["State"].get("Health") or {}
            last = [str(entry.get("Output", "")).strip() for entry in health.get("Log", [])[-3:]]
            lines.append(f"{container.name}: {container.status}/{health.get('Status')} {last}")
        return "\n".join(lines)

    def containers(self, service: str | None = None, every: bool = False) -> list[Container]:
        labels = [f"com.docker.compose.project={self.project}"]
        if service is not None:
            labels.append(f"com.docker.compose.service={service}")
        found: list[Container] = self.client.containers.list(all=every, filters={"label": labels})
        return found

    def wait_healthy(self, timeout_s: float = 240) -> None:
        """Every long-running container running and healthy (each has a healthcheck)."""

        def states() -> dict[str, str]:
            state = {}
            for container in self.containers(every=True):
                service = container.labels["com.docker.compose.service"]
                if service not in LONG_RUNNING:
                    continue
                container.reload()
                health = container.attrs["State"].get("Health", {}).get("Status", "none")
                state[str(container.name)] = f"{container.status}/{health}"
            return state

        try:
            eventually(
                states,
                timeout_s,
                every_s=1,
                until=lambda state: state and all(s == "running/healthy" for s in state.values()),
                what="every container healthy",
            )
        except AssertionError as failure:
            raise AssertionError(f"{failure}\n{self.logs()}") from None

    def admin(self, *args: str) -> str:
        """`tally admin …` in the stack's admin container, as an operator runs it."""
        return self.compose("run", "--rm", "-T", "admin", *args)

    def create_tenant(self, name: str) -> str:
        out = self.admin("create-tenant", name, "--json")
        return str(json.loads(out.strip().splitlines()[-1])["api_key"])

    def logs(self, tail: int = 30) -> str:
        return "\n".join(
            f"--- {c.name}\n{c.logs(tail=tail).decode(errors='replace')}"
            for c in self.containers(every=True)
        )

    def leftovers(self) -> dict[str, list[str]]:
        label: dict[str, str | list[str] | bool] = {
            "label": f"com.docker.compose.project={self.project}"
        }
        return {
            "containers": [
                str(c.name) for c in self.client.containers.list(all=True, filters=label)
            ],
            "networks": [str(n.name) for n in self.client.networks.list(filters=label)],
            "volumes": [str(v.name) for v in self.client.volumes.list(filters=label)],
        }

    def down(self) -> None:
        self.compose("down", "-v", "--remove-orphans", "--timeout", "60")


@contextmanager
def compose_stack(directory: Path, detectors: int = 1) -> Iterator[ComposeStack]:
    client = engine()
    project = f"tally-test-{os.getpid()}-{int(time.time()) % 100_000}"
    env_file = directory / "compose.env"
    stack = ComposeStack(project, env_file, free_port(), client)
    stack.compose("env", str(env_file))
    settings = env_file.read_text().replace(
        "TALLY_COMPOSE_PORT=8090", f"TALLY_COMPOSE_PORT={stack.edge_port}"
    )
    assert str(stack.edge_port) in settings
    env_file.write_text(settings)
    try:
        stack.compose("up", "-d", "--scale", f"detector={detectors}")
        stack.wait_healthy()
        yield stack
    finally:
        stack.down()
