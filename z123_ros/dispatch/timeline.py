"""Where a dispatcher's start (or restart after Ray was lost) spends its time, stage by stage.

Every process of the dispatch layer (the node-side supervisor, the dispatch child holding the Ray driver, the actors)
stamps the end of its stages with ``time.monotonic()``: on Linux that is CLOCK_MONOTONIC, one clock for every process
of the machine, so stamps from different processes subtract. :func:`breakdown` turns the stamps into the durations
that /diagnostics (``dispatch.startup_s.*``) and ``bench/bench_dispatch_startup.py`` report.

The stamps, in the order a start goes through them (a restart begins with the first two):

- ``lost``: the supervisor noticed Ray was lost; ``cleaned``: the lost child's processes are gone.
- ``spawned``: the supervisor handed the dispatch child its config (a standby child was started earlier).
- ``child_started``: the dispatch child's process started; ``imported``: its imports were done.
- ``configured``: the child received its config; ``ray_up``: ray.init returned (embedded Ray started or joined).
- ``actors_created``: the actor handles exist and their warm-up calls are sent.
- ``worker_started`` / ``worker_built`` (earliest over the actors): an actor's process started / its worker was
  built (model and imports); ``first_warm`` / ``warm``: the first / the last actor finished its warm-up.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: (name of the duration, stamp it starts from, stamp it ends at), in the order of a start.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("cleanup", "lost", "cleaned"),
    ("backoff", "cleaned", "spawned"),
    ("python_and_imports", "spawned", "imported"),
    ("config_handoff", "spawned", "configured"),
    ("ray_init", "configured", "ray_up"),
    ("actor_create", "ray_up", "actors_created"),
    ("worker_process", "actors_created", "worker_started"),
    ("worker_build", "worker_started", "worker_built"),
    ("first_warm", "ray_up", "first_warm"),
    ("all_warm", "ray_up", "warm"),
)


def process_started_at(pid: int | str = "self") -> float:
    """``time.monotonic()`` at which process ``pid`` started (Linux /proc, 10 ms resolution; NaN elsewhere).

    /proc gives the start in clock ticks since boot; CLOCK_BOOTTIME minus CLOCK_MONOTONIC is the time the machine
    was suspended, which shifts both the same way.
    """
    try:
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
        boottime = time.clock_gettime(time.CLOCK_BOOTTIME)
    except (OSError, IndexError, ValueError, AttributeError):
        return float("nan")
    return time.monotonic() - (boottime - start_ticks / os.sysconf("SC_CLK_TCK"))


def breakdown(stamps: dict[str, float]) -> dict[str, float]:
    """Stage durations (s) from ``stamps``; a stage whose stamps are missing is left out, one that ended before it
    began (a standby child imported before it was needed) counts 0. ``total`` runs from the first stamp of
    the start (``lost``, else ``spawned``) to ``warm`` (or the latest stamp so far)."""
    out: dict[str, float] = {}
    for name, begin, end in STAGES:
        if begin in stamps and end in stamps:
            out[name] = round(max(0.0, stamps[end] - stamps[begin]), 3)
    origin = stamps.get("lost", stamps.get("spawned"))
    if origin is not None:
        last = stamps.get("warm", max(stamps.values()))
        out["total"] = round(max(0.0, last - origin), 3)
    return out
