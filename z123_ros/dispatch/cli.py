"""``z123 dispatch-check``: is Ray (embedded or a cluster) reachable, and does a job go through it?

    z123 dispatch-check                         # embedded local Ray
    z123 dispatch-check --address 10.0.0.5:6379 --jobs 20

Starts a dispatcher with one diagnostic echo actor and one cpu_burn actor, sends ``--jobs`` round trips of a
256x256 RGBA crop and one CPU-bound job, checks every result against the same call in process, prints the round-trip
latency and the dispatcher's counters, and stops everything it started. Exit code 0 when every job matched, 2 with
one line on stderr otherwise (unreachable cluster, failed or wrong job).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time

import numpy as np

from z123_ros.dispatch.config import DispatchConfig
from z123_ros.dispatch.diagnostics import CpuBurnJob, EchoJob, cpu_burn
from z123_ros.dispatch.dispatcher import Dispatcher, DispatcherState, JobResult
from z123_ros.dispatch.pool import WorkerPoolConfig
from z123_ros.errors import ConfigError, DispatchError, Z123Error


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dispatch-check",
        help="check that jobs go through Ray (embedded or a cluster) and time the round trip",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--address", default="", help="host:port, auto or ray://host:10001 (default: embedded Ray)")
    parser.add_argument("--jobs", type=int, default=10, help="echo round trips (default 10)")
    parser.add_argument("--connect-timeout", type=float, default=120.0, help="seconds to wait for Ray and the actors")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        lines = check(args.address or None, args.jobs, args.connect_timeout)
    except Z123Error as exc:
        sys.stderr.write(f"z123 dispatch-check: {exc}\n")
        return 2
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def check(address: str | None, jobs: int, connect_timeout_s: float) -> list[str]:
    """Run the check; returns the report lines or raises Z123Error (DispatchError) naming what failed."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    config = DispatchConfig(
        address=address,
        pools={"echo": WorkerPoolConfig(num_actors=1, num_cpus=0.5), "cpu_burn": WorkerPoolConfig(1, num_cpus=0.5)},
        connect_timeout_s=connect_timeout_s,
    )
    done = threading.Condition()
    results: dict[int, JobResult] = {}

    def on_done(job_id: int, result: JobResult) -> None:
        with done:
            results[job_id] = result
            done.notify_all()

    def wait(job_id: int) -> JobResult:
        with done:
            if not done.wait_for(lambda: job_id in results, config.job_timeout_s + 5):
                raise DispatchError(f"job {job_id} got no result")
            return results.pop(job_id)

    dispatcher = Dispatcher(config)
    try:
        t0 = time.perf_counter()
        state = dispatcher.start()
        if state is not DispatcherState.READY or not dispatcher.wait_ready(0.0):
            raise DispatchError(f"dispatcher is {state.value}: {dispatcher.state_reason}")
        ready_s = time.perf_counter() - t0
        crop = np.random.default_rng(0).integers(0, 256, (256, 256, 4), dtype=np.uint8)
        round_trips = []
        for _ in range(jobs):
            t0 = time.perf_counter()
            result = wait(dispatcher.submit(EchoJob(data=crop), on_done=on_done))
            round_trips.append(time.perf_counter() - t0)
            if not result.ok or not np.array_equal(result.value, crop):
                raise DispatchError(f"echo job failed or returned other data: {result.reason} {result.error}")
        burn = wait(dispatcher.submit(CpuBurnJob(rounds=20_000, seed=1), on_done=on_done))
        if not burn.ok or burn.value != cpu_burn(20_000, seed=1):
            raise DispatchError(f"cpu_burn job failed or returned a wrong digest: {burn.reason} {burn.error}")
        stats = dispatcher.stats()
        workers = ", ".join(f"{w.kind} pid {w.pid} ({w.state})" for w in dispatcher.workers())
        ms = np.asarray(round_trips) * 1e3
        return [
            f"ray: {dispatcher.state_reason}; ready in {ready_s:.1f} s",
            f"actors: {workers}",
            f"256x256 RGBA round trip over {jobs} jobs: median {np.median(ms):.2f} ms, max {ms.max():.2f} ms",
            f"jobs completed {stats.completed}, failed {stats.failed}",
        ]
    finally:
        dispatcher.shutdown()
