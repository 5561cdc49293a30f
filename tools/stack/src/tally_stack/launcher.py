"""One way to start a development process, wait until it is ready, and stop it.

Every local process that Tally's tools and tests run (Triton, moto's S3 server, the stack's
supervisor, a service started by a benchmark or a test) goes through `start`: the process gets
its environment and writes its output to a log file; `Process.wait_until` waits for ready
conditions (a line in that log, a listening port, an HTTP 200) until a deadline, failing at once
with the log's tail when the process exits first; `Process.stop` sends SIGTERM and, after a grace
period, SIGKILL. `stop_pid` does the same for a process that an earlier command started and
recorded in a pid file.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

POLL_S = 0.1


class LaunchError(RuntimeError):
    """A process exited before it was ready, or was not ready in time."""


@dataclass(frozen=True, slots=True)
class Ready:
    """A condition a started process is waited for: `check` is asked until it holds; `what`
    says in an error what was still awaited."""

    what: str
    check: Callable[[Process], bool]


def log_line(text: str) -> Ready:
    """The process has written a line containing `text` (since it started)."""
    return Ready(f"{text!r} in its log", lambda process: any(text in n for n in process.lines()))


def port_open(port: int, host: str = "127.0.0.1") -> Ready:
    """Something accepts TCP connections on `host:port`."""

    def check(_process: Process) -> bool:
        try:
            with socket.create_connection((host, port), timeout=1):
                return True
        except OSError:
            return False

    return Ready(f"a listener on {host}:{port}", check)


def http_ok(url: str) -> Ready:
    """A GET of `url` answers 200."""

    def check(_process: Process) -> bool:
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
            urllib.request.urlopen(url, timeout=2) as response,
        ):
            return bool(response.status == 200)
        return False

    return Ready(f"200 from {url}", check)


# Ports handed out by this process: a stack takes a dozen before any of them is bound.
_handed: set[int] = set()
LOWEST_PORT = 20_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def free_port() -> int:
    """A TCP port nothing listens on now, on the loopback interface, below the ephemeral range:
    a port the kernel hands out (bind to 0) is also what it picks as the source port of the next
    outgoing connection, and one such connection made between this call and the service's bind
    takes it (a CI run's stack once failed to start that way). Never the same port twice in one
    process."""
    low, _high = _ephemeral_range()
    candidates = list(range(LOWEST_PORT, low)) if low > LOWEST_PORT + 1_000 else []
    random.shuffle(candidates)
    for port in candidates[:500]:
        if port in _handed:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed.add(port)
        return port
    # No room below the ephemeral range on this host: the kernel's pick, then.
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _handed:
            _handed.add(port)
            return port


class Process:
    """A started child process and its log. Made by `start`."""

    def __init__(
        self,
        name: str,
        popen: subprocess.Popen[bytes],
        log_path: Path | None,
        *,
        log_offset: int = 0,
        own_group: bool = False,
    ) -> None:
        self.name = name
        self.popen = popen
        self.log_path = log_path
        self._own_group = own_group
        # Where this process's output begins in its log (restarts may append to one log), the
        # end of a line it has not finished yet, and the complete lines read so far.
        self._offset = log_offset
        self._partial = b""
        self._lines: list[str] = []

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        """The exit status once it has exited (negative: the signal that ended it), else None."""
        return self.popen.poll()

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def running(self) -> bool:
        return self.popen.poll() is None

    def lines(self) -> list[str]:
        """The complete lines this process has written to its log so far."""
        if self.log_path is None:
            raise LaunchError(f"{self.name} was started without a log: there are no lines to read")
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = self._partial + log.read()
        self._offset += len(data) - len(self._partial)
        *complete, self._partial = data.split(b"\n")
        self._lines.extend(line.decode(errors="replace") for line in complete)
        return list(self._lines)

    def tail(self, count: int = 30) -> str:
        """The last lines of its log, for error messages ("" without a log)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        lines = self.lines()[-count:]
        if self._partial:
            lines.append(self._partial.decode(errors="replace"))
        return "\n".join(lines)

    def is_ready(self, *conditions: Ready) -> bool:
        """Whether every condition holds now (no waiting)."""
        return all(condition.check(self) for condition in conditions)

    def wait_until(self, *conditions: Ready, timeout_s: float) -> None:
        """Return once every condition has held; raise LaunchError (the log's tail in the
        message) as soon as the process exits, or when `timeout_s` passes first."""
        pending = list(conditions)
        deadline = time.monotonic() + timeout_s
        while True:
            pending = [condition for condition in pending if not condition.check(self)]
            if not pending:
                return
            code = self.poll()
            if code is not None:
                raise LaunchError(
                    f"{self.name} exited with {code} before it was ready{self._log_end()}"
                )
            if time.monotonic() >= deadline:
                waiting = ", ".join(condition.what for condition in pending)
                raise LaunchError(
                    f"{self.name} is not ready after {timeout_s:.0f} s (waiting for {waiting})"
                    f"{self._log_end()}"
                )
            time.sleep(POLL_S)

    def stop(self, grace_s: float = 15.0) -> int:
        """SIGTERM, then SIGKILL if it is still there after `grace_s`; its exit status."""
        if self.running():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
            try:
                return self.popen.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.popen.wait()

    def kill(self) -> None:
        """SIGKILL now (its whole process group when it was started in a session of its own)."""
        if self.running():
            _kill(self.pid, group=self._own_group)
        self.popen.wait()

    def _log_end(self) -> str:
        tail = self.tail()
        return f"; the end of its log ({self.log_path}):\n{tail}" if tail.strip() else ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start(
    name: str,
    command: Sequence[str | Path],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    append_log: bool = False,
    cwd: Path | None = None,
    own_session: bool = False,
) -> Process:
    """Start `command` (`env`: its whole environment; None: this process's). Its stdout and
    stderr go to `log_path` (emptied first unless `append_log`), or nowhere without one. With
    `own_session` it outlives this process's terminal and a kill takes its children with it
    (for servers left running in the background)."""
    output = None
    offset = 0
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        output = log_path.open("ab" if append_log else "wb")
        offset = output.tell()  # before the child shares (and moves) the file position
    try:
        popen = subprocess.Popen(
            [str(part) for part in command],
            env=None if env is None else dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=output if output is not None else subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=own_session,
        )
    finally:
        if output is not None:
            output.close()  # the child has its own copy of the descriptor
    return Process(name, popen, log_path, log_offset=offset, own_group=own_session)


def pid_running(pid: int) -> bool:
    """Whether process `pid` is alive (a zombie, exited but not yet reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def stop_pid(pid: int, grace_s: float = 15.0) -> bool:
    """`Process.stop` for a process known only by its pid (from a pid file): SIGTERM, then
    SIGKILL after `grace_s`, to its whole group when it leads one of its own. False when it was
    not running."""
    if not pid_running(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _gone(pid, grace_s):
        _kill(pid, group=_leads_own_group(pid))
        _gone(pid, 10.0)
    return True


def _gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_running(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_S)
    return True


def _leads_own_group(pid: int) -> bool:
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return False
    return group == pid and group != os.getpgrp()


def _kill(pid: int, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
