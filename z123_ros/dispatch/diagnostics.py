"""Diagnostic worker kinds: ``echo`` (transport round trips, timeouts, failure drills) and ``cpu_burn`` (throughput).

They load no model and their results are deterministic. Importing this module registers them
(:mod:`z123_ros.dispatch.kinds`); only tests, benchmarks and ``z123 dispatch-check`` do, so they are never pools of
the production node. A node that should serve them (a failure drill) names this module in ``Z123_WORKER_MODULES``
and sets ``dispatch.echo.num_actors``.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from z123_ros.dispatch.kinds import WorkerKind, register_kind
from z123_ros.dispatch.pool import WorkerPoolConfig
from z123_ros.dispatch.workers import Job


@dataclass(kw_only=True)
class EchoJob(Job):
    """Diagnostic: returns ``data`` unchanged after sleeping ``sleep_s`` (a stand-in for a slow model call)."""

    kind: ClassVar[str] = "echo"
    data: Any = None
    """Anything picklable, e.g. a 256x256 RGBA crop."""
    sleep_s: float = 0.0
    """Seconds the worker sleeps before answering."""


@dataclass(kw_only=True)
class CpuBurnJob(Job):
    """Diagnostic: a deterministic CPU-bound SHA-256 chain of ``rounds`` steps; returns the hex digest."""

    kind: ClassVar[str] = "cpu_burn"
    rounds: int = 100_000
    """Hash steps (about 2 us each in CPython on the project's 2-core CI machine)."""
    seed: int = 0
    """Start value of the chain."""


class EchoWorker:
    """Diagnostic: no model; returns the job's data."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        del pool

    def warmup(self) -> None:
        self(EchoJob(data=np.zeros((4, 4), np.uint8)))

    def __call__(self, job: EchoJob) -> Any:
        if job.sleep_s > 0:
            time.sleep(job.sleep_s)
        return job.data


def cpu_burn(rounds: int, seed: int = 0) -> str:
    """The CpuBurnJob computation: ``rounds`` chained SHA-256 steps from ``seed``; returns the final hex digest."""
    digest = int(seed).to_bytes(8, "little", signed=True)
    for _ in range(int(rounds)):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


class CpuBurnWorker:
    """Diagnostic: no model; a deterministic CPU-bound job for throughput checks."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        del pool

    def warmup(self) -> None:
        cpu_burn(10)

    def __call__(self, job: CpuBurnJob) -> str:
        return cpu_burn(job.rounds, job.seed)


ECHO = register_kind(
    WorkerKind(
        "echo", EchoWorker, EchoJob, diagnostic=True, summary="diagnostic: returns its input", collect_at_warm_up=False
    ),
    replace=True,
)
CPU_BURN = register_kind(
    WorkerKind(
        "cpu_burn",
        CpuBurnWorker,
        CpuBurnJob,
        diagnostic=True,
        summary="diagnostic: a SHA-256 chain",
        collect_at_warm_up=False,
    ),
    replace=True,
)
