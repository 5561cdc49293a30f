"""Where the CPU went: the stack's processes by role and the whole machine, from /proc.

Counters only: a reading is taken before and after a phase and the difference tells how many
core-seconds each part of the stack spent in it. The parsers are pure; `read_*` touch /proc.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True, slots=True)
class ProcessStat:
    ppid: int
    cpu_s: float  # user + system


def parse_stat(line: str) -> ProcessStat:
    """A /proc/<pid>/stat line (its command name may hold spaces and parentheses)."""
    fields = line[line.rindex(")") + 2 :].split()
    # After the name: state, ppid, ..., utime and stime are the 12th and 13th.
    return ProcessStat(int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS_PER_S)


def role(argv: list[str]) -> str:
    """What a process of the local stack is, from its command line."""
    names = [Path(arg).name for arg in argv]
    if not names:
        return "?"
    if any(
        n.startswith(("tritonserver", "triton_python_backend")) or n == "tally-triton"
        for n in names
    ):
        return "triton"
    if names[0].startswith("nginx"):
        return "edge"
    if "moto_server" in names:
        return "s3"
    if "tally_stack.cli" in argv:
        return "supervisor"
    for name in names[:2]:
        if name.startswith("tally-"):
            return name.removeprefix("tally-")
    return names[0]


@dataclass(frozen=True, slots=True)
class MachineStat:
    busy_s: float  # all cores together
    total_s: float


def parse_machine(proc_stat: str) -> MachineStat:
    """The first line of /proc/stat: `cpu user nice system idle iowait irq softirq steal ...`
    (guest time is already inside user)."""
    values = [int(v) for v in proc_stat.split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = values
    busy = user + nice + system + irq + softirq + steal
    return MachineStat(busy / TICKS_PER_S, (busy + idle + iowait) / TICKS_PER_S)


def read_machine() -> MachineStat:
    return parse_machine((PROC / "stat").read_text())


def _argv(pid: int) -> list[str]:
    raw = (PROC / str(pid) / "cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def read_tree(root: int) -> dict[str, float]:
    """CPU seconds so far of `root` and every process under it, summed by role (a process that
    already exited is not counted: the stack's processes live as long as the stack)."""
    stats: dict[int, ProcessStat] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                stats[int(entry.name)] = parse_stat((entry / "stat").read_text())
    children: dict[int, list[int]] = defaultdict(list)
    for pid, stat in stats.items():
        children[stat.ppid].append(pid)
    by_role: dict[str, float] = defaultdict(float)
    pending = [root] if root in stats else []
    while pending:
        pid = pending.pop()
        pending += children[pid]
        with contextlib.suppress(OSError):
            by_role[role(_argv(pid))] += stats[pid].cpu_s
    return dict(by_role)


def spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Core-seconds by role between two readings, largest first."""
    deltas = {name: after[name] - before.get(name, 0.0) for name in after}
    return dict(sorted(deltas.items(), key=lambda item: -item[1]))
