"""Helpers shared by the bench scripts: RSS from /proc, percentiles, CPU pinning."""

from __future__ import annotations

import os
from pathlib import Path


def rss_mib(pid: int) -> float:
    """RSS of ``pid`` and all its descendants, in MiB (from /proc)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            stack += [int(c) for c in task.read_text().split()]
    return total / 1024


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# The CPUs this script may use, read once: pinning the load narrows this process's
# affinity, and servers started later must still get CPU 0.
CPUS = sorted(os.sched_getaffinity(0))


def pin_server_and_load(server_pid: int) -> str:
    """Pin the server to CPU 0 and this process (the load) to CPU 1 where there are two.

    Returns:
        A phrase saying where things ran, for the table's caption.
    """
    if len(CPUS) >= 2:
        os.sched_setaffinity(server_pid, {CPUS[0]})
        os.sched_setaffinity(0, {CPUS[1]})
        return "server on CPU 0, load on CPU 1"
    return "server and load sharing one CPU"
