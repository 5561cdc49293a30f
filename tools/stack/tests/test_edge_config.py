"""How the local stack runs its edge: never as root, in a folder its user can reach and owns."""

from __future__ import annotations

import os
import pwd
import resource
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tally_stack._config import EDGE_USER, StackConfig, edge_dir, edge_user, release_edge_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the edge changes user only as root")
REPO = Path(__file__).resolve().parents[3]


def _config() -> StackConfig:
    return StackConfig(8080, 1, 2, 3, 4, 5, 6, "", "", "")


@pytest.fixture
def reachable() -> Iterator[Path]:
    """A folder anyone may enter (pytest's own temporary folders are root's alone)."""
    folder = Path(tempfile.mkdtemp(prefix="tally-edge-config-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder)


def test_as_root_the_edge_is_started_as_nobody_master_and_all() -> None:
    command = _config().processes(Path("/run-dir"))["edge"][0]
    nobody = pwd.getpwnam(EDGE_USER)
    assert command.startswith(f"exec setpriv --reuid={nobody.pw_uid} --regid={nobody.pw_gid}")
    assert "--clear-groups" in command
    assert edge_user()[-1] == "--"


def test_a_folder_nobody_can_reach_moves_the_edge_to_the_temporary_folder(
    reachable: Path,
) -> None:
    closed = reachable / "home"
    (closed / "checkout").mkdir(parents=True)
    closed.chmod(0o700)
    assert edge_dir(reachable) == reachable / "nginx"
    moved = edge_dir(closed / "checkout")
    assert moved.parent == Path(tempfile.gettempdir())
    assert moved.name.startswith("tally-edge-")
    assert moved == edge_dir(closed / "checkout")  # the same on every start


def test_the_edges_folder_and_files_belong_to_its_user(reachable: Path) -> None:
    folder = _config().prepare_edge(reachable)
    assert folder == reachable / "nginx"
    nobody = pwd.getpwnam(EDGE_USER).pw_uid
    owned = [folder, folder / "tmp", folder / "edge-error.log", folder / "edge-access.log"]
    assert all(path.stat().st_uid == nobody for path in owned)
    conf = (folder / "nginx.conf").read_text()
    assert "user " not in conf  # the master itself is not root: no `user` directive
    assert f"include {folder}/tally-server.conf;" in conf
    for name in ("tally-http.conf", "tally-server.conf"):
        assert (folder / name).read_bytes() == (REPO / "deploy" / "nginx" / name).read_bytes()


def test_an_edge_folder_made_elsewhere_goes_with_the_stack_and_its_logs_come_home(
    reachable: Path,
) -> None:
    closed = reachable / "home"
    run_dir = closed / "checkout" / ".run"
    run_dir.mkdir(parents=True)
    closed.chmod(0o700)
    folder = _config().prepare_edge(run_dir)
    assert not folder.is_relative_to(run_dir)
    (folder / "edge-error.log").write_text("an error\n")
    release_edge_dir(run_dir)
    assert not folder.exists()
    assert (run_dir / "edge-error.log").read_text() == "an error\n"
    assert (run_dir / "edge-access.log").exists()


def test_the_edge_may_open_the_files_for_two_connections_per_event_stream(
    reachable: Path,
) -> None:
    conf = (_config().prepare_edge(reachable) / "nginx.conf").read_text()
    files = int(conf.split("worker_rlimit_nofile ", 1)[1].split(";", 1)[0])
    connections = int(conf.split("worker_connections ", 1)[1].split(";", 1)[0])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    assert files == (65536 if hard == resource.RLIM_INFINITY else min(65536, hard))
    assert connections == files // 2
