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


def compile_package(repo: Path) -> bool:
    """Write the bytecode of checkout ``repo``'s ``z123_ros`` (``__pycache__``, as an installed package has it):
    the node's start-up goal is for a warm cache, and a source checkout run with PYTHONDONTWRITEBYTECODE=1 (this
    development machine's shell sets it) never keeps its bytecode, so every process of every start compiled the
    sources again (about 0.3 CPU-s per node start: 0.14 in the node, 0.06 in each actor). Python reads bytecode
    that is there whatever that variable says, and recompiles a file whose source changed. True when every file
    compiled."""
    import compileall

    return bool(compileall.compile_dir(str(repo / "z123_ros"), quiet=1))
