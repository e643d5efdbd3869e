"""CPU time and memory of a server's whole process tree, read from /proc.

Postfix and Dovecot are many processes (a master and its children, some short-lived);
Daisy is one. CPU counts utime+stime of every live process in the tree plus the
cutime+cstime they collected from children they reaped, so work done by processes
that exited between two readings is not lost. Memory is given twice: the plain sum of
RSS (what `ps` shows, counts shared pages once per process) and the sum of PSS (shared
pages split between their users), which is the fairer figure for forking servers.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name is in parentheses and may hold spaces; fields follow the last ")".
    return text[text.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """root and all its descendants that are alive now."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                children[int(_stat_fields(int(entry))[1])].append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, ()))
    return out


def cpu_seconds(roots: list[int]) -> float:
    """CPU seconds used so far by the trees under roots, reaped children included."""
    ticks = 0
    for root in roots:
        for pid in tree(root):
            try:
                f = _stat_fields(pid)
            except OSError:
                continue
            ticks += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return ticks / TICK


@dataclass(frozen=True)
class Memory:
    processes: int
    rss_mb: float
    pss_mb: float


def memory(roots: list[int]) -> Memory:
    rss = pss = 0
    count = 0
    for root in roots:
        for pid in tree(root):
            try:
                with open(f"/proc/{pid}/smaps_rollup") as f:
                    for line in f:
                        key, _, rest = line.partition(":")
                        if key in ("Rss", "Pss"):
                            kib = int(rest.split()[0])
                            if key == "Rss":
                                rss += kib
                            else:
                                pss += kib
            except OSError:
                continue
            count += 1
    return Memory(count, round(rss / 1024, 1), round(pss / 1024, 1))
