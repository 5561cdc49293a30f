"""Run a local CPU Triton: the `tritonserver` binary from the nvidia-pytriton wheel.

`tally-triton serve` runs it in the foreground (for a process supervisor); `up` starts it in the
background on free ports, waits until the model is ready and records the ports; `down` stops it.
Triton and its Python-backend model run in their own environment, deploy/triton/env (made by
`make triton-env`; another one can be named with TALLY_TRITON_ENV), as Triton is a separate server
in production. A development tool (tests, the local stack, benchmarks): production runs Triton's
own image.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Self

from tally_inference import MODEL_NAME
from tally_stack import launcher
from tally_stack.launcher import free_port

REPO_ROOT = Path(__file__).resolve().parents[4]
DEFAULT_MODEL_REPOSITORY = REPO_ROOT / "deploy" / "triton" / "cpu"
DEFAULT_STATE_DIR = REPO_ROOT / ".run" / "triton"
DEFAULT_TRITON_ENV = REPO_ROOT / "deploy" / "triton" / "env" / ".venv"


class TritonStartError(launcher.LaunchError):
    """No Triton environment, or one that cannot run the model's backend."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


@dataclass(frozen=True, slots=True)
class TritonEnv:
    """A virtual environment holding nvidia-pytriton and the Python-backend model's packages."""

    root: Path

    @classmethod
    def default(cls) -> TritonEnv:
        return cls(Path(os.environ.get("TALLY_TRITON_ENV", DEFAULT_TRITON_ENV)))

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python3"

    @property
    def site_packages(self) -> Path:
        found = sorted(self.root.glob("lib/python3.*/site-packages/pytriton"))
        if not self.python.exists() or not found:
            raise TritonStartError(
                f"no Triton environment at {self.root}: run `make triton-env` "
                "(or set TALLY_TRITON_ENV to a venv with nvidia-pytriton and onnxruntime)"
            )
        return found[-1].parent

    @property
    def python_version(self) -> str:
        return self.site_packages.parent.name.removeprefix("python")

    @property
    def server_dir(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    def libpython_dir(self) -> str:
        """Where this env's libpython lives (the stub links against it)."""
        probe = "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))"
        return subprocess.run(
            [str(self.python), "-c", probe], check=True, capture_output=True, text=True
        ).stdout.strip()


def prepare_backends(env: TritonEnv, runtime_dir: Path) -> Path:
    """A backend directory whose Python backend has the stub built for the env's Python."""
    stub = (
        env.server_dir / "python_backend_stubs" / env.python_version / "triton_python_backend_stub"
    )
    if not stub.exists():
        raise TritonStartError(
            f"nvidia-pytriton has no Python-backend stub for {env.python_version}"
        )
    python_backend = runtime_dir / "backends" / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for item in (env.server_dir / "backends" / "python").iterdir():
        _copy(item, python_backend / item.name)
    _copy(stub, python_backend / "triton_python_backend_stub")
    return runtime_dir / "backends"


def _copy(source: Path, target: Path) -> None:
    """Copy unless `target` is that file already: a Triton killed with SIGKILL leaves its
    Python-backend stubs running from it (seen still running an hour later), and a running
    executable cannot be written over."""
    if target.exists() and filecmp.cmp(source, target, shallow=False):
        return
    shutil.copy2(source, target)


def stub_pids(backends: Path) -> list[int]:
    """The processes running a Python-backend stub copied into `backends` (from /proc)."""
    prefix = str(backends.resolve()) + os.sep
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if argv0.startswith(prefix):
            found.append(int(entry.name))
    return found


def server_command(
    env: TritonEnv, model_repository: Path, backends: Path, endpoints: Endpoints
) -> list[str]:
    return [
        str(env.server_dir / "bin" / "tritonserver"),
        f"--model-repository={model_repository}",
        # Explicit model control: the built-in model at start, the registry's others loaded and
        # unloaded through the repository API by `tally-models`.
        "--model-control-mode=explicit",
        f"--load-model={MODEL_NAME}",
        f"--backend-directory={backends}",
        "--http-address=127.0.0.1",
        f"--http-port={endpoints.http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={endpoints.grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={endpoints.metrics_port}",
        "--allow-gpu-metrics=false",
        "--exit-timeout-secs=10",
        "--log-verbose=0",
    ]


def server_env(env: TritonEnv) -> dict[str, str]:
    variables = dict(os.environ)
    libs = [str(env.site_packages / "nvidia_pytriton.libs"), env.libpython_dir()]
    if variables.get("LD_LIBRARY_PATH"):
        libs.append(variables["LD_LIBRARY_PATH"])
    variables["LD_LIBRARY_PATH"] = ":".join(libs)
    # The stub runs the model with the `python3` it finds first: make it the Triton env's.
    variables["PATH"] = f"{env.root / 'bin'}:{variables.get('PATH', '')}"
    variables.pop("VIRTUAL_ENV", None)
    return variables


class LocalTriton:
    """A tritonserver child process, started on free loopback ports and stopped cleanly."""

    def __init__(
        self,
        model_repository: Path = DEFAULT_MODEL_REPOSITORY,
        runtime_dir: Path | None = None,
        endpoints: Endpoints | None = None,
        env: TritonEnv | None = None,
    ) -> None:
        self.env = env or TritonEnv.default()
        self.model_repository = model_repository.resolve()
        self.runtime_dir = runtime_dir or DEFAULT_STATE_DIR
        self.endpoints = endpoints or Endpoints(free_port(), free_port(), free_port())
        self.log_path = self.runtime_dir / "tritonserver.log"
        self.process: launcher.Process | None = None

    def start(self, timeout_s: float = 180.0, detach: bool = False) -> Endpoints:
        """Start it and wait until the model is ready (LaunchError, with the log's tail, if it
        is not); `detach`: in a session of its own, to outlive this process."""
        backends = prepare_backends(self.env, self.runtime_dir)
        self.process = launcher.start(
            "tritonserver",
            server_command(self.env, self.model_repository, backends, self.endpoints),
            env=server_env(self.env),
            log_path=self.log_path,
            own_session=detach,
        )
        try:
            self.process.wait_until(
                launcher.http_ok(f"{self.endpoints.http_url}/v2/models/{MODEL_NAME}/ready"),
                timeout_s=timeout_s,
            )
        except BaseException:
            self.stop()
            raise
        return self.endpoints

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM (Triton drains in-flight requests), then SIGKILL after `timeout_s`."""
        if self.process is not None:
            self.process.stop(timeout_s)
            self.process = None

    def crash(self, timeout_s: float = 10.0) -> None:
        """SIGKILL Triton and the Python-backend stubs it started, as a pod's death takes all of
        its processes: a stub outlives a Triton killed alone (it has no process group of its own
        to be killed with unless Triton was detached)."""
        if self.process is None:
            return
        self.process.kill()
        self.process = None
        backends = self.runtime_dir / "backends"
        for pid in stub_pids(backends):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # SIGKILL is delivered, not done: a stub tearing down its shared memory is still there.
        deadline = time.monotonic() + timeout_s
        while stub_pids(backends) and time.monotonic() < deadline:
            time.sleep(0.05)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def triton_endpoint(grpc_url: str | None = None) -> Iterator[str]:
    """`grpc_url` when given; otherwise a local Triton's, started for the duration of the block."""
    if grpc_url:
        yield grpc_url
        return
    with LocalTriton() as triton:
        yield triton.endpoints.grpc_url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tally-triton", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["serve", "up", "down", "status"])
    parser.add_argument("--model-repository", type=Path, default=DEFAULT_MODEL_REPOSITORY)
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)
    parser.add_argument("--http-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--grpc-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--metrics-port", type=int, default=0, help="0: a free port")
    parser.add_argument("--timeout", type=float, default=180.0)
    args = parser.parse_args(argv)
    state_file = args.state_dir / "state.json"

    if args.command in ("down", "status"):
        if not state_file.exists():
            print("local Triton is not running")
            return 0 if args.command == "down" else 1
        state = json.loads(state_file.read_text())
        if args.command == "status":
            running = launcher.pid_running(state["pid"])
            print(json.dumps({**state, "running": running}))
            return 0 if running else 1
        launcher.stop_pid(state["pid"], args.timeout)
        state_file.unlink()
        print(f"stopped local Triton (pid {state['pid']})")
        return 0

    endpoints = Endpoints(
        args.http_port or free_port(),
        args.grpc_port or free_port(),
        args.metrics_port or free_port(),
    )
    args.state_dir.mkdir(parents=True, exist_ok=True)
    triton = LocalTriton(args.model_repository, args.state_dir, endpoints)
    if args.command == "up":
        if state_file.exists() and launcher.pid_running(json.loads(state_file.read_text())["pid"]):
            print(f"local Triton already running: {state_file.read_text().strip()}")
            return 0
        triton.start(args.timeout, detach=True)
        assert triton.process is not None
        state = {
            "pid": triton.process.pid,
            **asdict(endpoints),
            "grpc_url": endpoints.grpc_url,
            "http_url": endpoints.http_url,
            "log": str(triton.log_path),
        }
        state_file.write_text(json.dumps(state) + "\n")
        print(
            f"local Triton ready: gRPC {endpoints.grpc_url}, HTTP {endpoints.http_url} "
            f"(log {triton.log_path})"
        )
        return 0

    # serve: foreground until SIGTERM/SIGINT, then a clean stop.
    stop = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    triton.start(args.timeout)
    print(f"local Triton ready: gRPC {endpoints.grpc_url}, HTTP {endpoints.http_url}", flush=True)
    try:
        while not stop and triton.process is not None and triton.process.running():
            time.sleep(0.2)
    finally:
        code = triton.process.poll() if triton.process is not None else 0
        triton.stop()
    return 0 if stop else (code or 1)


if __name__ == "__main__":
    raise SystemExit(main())
