"""Private-memory (USS) growth of one Ray actor per job, bisected by what the job carries (issue 20).

Starts an embedded Ray, then for each case one ``WorkerHost`` actor (the class the dispatcher wraps), runs
``--warmup`` jobs, then ``--jobs`` jobs one at a time, sampling the actor's ``/proc/PID/smaps_rollup`` USS every
``--every`` jobs. Prints one JSON line per case with the least-squares slope in KB per job. Cases:

- ``recon``: depth ReconstructionJob of one rendered VGA object, passed as a ``ray.put`` reference (as the dispatcher
  does), result fetched with ``ray.get``;
- ``recon_drop``: the same, result reference dropped unread;
- ``recon_noevents``: ``recon`` with the actor created with ``enable_task_events=False``;
- ``sink_vga``: the same VGA job to a worker that returns None (input handling only);
- ``echo_tiny``: a 4x4 array echoed (Ray's per-task handling only).
- ``traced``: ``recon`` in a worker that runs tracemalloc and reports the top call sites of its snapshot diff;
- ``plain``, ``plain_fresh``, ``plain_trim``, ``plain_traced``: the same reconstructions in this process, no actor
  (the same input object; a fresh unpickled copy per job; ``malloc_trim(0)`` after each; under tracemalloc).

Memory does not need a quiet machine: run it niced. ``python bench/ray_actor_memory.py --cases recon,echo_tiny``.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import os
import pickle
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from z123_ros.dispatch.diagnostics import ECHO, EchoJob  # noqa: E402
from z123_ros.dispatch.host import WorkerHost  # noqa: E402
from z123_ros.dispatch.kinds import WorkerKind  # noqa: E402
from z123_ros.dispatch.pool import WorkerPoolConfig  # noqa: E402
from z123_ros.dispatch.workers import Job, ReconstructionJob, ReconstructionWorker  # noqa: E402

logger = logging.getLogger("ray_actor_memory")


@dataclass(kw_only=True)
class SinkJob(Job):
    """Diagnostic: carries ``data`` to the actor, which drops it and returns None."""

    kind: ClassVar[str] = "sink"
    data: Any = None
    """Anything picklable."""


class SinkWorker:
    """Diagnostic: returns None (the job's input is received and dropped)."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        del pool

    def warmup(self) -> None:
        pass

    def __call__(self, job: SinkJob) -> None:
        return None


@dataclass(kw_only=True)
class TracedJob(ReconstructionJob):
    """Diagnostic: a ReconstructionJob that, with ``snapshot=True``, returns the tracemalloc diff instead."""

    kind: ClassVar[str] = "traced"
    snapshot: bool = False
    """True: return the top call sites grown since the first snapshot (no reconstruction)."""


class TracedWorker(ReconstructionWorker):
    """Diagnostic: ReconstructionWorker under tracemalloc; the first snapshot is taken at warm-up."""

    def warmup(self) -> None:
        super().warmup()
        tracemalloc.start(8)
        self._base = tracemalloc.take_snapshot()

    def __call__(self, job: TracedJob) -> Any:
        if not getattr(job, "snapshot", False):
            return super().__call__(job)
        stats = tracemalloc.take_snapshot().compare_to(self._base, "traceback")
        total = sum(s.size_diff for s in stats)
        top = [(s.size_diff, s.count_diff, s.traceback.format()[-6:]) for s in stats[:8]]
        return {"total_diff": total, "traced_now": tracemalloc.get_traced_memory()[0], "top": top}


SINK = WorkerKind("sink", SinkWorker, SinkJob, diagnostic=True)
TRACED = WorkerKind("traced", TracedWorker, TracedJob, diagnostic=True)
RECON = WorkerKind("reconstruction", ReconstructionWorker, ReconstructionJob)


def uss_kb(pid: int) -> int:
    """Private memory of ``pid`` (Private_Clean + Private_Dirty of smaps_rollup), in KB."""
    total = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total += int(line.split()[1])
    return total


def slope(xs: list[int], ys: list[int]) -> float:
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0]) if len(xs) > 1 else 0.0


