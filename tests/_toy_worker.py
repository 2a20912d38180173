"""A toy worker kind (a test double, not a feature): ``toy_reverse`` returns its job's items in reverse order,
stamped with the process that ran it.

Importing this module registers it; tests reach other processes with ``Z123_WORKER_MODULES=tests._toy_worker``.
Nothing outside this module names it: that is what the worker-kind registry test shows.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from z123_ros.dispatch import Job, WorkerKind, WorkerPoolConfig, register_kind

NAME = "toy_reverse"


@dataclass(kw_only=True)
class ToyReverseJob(Job):
    """Items to reverse."""

    kind: ClassVar[str] = NAME
    items: list[Any] = field(default_factory=list)
    """Anything picklable."""


class ToyReverseWorker:
    """Counts its calls, so a test can tell one warm actor from a fresh one."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        self.calls = 0
        self.tag = pool.model_path  # stands in for a model the pool names

    def warmup(self) -> None:
        self(ToyReverseJob(items=[1, 2]))

    def __call__(self, job: ToyReverseJob) -> dict[str, Any]:
        self.calls += 1
        return {"items": list(reversed(job.items)), "tag": self.tag, "pid": os.getpid(), "calls": self.calls}


TOY_KIND = register_kind(
    WorkerKind(NAME, ToyReverseWorker, ToyReverseJob, WorkerPoolConfig(num_actors=1, num_cpus=0.25), summary="test"),
    replace=True,
)
