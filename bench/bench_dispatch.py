"""Dispatch benchmark: what Ray costs per job, and what a second actor buys, on an embedded local Ray.

1. Round trip of a job carrying a 256x256 RGBA crop (the EchoJob diagnostic returns it) through the dispatcher:
   submit -> object store -> actor -> result back -> callback, one job at a time, against the same worker call in
   process (the difference is the dispatch overhead; target: a few milliseconds) and against a bare
   ``ray.get(actor.run.remote(job))`` (Ray's own share).
2. Throughput of a deterministic CPU-bound job (CpuBurnJob, a SHA-256 chain) with one actor vs two actors (as many
   jobs kept in flight as actors), against the same jobs called serially in process.

All rows come from one run on one embedded Ray (the two-actor dispatcher joins the Ray the first one started), so
the ratios are side by side. On a machine whose cores are busy with other work, two actors cannot reach 2x.

    python bench/bench_dispatch.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
import time

import numpy as np
from _table import markdown_table  # bench/ is sys.path[0] when a bench script runs

from z123_ros.dispatch import DispatchConfig, Dispatcher, DispatcherState, JobResult, WorkerPoolConfig, make_worker
from z123_ros.dispatch.diagnostics import ECHO, CpuBurnJob, EchoJob
from z123_ros.dispatch.host import WorkerHost


class _Sink:
    """on_done -> per-job events; keeps the bench's own waiting out of the dispatcher's thread."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.results: dict[int, JobResult] = {}

    def __call__(self, job_id: int, result: JobResult) -> None:
        with self._cv:
            self.results[job_id] = result
            self._cv.notify_all()

    def wait(self, job_id: int, timeout_s: float = 120.0) -> JobResult:
        with self._cv:
            if not self._cv.wait_for(lambda: job_id in self.results, timeout_s):
                raise RuntimeError(f"job {job_id} got no result in {timeout_s} s")
            result = self.results.pop(job_id)
        if not result.ok:
            raise RuntimeError(f"job {job_id} failed: {result.reason}: {result.error}")
        return result


def _round_trips(dispatcher: Dispatcher, n: int) -> tuple[list[float], list[float]]:
    crop = np.random.default_rng(0).integers(0, 256, (256, 256, 4), dtype=np.uint8)
    sink = _Sink()
    remote, local = [], []
    worker = make_worker("echo")
    for i in range(n + 3):
        job = EchoJob(data=crop)
        t0 = time.perf_counter()
        result = sink.wait(dispatcher.submit(job, on_done=sink))
        elapsed = time.perf_counter() - t0
        if not np.array_equal(result.value, crop):
            raise RuntimeError("the echoed crop differs from the one sent")
        t0 = time.perf_counter()
        worker(job)
        local_s = time.perf_counter() - t0
        if i >= 3:  # the first calls warm the object store and the actor's imports
            remote.append(elapsed)
            local.append(local_s)
    return remote, local


def _raw_ray_round_trips(n: int) -> list[float]:
    """The same echo call on a bare actor with ``ray.get(actor.run.remote(job))``: Ray's own share of the cost."""
    import ray

    actor = ray.remote(WorkerHost).options(num_cpus=0).remote(ECHO, WorkerPoolConfig(num_actors=1))
    crop = np.random.default_rng(0).integers(0, 256, (256, 256, 4), dtype=np.uint8)
    times = []
    try:
        for i in range(n + 3):
            t0 = time.perf_counter()
            reply = ray.get(actor.run.remote(EchoJob(data=crop)))
            if i >= 3:
                times.append(time.perf_counter() - t0)
            if not reply.ok:
                raise RuntimeError(reply.message)
    finally:
        ray.kill(actor)
    return times


def _throughput(dispatcher: Dispatcher, jobs: list[CpuBurnJob], in_flight: int) -> float:
    """Jobs per second with ``in_flight`` jobs kept submitted."""
    sink = _Sink()
    pending: list[int] = []
    t0 = time.perf_counter()
    for job in jobs:
        if len(pending) >= in_flight:
            sink.wait(pending.pop(0))
        pending.append(dispatcher.submit(job, on_done=sink))
    for job_id in pending:
        sink.wait(job_id)
    return len(jobs) / (time.perf_counter() - t0)


def _round_trip_row(path: str, seconds: list[float], decimals: int) -> dict:
    """One round-trip table row: median and p95 in milliseconds."""
    return {
        "bench": "dispatch_round_trip_rgba256",
        "path": path,
        "n": len(seconds),
        "median_ms": round(float(np.median(seconds)) * 1e3, decimals),
        "p95_ms": round(float(np.percentile(seconds, 95)) * 1e3, decimals),
    }


def run(quick: bool = False) -> list[dict]:
    n_round_trips = 30 if quick else 200
    n_jobs, rounds = (8, 100_000) if quick else (24, 300_000)
    jobs = [CpuBurnJob(rounds=rounds, seed=i) for i in range(n_jobs)]
    small = WorkerPoolConfig(num_actors=1, num_cpus=0.5)
    base = Dispatcher(
        DispatchConfig(
            num_cpus=2,
            object_store_memory_mb=128,
            pools={"echo": small, "cpu_burn": small},
            max_in_flight=64,
        )
    )
    rows: list[dict] = []
    try:
        if base.start() is not DispatcherState.READY:
            raise RuntimeError(f"dispatcher not ready: {base.state_reason}")
        remote, local = _round_trips(base, n_round_trips)
        ms = 1e3
        rows.append(_round_trip_row("dispatcher (Ray actor)", remote, 3))
        rows.append(_round_trip_row("in process", local, 4))
        raw = _raw_ray_round_trips(n_round_trips)
        rows.append(_round_trip_row("bare Ray actor call", raw, 3))
        rows.append(
            {
                "bench": "dispatch_overhead_rgba256",
                "path": "dispatcher - in process",
                "n": len(remote),
                "median_ms": round((float(np.median(remote)) - float(np.median(local))) * ms, 3),
            }
        )

        worker = make_worker("cpu_burn")
        t0 = time.perf_counter()
        for job in jobs:
            worker(job)
        serial = len(jobs) / (time.perf_counter() - t0)
        one = _throughput(base, jobs, in_flight=1)
        # A second dispatcher with two actors joins the Ray the first one started (and leaves it running).
        two_actors = Dispatcher(
            DispatchConfig(
                pools={"cpu_burn": WorkerPoolConfig(num_actors=2, num_cpus=0.5)},
                max_in_flight=64,
            )
        )
        try:
            if two_actors.start() is not DispatcherState.READY:
                raise RuntimeError(f"second dispatcher not ready: {two_actors.state_reason}")
            two = _throughput(two_actors, jobs, in_flight=2)
        finally:
            two_actors.shutdown()
        for path, value in (("in process, serial", serial), ("1 actor", one), ("2 actors", two)):
            rows.append(
                {
                    "bench": "dispatch_cpu_throughput",
                    "path": path,
                    "n": len(jobs),
                    "jobs_per_s": round(value, 2),
                    "vs_1_actor": round(value / one, 2),
                }
            )
    finally:
        base.shutdown()
    cores = os.cpu_count()
    for row in rows:
        row["cores"] = cores
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer round trips and jobs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = run(quick=args.quick)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
