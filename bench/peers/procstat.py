"""CPU time of process groups from /proc: utime+stime of a process tree, reaped children included."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    pid: int
    comm: str
    ppid: int
    ticks: int  # utime + stime
    child_ticks: int  # cutime + cstime: children that exited and were waited for


def parse_stat(text: str) -> Stat:
    """One /proc/PID/stat line. `comm` may hold spaces and parentheses, so split at the last ')'."""
    head, _, rest = text.rpartition(")")
    pid, _, comm = head.partition(" (")
    f = rest.split()
    # After comm: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
    # utime stime cutime cstime (fields 3-17 of proc(5)).
    return Stat(int(pid), comm, int(f[1]), int(f[11]) + int(f[12]), int(f[13]) + int(f[14]))


def read_all(proc: Path = PROC) -> dict[int, Stat]:
    out: dict[int, Stat] = {}
    for d in proc.iterdir():
        if d.name.isdigit():
            try:
                out[int(d.name)] = parse_stat((d / "stat").read_text())
            except (OSError, ValueError, IndexError):
                pass  # gone between listdir and read
    return out


def tree(stats: dict[int, Stat], roots: Iterable[int], stop: frozenset[int] = frozenset()) -> set[int]:
    """`roots` and all their live descendants, not descending into `stop` (other groups' roots)."""
    kids: dict[int, list[int]] = {}
    for s in stats.values():
        kids.setdefault(s.ppid, []).append(s.pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(k for k in kids.get(pid, []) if k not in stop)
    return seen


def group_ticks(stats: dict[int, Stat], roots: Iterable[int], stop: frozenset[int] = frozenset()) -> int:
    """CPU ticks of the trees under `roots`: live processes plus the children they reaped.

    A reaped child's time moves into its parent's cutime, so a pool that replaces children,
    or a database that forks a backend per connection, is still counted in full.
    """
    return sum(stats[p].ticks + stats[p].child_ticks for p in tree(stats, roots, stop))


def roots_by_comm(stats: dict[int, Stat], comm: str) -> list[int]:
    """Top processes named `comm` (the postmaster, not its backends; every redis-server)."""
    named = {p for p, s in stats.items() if s.comm == comm}
    return sorted(p for p in named if stats[p].ppid not in named)


def ms(ticks: int) -> float:
    return ticks * 1000 / TICKS


def snapshot(groups: dict[str, list[int]], proc: Path = PROC) -> dict[str, int]:
    """Ticks per group; a group's tree stops at another group's root (the bench starts the server)."""
    stats = read_all(proc)
    every = frozenset(p for roots in groups.values() for p in roots)
    return {name: group_ticks(stats, roots, every - set(roots)) for name, roots in groups.items()}


def per_task_ms(before: dict[str, int], after: dict[str, int], tasks: int) -> dict[str, float]:
    """CPU milliseconds per task of each group between two snapshots."""
    return {g: round(ms(after[g] - before[g]) / tasks, 3) for g in before}
