"""Where everything of the local stack listens and how each process is started."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import resource
import shlex
import shutil
import stat
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tally_stack.launcher import free_port
from tally_stack.local_s3 import MOTO_ACCESS_KEY, MOTO_SECRET_KEY

REPO_ROOT = Path(__file__).resolve().parents[4]
RUN_DIR = Path(os.environ.get("TALLY_STACK_DIR", REPO_ROOT / ".run" / "stack"))
DEFAULT_EDGE_PORT = 8080
# Who the edge runs as when the stack is started as root (CI, containers): never root itself.
EDGE_USER = "nobody"


SHARED_EDGE_FILES = ("tally-http.conf", "tally-server.conf")
EDGE_LOGS = ("edge-error.log", "edge-access.log")


def _reachable_by_anyone(path: Path) -> bool:
    """Whether every folder above `path` lets other users through (a checkout in /root does
    not)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in path.resolve().parents if p.exists())


def edge_open_files() -> int:
    """The files the local edge's worker may open: 65,536 (10,000 event streams are 20,000
    connections), or this machine's hard limit if lower (nginx cannot go past it
    unprivileged)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 65536 if hard == resource.RLIM_INFINITY else min(65536, hard)


def edge_dir(run_dir: Path) -> Path:
    """Where the edge's files live: `run_dir/nginx`, unless the edge runs as another user
    (`edge_user`) who cannot reach it; then a folder of the system's temporary directory named
    after `run_dir`."""
    folder = run_dir / "nginx"
    if os.geteuid() != 0 or _reachable_by_anyone(folder):
        return folder
    digest = hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"tally-edge-{digest}"


def release_edge_dir(run_dir: Path) -> None:
    """After the stack: an edge folder made outside `run_dir` (see `edge_dir`) goes, its logs
    moved into `run_dir`."""
    folder = edge_dir(run_dir)
    if folder == run_dir / "nginx" or not folder.exists():
        return
    for log in EDGE_LOGS:
        if (folder / log).exists():
            shutil.move(folder / log, run_dir / log)
    shutil.rmtree(folder)


def edge_user() -> list[str]:
    """What nginx is started under: as root, `setpriv` to nobody first, so that its master runs
    unprivileged as well as its workers (nginx's `user` directive changes the workers only).
    Otherwise nothing: it runs as whoever started the stack."""
    if os.geteuid() != 0:
        return []
    user = pwd.getpwnam(EDGE_USER)
    return [
        "setpriv",
        f"--reuid={user.pw_uid}",
        f"--regid={user.pw_gid}",
        "--clear-groups",
        "--no-new-privs",
        "--",
    ]


def _detector_names(count: int) -> list[str]:
    return ["detector"] if count == 1 else [f"detector-{n}" for n in range(1, count + 1)]


LOCAL_WEBHOOK_HOSTS = "127.0.0.0/8,::1/128,localhost"


@dataclass(frozen=True, slots=True)
class StackConfig:
    edge_port: int
    upload_port: int
    gateway_port: int
    moto_port: int
    triton_http_port: int
    triton_grpc_port: int
    triton_metrics_port: int
    database_url: str
    amqp_url: str
    redis_url: str
    bucket: str = "tally"
    bus_prefix: str = "tally"
    detectors: int = 1  # detector processes (0: none; tests bring their own)
    # Each worker's /healthz, /readyz and /metrics (TALLY_PROBES_PORT), by process name.
    probes: dict[str, int] = field(default_factory=dict)
    # Processes the stack leaves to someone else (tests start and stop them), by name; their
    # ports are still reserved and the edge still routes to them.
    external: list[str] = field(default_factory=list)

    @classmethod
    def fresh(cls) -> StackConfig:
        detectors = int(os.environ.get("TALLY_STACK_DETECTORS", "1"))
        workers = ["orchestrator", "projector", "webhooks", "models", *_detector_names(detectors)]
        return cls(
            edge_port=int(os.environ.get("TALLY_EDGE_PORT", DEFAULT_EDGE_PORT)),
            upload_port=free_port(),
            gateway_port=free_port(),
            moto_port=free_port(),
            triton_http_port=free_port(),
            triton_grpc_port=free_port(),
            triton_metrics_port=free_port(),
            database_url=os.environ.get(
                "TALLY_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/tally"
            ),
            amqp_url=os.environ.get("TALLY_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"),
            redis_url=os.environ.get("TALLY_REDIS_URL", "redis://127.0.0.1:6379/0"),
            bus_prefix=os.environ.get("TALLY_BUS_PREFIX", "tally"),
            detectors=detectors,
            probes={name: free_port() for name in workers},
            external=[n for n in os.environ.get("TALLY_STACK_EXTERNAL", "").split(",") if n],
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> StackConfig:
        return cls(**json.loads(path.read_text()))

    @property
    def edge_url(self) -> str:
        return f"http://127.0.0.1:{self.edge_port}"

    def service_env(self) -> dict[str, str]:
        return {
            "TALLY_DATABASE_URL": self.database_url,
            "TALLY_AMQP_URL": self.amqp_url,
            "TALLY_REDIS_URL": self.redis_url,
            "TALLY_BUS_PREFIX": self.bus_prefix,
            "TALLY_S3_ENDPOINT_URL": f"http://127.0.0.1:{self.moto_port}",
            "TALLY_S3_BUCKET": self.bucket,
            "TALLY_S3_ACCESS_KEY_ID": MOTO_ACCESS_KEY,
            "TALLY_S3_SECRET_ACCESS_KEY": MOTO_SECRET_KEY,
            "TALLY_TRITON_URL": f"127.0.0.1:{self.triton_grpc_port}",
            # Webhooks may call receivers on this machine (a laptop's, a test's): nowhere else
            # internal.
            "TALLY_WEBHOOK_ALLOW_HOSTS": LOCAL_WEBHOOK_HOSTS,
            "PYTHONUNBUFFERED": "1",
        }

    def processes(self, run_dir: Path) -> dict[str, tuple[str, dict[str, str]]]:
        """name → (command, extra environment), for honcho."""
        bin_dir = Path(sys.executable).parent
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        env = self.service_env()
        edge = edge_dir(run_dir)

        def cmd(*parts: str | Path | int) -> str:
            return "exec " + " ".join(shlex.quote(str(p)) for p in parts)

        def worker(name: str) -> dict[str, str]:
            port = self.probes.get(name)
            return env if port is None else env | {"TALLY_PROBES_PORT": str(port)}

        detectors = {
            name: (cmd(bin_dir / "tally-detector"), worker(name) | {"TALLY_DETECTOR_ID": name})
            for name in _detector_names(self.detectors)
        }
        every = {
            "s3": (cmd(bin_dir / "moto_server", "-H", "127.0.0.1", "-p", self.moto_port), {}),
            "triton": (
                cmd(
                    bin_dir / "tally-triton",
                    "serve",
                    "--state-dir",
                    run_dir / "triton",
                    "--http-port",
                    self.triton_http_port,
                    "--grpc-port",
                    self.triton_grpc_port,
                    "--metrics-port",
                    self.triton_metrics_port,
                ),
                {},
            ),
            "edge": (
                cmd(
                    *edge_user(),
                    nginx,
                    "-p",
                    edge,
                    "-c",
                    edge / "nginx.conf",
                ),
                {},
            ),
            "upload": (cmd(bin_dir / "tally-upload"), env | {"TALLY_PORT": str(self.upload_port)}),
            "gateway": (
                cmd(bin_dir / "tally-gateway"),
                env | {"TALLY_PORT": str(self.gateway_port)},
            ),
            "orchestrator": (cmd(bin_dir / "tally-orchestrator"), worker("orchestrator")),
            "projector": (cmd(bin_dir / "tally-projector"), worker("projector")),
            "webhooks": (cmd(bin_dir / "tally-webhooks"), worker("webhooks")),
            # The model registry's hand on the stack's Triton (validation, reconciliation).
            "models": (cmd(bin_dir / "tally-models"), worker("models")),
        } | detectors
        return {name: spec for name, spec in every.items() if name not in self.external}

    def prepare_edge(self, run_dir: Path) -> Path:
        """The edge's folder (`edge_dir`): its nginx.conf, copies of Tally's routes
        (deploy/nginx, the same as the edge image's), and the temporary files and logs it
        writes, all owned by the user it runs as (`edge_user`)."""
        folder = edge_dir(run_dir)
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        for name in SHARED_EDGE_FILES:
            shutil.copyfile(REPO_ROOT / "deploy" / "nginx" / name, folder / name)
        (folder / "nginx.conf").write_text(self.nginx_conf(run_dir))
        for log in EDGE_LOGS:
            (folder / log).touch()
        if os.geteuid() == 0:
            user = pwd.getpwnam(EDGE_USER)
            for path in [folder, *folder.glob("tmp/**/*"), *folder.iterdir()]:
                os.chown(path, user.pw_uid, user.pw_gid)
            folder.chmod(0o755)
        return folder

    def nginx_conf(self, run_dir: Path) -> str:
        """The edge's nginx.conf: Tally's routes to this stack's ports."""
        prefix = edge_dir(run_dir)
        files = edge_open_files()
        # A proxied stream is two connections (the client's, the gateway's): half the files.
        return f"""# Generated by tally-stack: the local stack's edge, with deploy/nginx's routes.
# (Keep this file out of git: ports change on every `make up`.)
worker_processes 1;
worker_rlimit_nofile {files};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/edge-error.log warn;
events {{ worker_connections {files // 2}; }}
http {{
    include {prefix}/tally-http.conf;
    access_log {prefix}/edge-access.log tally;
    client_body_temp_path {prefix}/tmp/body;
    proxy_temp_path {prefix}/tmp/proxy;
    fastcgi_temp_path {prefix}/tmp/fastcgi;
    uwsgi_temp_path {prefix}/tmp/uwsgi;
    scgi_temp_path {prefix}/tmp/scgi;

    upstream upload {{ server 127.0.0.1:{self.upload_port}; keepalive 16; }}
    upstream gateway {{ server 127.0.0.1:{self.gateway_port}; keepalive 64; }}
    map $tally_backend $tally_upstream {{ upload upload; gateway gateway; }}

    server {{
        listen 127.0.0.1:{self.edge_port};
        include {prefix}/tally-server.conf;
    }}
}}
"""
