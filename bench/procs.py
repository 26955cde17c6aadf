"""CPU seconds per process, read from /proc/<pid>/stat (utime + stime, and cutime + cstime for the
children a process has already reaped).

A server's figure is the sum over its process tree: PostgreSQL's postmaster and every backend and
background process under it. A backend that exits during a run (pgbench's connections end with
pgbench) is reaped by the postmaster and its CPU moves into the postmaster's cutime/cstime, so the
tree's sum stays whole across such exits."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


Cpu = tuple[float, float]  # (user, system) seconds


def _stat(pid: int) -> tuple[int, Cpu] | None:
    """(parent pid, (user, system) CPU seconds of the process and its reaped children), or None."""
    try:
        data = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # Fields after the command name (which may contain spaces) start at field 3 (state).
    rest = data[data.rindex(")") + 2:].split()
    ppid = int(rest[1])
    utime, stime, cutime, cstime = (int(v) for v in rest[11:15])
    return ppid, ((utime + cutime) / CLOCK_TICKS, (stime + cstime) / CLOCK_TICKS)


def _all() -> dict[int, tuple[int, Cpu]]:
    found: dict[int, tuple[int, Cpu]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                found[int(entry.name)] = stat
    return found


def tree_cpu(root: int, table: Mapping[int, tuple[int, Cpu]] | None = None) -> Cpu:
    """(user, system) CPU seconds of `root` and all its descendants (live ones, plus what each reaped)."""
    table = _all() if table is None else table
    if root not in table:
        return 0.0, 0.0
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    user = system = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        user += table[pid][1][0]
        system += table[pid][1][1]
        todo.extend(children.get(pid, ()))
    return user, system


def own_cpu() -> Cpu:
    """This process's own (user, system) CPU seconds (all threads; children not included)."""
    t = os.times()
    return t.user, t.system


class CpuMeter:
    """CPU seconds of named process trees, all read from one snapshot of /proc."""

    def __init__(self, trees: Mapping[str, int | None]) -> None:
        self.trees = {name: pid for name, pid in trees.items() if pid is not None}

    def with_tree(self, name: str, pid: int | None) -> CpuMeter:
        return CpuMeter({**self.trees, name: pid})

    def read(self) -> dict[str, Cpu]:
        table = _all()
        return {name: tree_cpu(pid, table) for name, pid in self.trees.items()}