def run_plain(case: str, inp: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The same jobs in this process, no Ray; ``plain_fresh`` unpickles a fresh copy of the input per job."""
    traced = case == "plain_traced"
    worker = (TracedWorker if traced else ReconstructionWorker)(WorkerPoolConfig(num_actors=1))
    worker.warmup()
    libc = ctypes.CDLL("libc.so.6")
    xs, ys = [], []
    for i in range(args.warmup + args.jobs):
        job_inp = pickle.loads(pickle.dumps(inp)) if case == "plain_fresh" else inp
        worker(TracedJob(inp=job_inp, backend="depth") if traced else ReconstructionJob(inp=job_inp, backend="depth"))
        if case == "plain_trim":
            libc.malloc_trim(0)  # hand freed heap pages back: what remains is held, not fragmentation
        done = i + 1 - args.warmup
        if done >= 0 and done % args.every == 0:
            xs.append(done)
            ys.append(uss_kb(os.getpid()))
    out = {
        "case": case,
        "jobs": args.jobs,
        "uss_mb": [round(y / 1024, 1) for y in ys],
        "kb_per_job": round(slope(xs, ys), 1),
        "load": round(os.getloadavg()[0], 1),
    }
    if traced:
        out["tracemalloc"] = worker(TracedJob(inp=None, snapshot=True))
    return out


def run_case(case: str, inp: Any, args: argparse.Namespace) -> dict[str, Any]:
    import ray

    if case.startswith("plain"):
        return run_plain(case, inp, args)

    kind = {"sink_vga": SINK, "echo_tiny": ECHO, "traced": TRACED}.get(case, RECON)
    options: dict[str, Any] = {"num_cpus": 1, "max_task_retries": 0}
    if case == "recon_noevents":
        options["enable_task_events"] = False
    actor = ray.remote(WorkerHost).options(**options).remote(kind, WorkerPoolConfig(num_actors=1))
    pid = ray.get(actor.warmup.remote()).pid

    def make_job() -> Job:
        if case == "sink_vga":
            return SinkJob(data=inp)
        if case == "echo_tiny":
            return EchoJob(data=np.zeros((4, 4), np.uint8))
        if case == "traced":
            return TracedJob(inp=inp, backend="depth")
        return ReconstructionJob(inp=inp, backend="depth")

    xs, ys = [], []
    t0 = time.monotonic()
    for i in range(args.warmup + args.jobs):
        ref = actor.run.remote(ray.put(make_job()))
        if case == "recon_drop":
            ray.wait([ref], timeout=120)
        else:
            reply = ray.get(ref, timeout=120)
            assert reply.ok, reply.message
        del ref
        done = i + 1 - args.warmup
        if done >= 0 and done % args.every == 0:
            xs.append(done)
            ys.append(uss_kb(pid))
    out: dict[str, Any] = {
        "case": case,
        "jobs": args.jobs,
        "uss_mb": [round(y / 1024, 1) for y in ys],
        "kb_per_job": round(slope(xs, ys), 1),
        "s_per_job": round((time.monotonic() - t0) / (args.warmup + args.jobs), 3),
        "load": round(os.getloadavg()[0], 1),
    }
    if case == "traced":
        reply = ray.get(actor.run.remote(TracedJob(inp=None, snapshot=True)))
        out["tracemalloc"] = reply.value if reply.ok else reply.message
    ray.kill(actor)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="recon,recon_drop,recon_noevents,sink_vga,echo_tiny")
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--every", type=int, default=10)
    parser.add_argument("--object", default="003_cracker_box")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)

    import ray
    from _reconstruction_helpers import render_object_view

    inp = render_object_view(args.object, width=640, height=480).inp
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, object_store_memory=200 * 1024 * 1024)
    try:
        for case in args.cases.split(","):
            print(json.dumps(run_case(case, inp, args)), flush=True)
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
