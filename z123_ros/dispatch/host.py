"""What runs inside one Ray actor: :class:`WorkerHost` builds its kind's worker and turns job errors into replies.

The dispatcher wraps the class with ``ray.remote``; it is plain Python so it can be tested without Ray.
"""

from __future__ import annotations

import gc
import logging
import os
import time
from typing import Any

from z123_ros._lean_imports import lean_scientific_imports
from z123_ros.dispatch.addons import addons_for_loaded_libraries, in_ray_worker
from z123_ros.dispatch.kinds import WorkerKind
from z123_ros.dispatch.payload import unpack
from z123_ros.dispatch.pool import WorkerPoolConfig
from z123_ros.dispatch.timeline import process_started_at
from z123_ros.dispatch.workers import Job, Worker, WorkerReply
from z123_ros.errors import Z123Error

logger = logging.getLogger(__name__)

if in_ray_worker():
    # Ray imports this module in an actor's process to load WorkerHost, before it makes the serialization context
    # that unpickles the actor's arguments: its add-ons would import pydantic and pyarrow there (0.1 CPU-s).
    addons_for_loaded_libraries()


class WorkerHost:
    """Builds the worker lazily (again after a restart) and never raises job errors.

    ``kind`` is the registry entry itself, not its name: its classes travel to the actor by reference, so a kind
    registered only in the driver (a plugin, a diagnostic kind, a test's toy kind) is built all the same.
    """

    def __init__(self, kind: WorkerKind, pool: WorkerPoolConfig) -> None:
        # Before the worker imports the reconstruction stack: scipy's docstring notes and numpy's f2py and testing
        # (z123_ros/_lean_imports.py: 0.1 CPU-s). Here, not at this module's import: only the actors this project
        # starts change their imports, not a user's Ray task that merely imports z123_ros.dispatch.
        lean_scientific_imports()
        self._kind = kind
        self._pool = pool
        self._worker: Worker | None = None

    def _ensure_worker(self) -> Worker:
        if self._worker is None:
            t0 = time.perf_counter()
            self._worker = self._kind.worker(self._pool)
            logger.info("%s worker built in %.2f s (pid %d)", self._kind.name, time.perf_counter() - t0, os.getpid())
        return self._worker

    def warmup(self) -> WorkerReply:
        """Build the model (if not yet) and run the kind's warm-up job. A failure here means the actor is unusable.
        The reply's value holds the start-up stamps (:mod:`z123_ros.dispatch.timeline`): worker_started (this
        process's start) and worker_built."""
        t0 = time.perf_counter()
        try:
            worker = self._ensure_worker()
            built = time.monotonic()
            if self._pool.warm_up:
                worker.warmup()
        except Exception as exc:  # noqa: BLE001  (any failure is reported to the dispatcher, which decides)
            return _failure(exc, time.perf_counter() - t0)
        # Move everything alive after the warm-up (modules, the model) out of the collector's reach: the full
        # collection run() does after each job then scans only that job's objects (microseconds, against ~0.1 s
        # for the ~110k objects of a reconstruction actor). A collection first only where the kind asks for it
        # (WorkerKind.collect_at_warm_up: a model's loading garbage is not to be frozen); not for the
        # reconstruction kind, where over those ~110k objects it took 0.07-0.13 CPU-s right before the actor
        # reported warm, to free 27 objects the imports left in cycles (a few kB, now frozen with the rest).
        if self._kind.collect_at_warm_up:
            gc.collect()
        gc.freeze()
        stamps = {"worker_started": process_started_at(), "worker_built": built}
        return WorkerReply(ok=True, value=stamps, run_s=time.perf_counter() - t0, pid=os.getpid())

    def run_packed(self, head: bytes, *arrays: Any) -> WorkerReply:
        """:meth:`run` of the job :func:`~z123_ros.dispatch.payload.pack` gave ``head`` and ``arrays`` for (the
        dispatcher's call: the arrays come from the object store, shared with the other jobs of the same frame)."""
        try:
            job = unpack(head, arrays)
        except Exception as exc:  # noqa: BLE001  (a job this actor cannot rebuild is a failed job, not a dead actor)
            return _failure(exc, 0.0)
        return self.run(job)

    def run(self, job: Job) -> WorkerReply:
        t0 = time.perf_counter()
        try:
            value = self._ensure_worker()(job)
        except Exception as exc:  # noqa: BLE001  (job errors travel back as a reason, see WorkerReply)
            return _failure(exc, time.perf_counter() - t0)
        finally:
            # A job's garbage can sit in reference cycles (trimesh meshes and their caches: ~5 MB each at VGA).
            # Surviving two young collections while the job runs, it lands in the oldest generation, which a
            # process with many long-lived objects (a Ray worker) collects rarely: the actors then grew ~2 MB per
            # job (docs/node/latency.md). A full collection per job frees it; cheap after warmup()'s gc.freeze().
            gc.collect()
        return WorkerReply(ok=True, value=value, run_s=time.perf_counter() - t0, pid=os.getpid())


def _failure(exc: Exception, run_s: float) -> WorkerReply:
    reason = exc.reason if isinstance(exc, Z123Error) else "job_error"
    return WorkerReply(ok=False, reason=reason, message=f"{type(exc).__name__}: {exc}", run_s=run_s, pid=os.getpid())
