"""Per-process CPU seconds and process trees from Linux /proc, shared by the node benchmarks.

Each function returns an empty or NaN result where /proc is missing or a process has gone, so a benchmark that
samples processes while they start and stop never fails on the race.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """Every descendant process of ``pid`` (Ray's raylet, GCS and workers run under the node process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def cpu_s(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of one process (or one of its threads) so far; NaN when it is gone."""
    try:
        path = f"/proc/{pid}/task/{tid}/stat" if tid is not None else f"/proc/{pid}/stat"
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")
