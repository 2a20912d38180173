"""The node's counters, latency windows and its /diagnostics status.

:class:`NodeStats` counts events and drops (by reason, with a throttled warning per reason) and keeps rolling
latency windows; :func:`pipeline_status` turns the flat diagnostics dict into the status level and message a
monitor (rqt_robot_monitor, a grasp planner's watchdog) reads.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class Percentiles:
    """Rolling window of durations (seconds); thread-safe."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def summary(self) -> dict[str, float]:
        with self._lock:
            values = np.array(self._values, dtype=float)
        if len(values) == 0:
            return {}
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(values.max()), "n": len(values)}


class NodeStats:
    """Event counts, drops by reason and latency windows; every method is safe from any thread."""

    def __init__(self, warn: Callable[[str], None], throttle_s: Callable[[], float]) -> None:
        #: Logs one warning line; called outside the lock.
        self._warn = warn
        #: Seconds between two warnings of one drop reason (a run-time parameter, read at every drop).
        self._throttle_s = throttle_s
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._drops: Counter[str] = Counter()
        self._last_warn: dict[str, float] = {}
        self.latencies: dict[str, Percentiles] = {}

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def drop(self, reason: str, message: str) -> None:
        """Count a dropped frame (or failed job) and warn, throttled per reason."""
        now = time.monotonic()
        with self._lock:
            self._drops[reason] += 1
            total = self._drops[reason]
            warn = now - self._last_warn.get(reason, -math.inf) >= self._throttle_s()
            if warn:
                self._last_warn[reason] = now
        if warn:
            self._warn(f"dropped ({reason}, {total} so far): {message}")

    def latency(self, name: str, seconds: float) -> None:
        """Add one duration to the window ``name`` (created on first use)."""
        window = self.latencies.get(name)
        if window is None:
            with self._lock:
                window = self.latencies.setdefault(name, Percentiles())
        window.add(seconds)

    def flat(self) -> dict[str, Any]:
        """count.*, drop.*, drops_total and latency_s.<window>.<p50|p95|p99|max|n>."""
        with self._lock:
            out: dict[str, Any] = {f"count.{k}": v for k, v in sorted(self._counts.items())}
            out.update({f"drop.{k}": v for k, v in sorted(self._drops.items())})
            out["drops_total"] = sum(self._drops.values())
            windows = list(self.latencies.items())
        for name, window in windows:
            out.update({f"latency_s.{name}.{k}": v for k, v in window.summary().items()})
        return out


def process_age_s() -> float:
    """Seconds since this process started (Linux /proc; NaN elsewhere): startup includes the interpreter and the
    imports, which a timer started in main() would miss."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")


def pipeline_status(values: dict[str, Any], active: bool, backend_state: str, drops_before: int) -> tuple[bytes, str]:
    """(DiagnosticStatus level, message): ERROR when the dispatcher is degraded (or stopped) or the node failed, WARN
    while it is still connecting (Ray starting after activation) or when frames were dropped since the last report
    (``drops_before``), OK otherwise."""
    if active and backend_state == "running":
        dispatch_state = values.get("dispatch.state", "")
        if dispatch_state == "connecting":
            return DiagnosticStatus.WARN, f"dispatcher connecting: {values.get('dispatch.state_reason', '')}"
        if dispatch_state != "ready":
            return DiagnosticStatus.ERROR, f"dispatcher {dispatch_state}: {values.get('dispatch.state_reason', '')}"
        if values.get("drops_total", 0) > drops_before:
            return DiagnosticStatus.WARN, "dropping frames (see drop.*)"
        return DiagnosticStatus.OK, "running"
    if backend_state.startswith("failed"):
        return DiagnosticStatus.ERROR, backend_state
    return DiagnosticStatus.OK, backend_state


def diagnostic_array(node_name: str, level: bytes, message: str, values: dict[str, Any], stamp: Any) -> DiagnosticArray:
    """One DiagnosticArray with the node's pipeline status and every value as a string KeyValue."""
    status = DiagnosticStatus(name=f"{node_name}: pipeline", hardware_id=node_name, level=level, message=message)
    status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg
