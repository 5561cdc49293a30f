"""The launcher every development process is started with, against real child processes."""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from tally_stack import launcher


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_process_is_ready_once_its_log_has_the_line(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    code = (
        "import time; print('starting', flush=True); time.sleep(0.5);"
        " print('ready now', flush=True); time.sleep(60)"
    )
    with launcher.start("server", python(code), log_path=log) as process:
        assert not process.is_ready(launcher.log_line("ready now"))
        process.wait_until(launcher.log_line("ready now"), timeout_s=20)
        assert process.lines() == ["starting", "ready now"]
        assert "ready now" in log.read_text()
    assert not process.running()


def test_its_environment_is_the_one_given(tmp_path: Path) -> None:
    code = "import os; print('value=' + os.environ['TALLY_LAUNCHER_TEST'], flush=True)"
    process = launcher.start(
        "env", python(code), env={"TALLY_LAUNCHER_TEST": "42"}, log_path=tmp_path / "env.log"
    )
    assert process.popen.wait(20) == 0
    assert process.lines() == ["value=42"]


def test_a_process_that_exits_first_fails_at_once_with_its_log(tmp_path: Path) -> None:
    code = "import sys; print('no config file', flush=True); sys.exit(3)"
    process = launcher.start("broken", python(code), log_path=tmp_path / "broken.log")
    started = time.monotonic()
    with pytest.raises(launcher.LaunchError) as raised:
        process.wait_until(launcher.log_line("ready"), timeout_s=60)
    assert time.monotonic() - started < 20  # not the deadline: the exit
    message = str(raised.value)
    assert "broken exited with 3 before it was ready" in message
    assert "no config file" in message


def test_a_process_not_ready_by_the_deadline_fails_naming_what_was_awaited(
    tmp_path: Path,
) -> None:
    port = launcher.free_port()
    with launcher.start("slow", python("import time; time.sleep(60)")) as process:
        started = time.monotonic()
        with pytest.raises(launcher.LaunchError) as raised:
            process.wait_until(launcher.port_open(port), timeout_s=0.5)
        assert time.monotonic() - started < 10
        assert f"slow is not ready after 0 s (waiting for a listener on 127.0.0.1:{port})" in str(
            raised.value
        )
        assert process.running()  # waiting gave up; the process is the caller's to stop


def test_a_port_and_an_http_answer_are_ready_conditions(tmp_path: Path) -> None:
    port = launcher.free_port()
    command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    with launcher.start("http", command, cwd=tmp_path, log_path=tmp_path / "http.log") as process:
        process.wait_until(
            launcher.port_open(port),
            launcher.http_ok(f"http://127.0.0.1:{port}/"),
            timeout_s=30,
        )
        assert not launcher.http_ok(f"http://127.0.0.1:{port}/missing").check(process)  # 404
    assert not launcher.port_open(port).check(process)  # stopped: nothing listens


def test_stop_asks_first_and_kills_what_does_not_listen(tmp_path: Path) -> None:
    polite = launcher.start("polite", python("import time; time.sleep(60)"))
    assert polite.stop(grace_s=10) == -signal.SIGTERM

    code = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('deaf', flush=True); time.sleep(60)"
    )
    deaf = launcher.start("deaf", python(code), log_path=tmp_path / "deaf.log")
    deaf.wait_until(launcher.log_line("deaf"), timeout_s=20)
    started = time.monotonic()
    assert deaf.stop(grace_s=0.5) == -signal.SIGKILL
    assert time.monotonic() - started < 10
    assert deaf.stop() == -signal.SIGKILL  # stopping again is harmless


def test_a_process_in_its_own_session_is_killed_with_its_children(tmp_path: Path) -> None:
    code = (
        "import subprocess, sys, time;"
        " child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        " print('child', child.pid, flush=True); time.sleep(60)"
    )
    process = launcher.start("parent", python(code), log_path=tmp_path / "p.log", own_session=True)
    process.wait_until(launcher.log_line("child "), timeout_s=20)
    child = int(process.lines()[0].split()[1])
    assert launcher.pid_running(child)
    process.kill()
    assert process.poll() == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while launcher.pid_running(child):  # init reaps the orphan
        assert time.monotonic() < deadline, "the child outlived its killed parent"
        time.sleep(0.05)


def test_a_process_known_only_by_its_pid_is_stopped_the_same_way(tmp_path: Path) -> None:
    background = launcher.start(
        "background", python("import time; time.sleep(60)"), own_session=True
    )
    pid = background.pid
    assert launcher.pid_running(pid)
    assert launcher.stop_pid(pid, grace_s=10)
    assert not launcher.pid_running(pid)
    assert not launcher.stop_pid(pid)  # nothing left to stop
    assert background.poll() == -signal.SIGTERM


def test_a_restart_appending_to_the_same_log_sees_only_its_own_lines(tmp_path: Path) -> None:
    log = tmp_path / "service.log"
    first = launcher.start("service", python("print('first run', flush=True)"), log_path=log)
    first.popen.wait(20)
    second = launcher.start(
        "service", python("print('second run', flush=True)"), log_path=log, append_log=True
    )
    second.popen.wait(20)
    assert log.read_text().splitlines() == ["first run", "second run"]
    assert second.lines() == ["second run"]
    third = launcher.start("service", python("print('third run', flush=True)"), log_path=log)
    third.popen.wait(20)
    assert log.read_text().splitlines() == ["third run"]  # a fresh log unless appending


def test_a_half_written_line_is_not_a_line_yet(tmp_path: Path) -> None:
    code = (
        "import sys, time; sys.stdout.write('rea'); sys.stdout.flush(); time.sleep(0.5);"
        " print('dy', flush=True); time.sleep(60)"
    )
    with launcher.start("typing", python(code), log_path=tmp_path / "t.log") as process:
        deadline = time.monotonic() + 20
        while (tmp_path / "t.log").read_text() == "":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert process.lines() == []
        assert process.tail() == "rea"
        process.wait_until(launcher.log_line("ready"), timeout_s=20)
        assert process.lines() == ["ready"]


def test_log_lines_of_a_process_without_a_log_are_a_clear_error() -> None:
    with (
        launcher.start("quiet", python("import time; time.sleep(60)")) as process,
        pytest.raises(launcher.LaunchError, match="without a log"),
    ):
        process.wait_until(launcher.log_line("ready"), timeout_s=5)


def test_free_ports_are_distinct_and_below_the_ports_outgoing_connections_take() -> None:
    low, _high = launcher._ephemeral_range()
    ports = [launcher.free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(launcher.LOWEST_PORT <= port < low for port in ports)
    for port in ports[:20]:  # each could be bound by the service it is meant for
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))
