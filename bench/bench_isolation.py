"""What the isolated Ray driver costs on the frame-to-mesh path: in-process Dispatcher vs SupervisedDispatcher.

The node submits one job per new object: a VGA RGB-D frame's arrays (colour, depth, mask: ~2.4 MB) go in, a mesh
comes back. The supervised dispatcher adds one hop each way (socket pair to the dispatch process, numpy arrays out
of band) to what the in-process one does. Both are timed here one after the other on their own embedded Ray with
the same job stream:

- ``echo``: an EchoJob carrying the frame's arrays and returning them (both directions full size: an upper bound
  of the transfer cost; a mesh result is smaller than the frame);
- ``reconstruction``: a real depth-backend ReconstructionJob on a rendered YCB object (the frame-to-mesh work).

The difference of the medians is the isolation's cost per job. Measured one job at a time.

    python bench/bench_isolation.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import markdown_table  # bench/ is sys.path[0] when a bench script runs

from z123_ros.dispatch import (
    DispatchConfig,
    Dispatcher,
    DispatcherState,
    ReconstructionJob,
    SupervisedDispatcher,
    WorkerPoolConfig,
)
from z123_ros.dispatch.diagnostics import EchoJob

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _dispatch_helpers import Results  # noqa: E402
from _reconstruction_helpers import render_object_view  # noqa: E402


def _frame_payload() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "rgb": rng.integers(0, 256, (480, 640, 3), dtype=np.uint8),
        "depth_m": rng.random((480, 640), dtype=np.float32),
        "mask": rng.random((480, 640)) > 0.9,
    }


def _time_jobs(dispatcher, make_job, n: int) -> list[float]:
    results = Results()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        result = results.wait(dispatcher.submit(make_job(), on_done=results), 300.0)
        times.append(time.perf_counter() - t0)
        if not result.ok:
            raise RuntimeError(f"{result.reason}: {result.error}")
    return times


def _measure(cls, n: int, inp) -> dict[str, list[float]]:
    temp_dir = tempfile.mkdtemp(prefix="z123_bench_iso_")
    config = DispatchConfig(
        num_cpus=2,
        object_store_memory_mb=128,
        temp_dir=temp_dir,
        pools={
            "reconstruction": WorkerPoolConfig(num_actors=1, num_cpus=0.5),
            "echo": WorkerPoolConfig(num_actors=1, num_cpus=0.5),
        },
    )
    dispatcher = cls(config)
    try:
        if dispatcher.start(wait_s=300.0) is not DispatcherState.READY or not dispatcher.wait_ready(300.0):
            raise RuntimeError(f"{cls.__name__} not ready: {dispatcher.state_reason}")
        payload = _frame_payload()
        _time_jobs(dispatcher, lambda: EchoJob(data=payload), 3)  # warm the paths up
        echo = _time_jobs(dispatcher, lambda: EchoJob(data=payload), n)
        recon = _time_jobs(dispatcher, lambda: ReconstructionJob(inp=inp, backend="depth"), max(3, n // 3))
        return {"echo": echo, "reconstruction": recon}
    finally:
        dispatcher.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


def run(quick: bool = False) -> list[dict]:
    n = 10 if quick else 40
    inp = render_object_view("005_tomato_soup_can", width=640, height=480).inp
    drivers = (("in-process", Dispatcher), ("isolated", SupervisedDispatcher))
    measured = {name: _measure(cls, n, inp) for name, cls in drivers}
    rows = []
    for job in ("echo", "reconstruction"):
        base = np.median(measured["in-process"][job]) * 1e3
        for name in ("in-process", "isolated"):
            ms = np.asarray(measured[name][job]) * 1e3
            rows.append(
                {
                    "job": job,
                    "driver": name,
                    "jobs": len(ms),
                    "median_ms": round(float(np.median(ms)), 1),
                    "p95_ms": round(float(np.percentile(ms, 95)), 1),
                    "worst_ms": round(float(ms.max()), 1),
                    "isolation_cost_ms": round(float(np.median(ms) - base), 1),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer jobs")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    print(markdown_table(run(args.quick)))
    print(f"\nload average during the run: {os.getloadavg()[0]:.1f} (1 min), {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
