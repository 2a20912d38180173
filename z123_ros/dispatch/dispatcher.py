"""The dispatcher: submit jobs to Ray actors from any thread, get each result through a callback.

Threading: ONE background thread (the collector) makes every Ray call: it connects (or starts the embedded Ray),
creates and warms the actors, puts each job's inputs into the object store once, hands jobs to idle actors,
collects completions with ``ray.wait`` (``ray.get`` only on references ``ray.wait`` returned as ready), enforces
deadlines, probes the cluster, reconnects with backoff, and calls the ``on_done`` callbacks. ``submit``, ``cancel``
and ``stats`` only touch Python state under a lock, so they never block the caller on Ray.

Policies (also in DispatchConfig's docstrings):

- Bounded: at most ``max_in_flight`` jobs accepted and not finished. A job with the ``key`` of a queued (not yet
  started) job replaces it (the old one ends with ``superseded``); otherwise a full dispatcher rejects the new job
  with ``queue_full``. Rejections raise :class:`JobRejectedError` from ``submit``; everything else ends in a callback.
- Deadline: ``timeout_s`` counts from submit. A queued job past it ends with ``timeout`` without running; a running
  one ends with ``timeout`` and its actor is killed and restarted (a running Python call cannot be interrupted).
- Cancel: a queued job is dropped; a running one ends with ``cancelled`` at once and its actor finishes the call
  (result discarded) or is restarted at the job's deadline.
- Worker death: the job is re-run ``retries_on_worker_death`` times (jobs are idempotent) on a restarted actor,
  then ends with ``worker_died``. Actors are restarted by Ray (``max_restarts``), then replaced by the dispatcher.
- Cluster: unreachable at start or lost later (a TCP probe of the head's GCS port fails ``health_check_failures``
  times in a row) -> state DEGRADED with the reason, jobs in flight end with ``cluster_lost``, new jobs are rejected
  with ``degraded``, and the collector reconnects with exponential backoff.
- Shutdown stops only what the dispatcher started: its actors, and Ray itself only if the dispatcher started or
  joined it (``ray.shutdown``, never ``ray stop``). Unfinished jobs end with ``shutdown``.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from z123_ros.dispatch.config import DispatchConfig
from z123_ros.dispatch.head import head_services_to_skip, lean_head, loopback_node
from z123_ros.dispatch.host import WorkerHost
from z123_ros.dispatch.kinds import get_kind, is_kind
from z123_ros.dispatch.payload import SharedArray, SharedArrays, pack
from z123_ros.dispatch.pool import WorkerPoolConfig
from z123_ros.dispatch.timeline import breakdown
from z123_ros.dispatch.workers import Job, WorkerReply
from z123_ros.errors import DispatchError

logger = logging.getLogger(__name__)


class DispatcherState(enum.StrEnum):
    STOPPED = "stopped"
    """Not started, or shut down."""
    CONNECTING = "connecting"
    """First connection (or embedded start) in progress."""
    READY = "ready"
    """Connected; jobs are accepted (they run as soon as an actor of their kind is warm)."""
    DEGRADED = "degraded"
    """The cluster is unreachable or was lost; jobs are rejected; reconnecting in the background."""


class JobRejectedError(DispatchError):
    """submit() refused a job; ``reason`` says why (queue_full, degraded, not_ready, no_workers, stopped, bad_job)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class JobFailedError(DispatchError):
    """Raised by :meth:`JobResult.unwrap` for a failed job; ``reason`` is the result's reason."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class JobTimings:
    """Where a job's time went, seconds."""

    queue_s: float = 0.0
    """submit() -> first handed to an actor."""
    run_s: float = 0.0
    """Handed to an actor (last attempt) -> result collected: transfer + work + scheduling."""
    total_s: float = 0.0
    """submit() -> result collected."""
    worker_s: float = 0.0
    """Time inside the worker's call (last attempt), measured in the actor."""


@dataclass
class JobResult:
    """The outcome of one job, passed to its ``on_done`` callback."""

    job_id: int
    ok: bool
    value: Any = None
    """The worker's return value (e.g. a ReconstructionResult) when ``ok``."""
    reason: str = ""
    """Why it failed: a Z123Error reason from the worker (bad_input, model_load, reconstruction, ...), job_error,
    timeout, cancelled, superseded, worker_died, worker_unavailable, cluster_lost, ray_error or shutdown."""
    error: str = ""
    """Human-readable failure message."""
    timings: JobTimings = field(default_factory=JobTimings)
    attempts: int = 0
    """Times the job was handed to an actor (2 after one retry)."""
    worker_pid: int = 0
    """Process id of the actor that produced the result (0 if none did)."""

    def unwrap(self) -> Any:
        """The value, or raise DispatchError carrying this result's reason."""
        if self.ok:
            return self.value
        raise JobFailedError(f"job {self.job_id} failed ({self.reason}): {self.error}", self.reason)


@dataclass
class WorkerInfo:
    """One actor slot, for diagnostics and failure drills."""

    kind: str
    index: int
    state: str
    """starting (being created or warmed up), idle, busy, or down (gave up: see ``error``)."""
    pid: int
    """Process id of the actor as of its last warm-up or job (0 before the first)."""
    deaths: int
    """Process deaths of the current actor (Ray restarts it up to max_restarts times)."""
    replacements: int
    """Times the dispatcher replaced the actor with a new one."""
    error: str = ""


@dataclass
class DispatchStats:
    """Counters for diagnostics. ``flat()`` gives them as one level of str -> number/str (for /diagnostics)."""

    state: str
    state_reason: str
    address: str
    queued: int
    running: int
    in_flight: int
    submitted: int
    completed: int
    failed: int
    rejected: int
    retried: int
    actor_deaths: int
    actors_ready: int
    actors_total: int
    failed_by_reason: dict[str, int]
    rejected_by_reason: dict[str, int]
    latency_s: dict[str, float]
    """Percentiles of the successful jobs in the window: total_p50, total_p95, total_max, queue_p50, run_p50."""
    ray_restarts: int = 0
    """Times Ray was lost and the dispatch process came back (SupervisedDispatcher only)."""
    resubmitted: int = 0
    """Jobs lost with Ray and submitted again to the next dispatch process (SupervisedDispatcher only)."""
    standby: int = 0
    """1 while a standby dispatch process is ready to take over (SupervisedDispatcher with standby_process)."""
    startup_s: dict[str, float] = field(default_factory=dict)
    """Stage durations of the latest start or restart (:func:`z123_ros.dispatch.timeline.breakdown`): ray_init,
    actor_create, worker_build, first_warm, all_warm, total..."""

    def flat(self) -> dict[str, float | int | str]:
        out: dict[str, float | int | str] = {}
        for name, value in vars(self).items():
            if isinstance(value, dict):
                out.update({f"{name}.{k}": v for k, v in value.items()})
            else:
                out[name] = value
        return out


# ------------------------------------------------------------------------------------------------ internal state


@dataclass(eq=False)
class _Record:
    job_id: int
    job: Job
    on_done: Callable[[int, JobResult], None] | None
    submitted: float
    deadline: float
    attempts: int = 0
    head: bytes = b""
    """The job pickled without its large arrays (:func:`z123_ros.dispatch.payload.pack`)."""
    arrays: list[Any] = field(default_factory=list)
    """Those arrays, each put into the object store once however many jobs carry it (:class:`SharedArrays`)."""
    first_started: float | None = None
    started: float | None = None
    slot: _Slot | None = None
    cancel_requested: bool = False


@dataclass(eq=False)
class _Slot:
    kind: str
    index: int
    handle: Any = None
    state: str = "starting"
    phase: str = ""
    """What ``ref`` is: "warmup" or "job"."""
    ref: Any = None
    record: _Record | None = None
    orphan_deadline: float | None = None
    """Set when the running job was cancelled: the actor is restarted if still busy at this time."""
    warmup_at: float | None = None
    """Set while Ray restarts the actor: send the warm-up call again at this time."""
    pid: int = 0
    deaths: int = 0
    failures_in_row: int = 0
    replacements: int = 0
    error: str = ""


#: Job ids, unique in this process across dispatchers (callers may share one callback between dispatchers).
_JOB_IDS = itertools.count(1)

#: Wait before asking an actor that Ray is restarting for its warm-up again.
_WARMUP_RETRY_S = 0.25


class _ClusterLostError(Exception):
    pass


_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    """The Ray actor class around WorkerHost, made once per process (ray.remote is cheap but not free)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        import ray

        _ACTOR_CLASS = ray.remote(WorkerHost)
    return _ACTOR_CLASS


def probe_tcp(address: str, timeout_s: float = 1.0) -> str:
    """ "" if something accepts TCP connections at ``host:port`` (or ``ray://host:port``), else the error text."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            return ""
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"


def actor_options(pool: WorkerPoolConfig, max_restarts: int) -> dict[str, Any]:
    """The ``.options()`` of one pool's actors: what it reserves and where Ray may place it."""
    options: dict[str, Any] = {
        "num_cpus": pool.num_cpus,
        "num_gpus": pool.num_gpus,
        "max_restarts": max_restarts,
        "max_task_retries": 0,  # the dispatcher retries, so it can count and bound retries per job
    }
    if pool.resources:
        options["resources"] = dict(pool.resources)
    if pool.accelerator_type:
        options["accelerator_type"] = pool.accelerator_type
    return options


def _raylet_address() -> str:
    """host:port of the raylet this driver talks to ("" for Ray Client, which has no local raylet)."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    worker_node = getattr(ray._private.worker.global_worker, "node", None)
    node = node or worker_node
    if node is None or not getattr(node, "node_manager_port", None):
        return ""
    return f"{node.node_ip_address}:{node.node_manager_port}"


def _embedded_exit() -> str:
    """What exited of the embedded Ray this process started ("raylet exited (status -9)"), "" while its GCS and
    raylet run. A poll of our own child processes: cheap enough for every collector step, and it sees a death at
    once where the TCP probes need two failed periods."""
    import ray

    node = getattr(ray._private.worker, "_global_node", None)
    processes = getattr(node, "all_processes", None) or {}
    for name in ("gcs_server", "raylet"):
        for info in processes.get(name, []):
            process = getattr(info, "process", None)
            code = process.poll() if process is not None else None
            if code is not None:
                return f"{name} exited (status {code})"
    return ""


def _apply_ray_environment(cfg: DispatchConfig) -> None:
    """Put the settings Ray reads from the environment in place before ray.init (see DispatchConfig).

    This changes this process's environment (Ray offers no other way for these settings); it is the dispatcher's
    process, which owns Ray.

    The embedded Ray's processes inherit them. Ray's C++ config caches the environment when ``ray._raylet`` is first
    imported, so when Ray was imported before (e.g. by an earlier dispatcher) the cache is refreshed, as Ray itself
    does when it switches token authentication on.
    """
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_gcs_rpc_server_reconnect_timeout_s", str(cfg.gcs_reconnect_timeout_s))
    os.environ["RAY_AUTH_MODE"] = cfg.auth_mode
    if cfg.embedded:
        # The embedded raylet and its workers inherit it: the actors run at the niceness the user chose.
        os.environ["RAY_worker_niceness"] = str(cfg.worker_niceness)  # noqa: SIM112 - Ray's own spelling
        # Ray's processes retry their local socket connections this often; 10 s in all, as with Ray's defaults.
        os.environ.setdefault("RAY_raylet_client_connect_timeout_milliseconds", str(cfg.connect_retry_ms))
        os.environ.setdefault("RAY_raylet_client_num_connect_attempts", str(10_000 // cfg.connect_retry_ms))
        if cfg.prestart_workers:
            os.environ.setdefault("RAY_enable_worker_prestart", "1")
    if cfg.auth_token_path:
        os.environ["RAY_AUTH_TOKEN_PATH"] = cfg.auth_token_path
    package_root = str(Path(__file__).resolve().parents[2])
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if cfg.embedded and Path(package_root).name not in ("site-packages", "dist-packages") and package_root not in paths:
        # A source checkout: the embedded workers (children of the raylet, which inherits this environment) must
        # import this z123_ros, not an older installed copy. A runtime_env would do the same but costs seconds per
        # worker start. Cluster nodes have the project installed instead (ray_cluster/).
        os.environ["PYTHONPATH"] = os.pathsep.join([package_root, *paths])
    from ray._raylet import Config

    Config.initialize("")


class Dispatcher:
    """Runs jobs on Ray actors; see the module docstring for the threading model and the policies.

        dispatcher = Dispatcher(DispatchConfig(address=None))   # embedded local Ray
        dispatcher.start()
        job_id = dispatcher.submit(ReconstructionJob(inp=inp, key="object-3"), on_done=lambda job_id, result: ...)
        dispatcher.stats().flat()
        dispatcher.shutdown()

    Callbacks run on the collector thread: they must return quickly (hand the result to another thread or queue).
    """

    def __init__(self, config: DispatchConfig | None = None) -> None:
        self.config = config or DispatchConfig()
        self.config.validate()
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = DispatcherState.STOPPED
        self._state_reason = "not started"
        self._queue: collections.deque[_Record] = collections.deque()
        self._records: dict[int, _Record] = {}
        self._outbox: list[tuple[_Record, JobResult]] = []
        self._slots: list[_Slot] = []
        self._down_reason: dict[str, str] = {}
        self._owns_ray = False
        self._probe_address = ""
        self._raylet_address = ""
        self._last_probe = 0.0
        self._probe_failures = 0
        self._counts: collections.Counter[str] = collections.Counter()
        self._failed_by_reason: collections.Counter[str] = collections.Counter()
        self._rejected_by_reason: collections.Counter[str] = collections.Counter()
        window = self.config.latency_window
        self._lat_total: collections.deque[float] = collections.deque(maxlen=window)
        self._lat_queue: collections.deque[float] = collections.deque(maxlen=window)
        self._lat_run: collections.deque[float] = collections.deque(maxlen=window)
        self.timeline: dict[str, float] = {}
        """monotonic stamps of the latest (re)connection's stages (see :mod:`z123_ros.dispatch.timeline`)."""
        self._shared = SharedArrays()
        """The large input arrays of the jobs in flight, each put into Ray's object store once."""

    # ------------------------------------------------------------------------------------------------ public API

    @property
    def state(self) -> DispatcherState:
        return self._state

    @property
    def state_reason(self) -> str:
        """Why the dispatcher is in its state (e.g. the connection error while DEGRADED)."""
        return self._state_reason

    def prepare(self, process: Any = None) -> None:
        """Nothing to start ahead of :meth:`start` in process (SupervisedDispatcher starts its process here); a
        ``process`` started for an isolated dispatcher (supervisor.DispatchProcess) is closed."""
        if process is not None:
            process.close()

    def start(self, wait_s: float | None = None) -> DispatcherState:
        """Start the collector thread; wait until connected and the actors are warm, or degraded, or ``wait_s``
        (default ``connect_timeout_s``; 0 = do not wait) passed. Returns the state then; never raises for an
        unreachable cluster."""
        with self._lock:
            if self._thread is not None:
                return self._state
            self._stopping.clear()
            self._set_state(DispatcherState.CONNECTING, "starting")
            self._thread = threading.Thread(target=self._run, name="z123-dispatch", daemon=True)
            self._thread.start()
        if wait_s == 0:
            return self._state  # the caller waits itself (e.g. the dispatch child, for READY without the warm-up)
        self.wait_ready(self.config.connect_timeout_s if wait_s is None else wait_s)
        if self._state is not DispatcherState.READY:
            logger.warning("dispatcher is %s: %s", self._state.value, self._state_reason)
        return self._state

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until READY with every actor warm (or down), or DEGRADED; True if READY."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                starting = any(s.state == "starting" for s in self._slots)
                if self._state is DispatcherState.READY and not starting:
                    return True
                if self._state in (DispatcherState.DEGRADED, DispatcherState.STOPPED):
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))

    def wait_while(self, state: DispatcherState, timeout_s: float | None = None) -> DispatcherState:
        """Block while the state is ``state`` (or until ``timeout_s``); returns the state then."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._lock:
            while self._state is state:
                remaining = 1.0 if deadline is None else deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(min(remaining, 1.0))
            return self._state

    def submit(self, job: Job, on_done: Callable[[int, JobResult], None] | None = None) -> int:
        """Queue ``job``; ``on_done(job_id, JobResult)`` is called exactly once, on the collector thread.

        Raises:
            JobRejectedError: not accepted (reason: queue_full, degraded, not_ready, no_workers, stopped, bad_job).
        """
        kind = getattr(job, "kind", "")
        if not isinstance(job, Job) or not is_kind(kind):
            self._reject("bad_job", f"submit() takes a Job subclass (ReconstructionJob, ...), got {type(job).__name__}")
        try:
            head, arrays = pack(job)  # here, not in the collector: the caller's thread pickles its own job
        except Exception as exc:  # noqa: BLE001  (whatever pickling raises, the job cannot travel)
            self._reject("bad_job", f"the job cannot be pickled: {type(exc).__name__}: {exc}")
        now = time.monotonic()
        timeout = job.timeout_s if job.timeout_s is not None else self.config.job_timeout_s
        with self._lock:
            if self._state is not DispatcherState.READY:
                reason = {DispatcherState.DEGRADED: "degraded", DispatcherState.STOPPED: "stopped"}.get(
                    self._state, "not_ready"
                )
                self._reject(reason, f"dispatcher is {self._state.value}: {self._state_reason}")
            if self.config.pool(kind).num_actors == 0:
                self._reject("no_workers", f"no {kind} actors are configured (dispatch.{kind}.num_actors = 0)")
            if kind in self._down_reason:
                self._reject("no_workers", f"every {kind} actor failed to start: {self._down_reason[kind]}")
            record = _Record(next(_JOB_IDS), job, on_done, now, now + timeout, head=head, arrays=arrays)
            replaced = self._queued_with_key(job.key) if job.key is not None else None
            if replaced is not None and (self.config.replace_same_key or self._full()):
                self._queue[self._queue.index(replaced)] = record
                self._finish(replaced, reason="superseded", error=f"replaced by job {record.job_id}")
            elif self._full():
                self._reject("queue_full", f"{self.config.max_in_flight} jobs in flight (dispatch.max_in_flight)")
            else:
                self._queue.append(record)
            self._records[record.job_id] = record
            self._shared.acquire(record.arrays)
            self._counts["submitted"] += 1
        self._wake.set()
        return record.job_id

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """:meth:`SupervisedDispatcher.batch`'s counterpart: in this process the jobs of a block share their arrays
        as they are (each is put into the object store once), so there is nothing to hold back."""
        yield

    def cancel(self, job_id: int) -> bool:
        """End a queued or running job with ``cancelled``; False if it already finished (or never existed)."""
        with self._lock:
            record = self._records.get(job_id)
            if record is None:
                return False
            record.cancel_requested = True
            if record.slot is None:
                self._queue.remove(record)
                self._finish(record, reason="cancelled", error="cancelled before it started")
            else:
                slot = record.slot
                slot.record, slot.orphan_deadline = None, record.deadline
                self._finish(record, reason="cancelled", error="cancelled while running; its result is dropped")
        self._wake.set()
        return True

    def stats(self) -> DispatchStats:
        with self._lock:
            running = sum(1 for r in self._records.values() if r.slot is not None)

            def pct(values: collections.deque[float], q: float) -> float:
                return float(np.percentile(np.fromiter(values, float), q)) if values else float("nan")

            latency = {
                "total_p50": pct(self._lat_total, 50),
                "total_p95": pct(self._lat_total, 95),
                "total_max": max(self._lat_total, default=float("nan")),
                "queue_p50": pct(self._lat_queue, 50),
                "run_p50": pct(self._lat_run, 50),
            }
            return DispatchStats(
                state=self._state.value,
                state_reason=self._state_reason,
                address=self.config.address or "embedded",
                queued=len(self._queue),
                running=running,
                in_flight=len(self._records),
                submitted=self._counts["submitted"],
                completed=self._counts["completed"],
                failed=self._counts["failed"],
                rejected=self._counts["rejected"],
                retried=self._counts["retried"],
                actor_deaths=self._counts["actor_deaths"],
                actors_ready=sum(1 for s in self._slots if s.state in ("idle", "busy")),
                actors_total=len(self._slots),
                failed_by_reason=dict(self._failed_by_reason),
                rejected_by_reason=dict(self._rejected_by_reason),
                latency_s=latency,
                startup_s=breakdown(self.timeline),
            )

    def startup_stamps(self) -> dict[str, float]:
        """monotonic stamps of the latest (re)connection's stages (:mod:`z123_ros.dispatch.timeline`), with
        ``ready`` (jobs accepted) and ``warm`` (every actor warm) once reached."""
        with self._lock:
            return dict(self.timeline)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return [WorkerInfo(s.kind, s.index, s.state, s.pid, s.deaths, s.replacements, s.error) for s in self._slots]

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop the collector, end unfinished jobs with ``shutdown``, kill this dispatcher's actors and stop Ray
        if this dispatcher started or joined it. Idempotent."""
        thread = self._thread
        if thread is None:
            return
        self._stopping.set()
        self._wake.set()
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning("dispatcher thread did not stop within %.0f s (a Ray call hangs); abandoning it", timeout_s)
        with self._lock:
            self._thread = None
            self._set_state(DispatcherState.STOPPED, "shut down")

    def __enter__(self) -> Dispatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------------------------------------ helpers
    # _full, _queued_with_key, _set_state, _finish and _check_pool_down expect self._lock held (it is reentrant).

    def _reject(self, reason: str, message: str) -> None:
        with self._lock:
            self._counts["rejected"] += 1
            self._rejected_by_reason[reason] += 1
        raise JobRejectedError(message, reason)

    def _full(self) -> bool:
        return len(self._records) >= self.config.max_in_flight

    def _queued_with_key(self, key: str) -> _Record | None:
        return next((r for r in self._queue if r.job.key == key), None)

    def _set_state(self, state: DispatcherState, reason: str) -> None:
        if state is not self._state or reason != self._state_reason:
            log = logger.warning if state is DispatcherState.DEGRADED else logger.info
            log("dispatcher %s: %s", state.value, reason)
        self._state, self._state_reason = state, reason
        self._lock.notify_all()

    def _finish(
        self,
        record: _Record,
        *,
        value: Any = None,
        reason: str = "",
        error: str = "",
        worker_s: float = 0.0,
        pid: int = 0,
    ) -> None:
        """Record the outcome (lock held) and queue the callback for the collector thread."""
        if self._records.pop(record.job_id, None) is None:
            return
        self._shared.release(record.arrays)
        now = time.monotonic()
        ok = not reason
        timings = JobTimings(
            queue_s=(record.first_started or now) - record.submitted,
            run_s=now - record.started if record.started is not None else 0.0,
            total_s=now - record.submitted,
            worker_s=worker_s,
        )
        record.slot = None
        result = JobResult(record.job_id, ok, value, reason, error, timings, record.attempts, pid)
        if ok:
            self._counts["completed"] += 1
            self._lat_total.append(timings.total_s)
            self._lat_queue.append(timings.queue_s)
            self._lat_run.append(timings.run_s)
        else:
            self._counts["failed"] += 1
            self._failed_by_reason[reason] += 1
        self._outbox.append((record, result))

    def _deliver(self) -> None:
        """Run the queued callbacks (collector thread, lock NOT held: callbacks may call submit/cancel/stats)."""
        with self._lock:
            outbox, self._outbox = self._outbox, []
        for record, result in outbox:
            if record.on_done is None:
                continue
            try:
                record.on_done(record.job_id, result)
            except Exception:
                logger.exception("on_done callback of job %d raised; the dispatcher goes on", record.job_id)

    # ------------------------------------------------------------------------------------------------ collector

    def _run(self) -> None:
        backoff = self.config.reconnect_backoff_s
        connected = False
        while not self._stopping.is_set():
            if not connected:
                connected = self._connect()
                if not connected:
                    self._deliver()
                    self._wake.wait(backoff)
                    self._wake.clear()
                    backoff = min(2 * backoff, self.config.reconnect_backoff_max_s)
                    continue
                backoff = self.config.reconnect_backoff_s
            try:
                self._step()
            except _ClusterLostError as exc:
                self._disconnect(f"cluster lost: {exc}")
                connected = False
            except Exception as exc:
                # A Ray call failed in a way the step does not handle: start over rather than stop serving.
                logger.exception("dispatcher collector step failed; reconnecting")
                self._disconnect(f"internal error: {type(exc).__name__}: {exc}")
                connected = False
            self._deliver()
        self._teardown()
        self._deliver()

    def _connect(self) -> bool:
        """Join the configured cluster (or start the embedded Ray) and create the actors; False -> DEGRADED."""
        import ray

        cfg = self.config
        if cfg.address and cfg.address != "auto":
            error = probe_tcp(cfg.address)
            if error:
                with self._lock:
                    self._set_state(DispatcherState.DEGRADED, f"Ray cluster at {cfg.address} unreachable: {error}")
                return False
        try:
            self.timeline = {"configured": time.monotonic()}
            _apply_ray_environment(cfg)
            if ray.is_initialized():
                logger.info("Ray is already initialised in this process; the dispatcher uses it and leaves it running")
            else:
                skip = head_services_to_skip(cfg.lean_head and cfg.embedded, cfg.dashboard, cfg.log_to_driver)
                with lean_head(skip), loopback_node(cfg.embedded) as node_ip:
                    ray.init(**self._init_kwargs(node_ip))
                self._owns_ray = True
            self._probe_address = cfg.address if cfg.address and cfg.address != "auto" else ""
            if not self._probe_address:
                self._probe_address = ray.get_runtime_context().gcs_address
            self._raylet_address = _raylet_address()
            self.timeline["ray_up"] = time.monotonic()
            self._create_slots()
            self.timeline["actors_created"] = time.monotonic()
        except Exception as exc:
            # ray.init raises ConnectionError, RuntimeError, TimeoutError, ValueError... depending on the failure.
            logger.debug("ray connect failed", exc_info=True)
            self._disconnect(f"could not start or join Ray ({cfg.address or 'embedded'}): {type(exc).__name__}: {exc}")
            return False
        with self._lock:
            where = f"joined {cfg.address}" if cfg.address else f"embedded Ray at {self._probe_address}"
            self._set_state(DispatcherState.READY, where)
            self.timeline["ready"] = time.monotonic()
        self._last_probe = time.monotonic()
        self._probe_failures = 0
        return True

    def _init_kwargs(self, node_ip: str | None = None) -> dict[str, Any]:
        """ray.init's arguments; ``node_ip``: the embedded head's node address (its listeners' address,
        :func:`~z123_ros.dispatch.head.loopback_node`), unused when a cluster is joined."""
        cfg = self.config
        kwargs: dict[str, Any] = {
            "namespace": cfg.namespace,
            "log_to_driver": cfg.log_to_driver,
            "configure_logging": False,
            "include_dashboard": False,
        }
        if cfg.address:
            kwargs["address"] = cfg.address
            if cfg.address.startswith("ray://"):
                kwargs.pop("include_dashboard")
            return kwargs
        kwargs.update(
            num_cpus=cfg.num_cpus,
            num_gpus=cfg.num_gpus,
            object_store_memory=cfg.object_store_memory_mb * 1024 * 1024,
        )
        if cfg.dashboard:
            kwargs.update(include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=cfg.dashboard_port)
        if cfg.temp_dir:
            kwargs["_temp_dir"] = cfg.temp_dir
        if node_ip:
            kwargs["_node_ip_address"] = node_ip
        return kwargs

    def _create_slots(self) -> None:
        with self._lock:
            self._slots = []
            self._down_reason = {}
            for kind, pool in self.config.pools.items():
                for index in range(pool.num_actors):
                    self._slots.append(_Slot(kind, index))
        for slot in self._slots:
            self._start_actor(slot, new=True)

    def _start_actor(self, slot: _Slot, new: bool) -> None:
        """Create the actor (new) or reuse the restarting one, and send its warm-up call."""
        pool = self.config.pool(slot.kind)
        if new:
            options = actor_options(pool, self.config.max_restarts)
            slot.handle = _actor_class().options(**options).remote(get_kind(slot.kind), pool)
            slot.deaths = 0
        slot.state, slot.phase, slot.record, slot.orphan_deadline = "starting", "warmup", None, None
        slot.ref = slot.handle.warmup.remote()

    def _disconnect(self, reason: str) -> None:
        """End every job with ``cluster_lost``, forget the actors, drop Ray (if ours) and go DEGRADED."""
        import ray

        with self._lock:
            self._set_state(DispatcherState.DEGRADED, reason)
            for record in list(self._records.values()):
                self._finish(record, reason="cluster_lost", error=reason)
            self._queue.clear()
            slots, self._slots = self._slots, []
        if not self._owns_ray and ray.is_initialized():
            self._kill_actors(slots)  # someone else's Ray stays up: do not leave our actors behind in it
        if self._owns_ray and ray.is_initialized():
            t0 = time.monotonic()
            ray.shutdown()
            logger.info("disconnected from Ray in %.1f s", time.monotonic() - t0)
        self._owns_ray = False

    def _teardown(self) -> None:
        import ray

        with self._lock:
            for record in list(self._records.values()):
                self._finish(record, reason="shutdown", error="the dispatcher was shut down")
            self._queue.clear()
            slots, self._slots = self._slots, []
        if ray.is_initialized():
            self._kill_actors(slots)
            if self._owns_ray:
                ray.shutdown()
        self._owns_ray = False

    @staticmethod
    def _kill_actors(slots: list[_Slot]) -> None:
        import ray

        for slot in slots:
            if slot.handle is not None:
                try:
                    ray.kill(slot.handle, no_restart=True)
                except Exception as exc:
                    logger.debug("killing a %s actor: %s", slot.kind, exc)

    def _step(self) -> None:
        import ray

        now = time.monotonic()
        self._check_health(now)
        self._enforce_deadlines(now)
        for slot in self._slots:
            if slot.warmup_at is not None and now >= slot.warmup_at:
                slot.warmup_at = None
                slot.ref = slot.handle.warmup.remote()
        self._assign()
        refs = [s.ref for s in self._slots if s.ref is not None]
        if not refs:
            self._wake.wait(self._idle_wait(now))
            self._wake.clear()
            return
        ready, _ = ray.wait(refs, num_returns=1, timeout=self.config.wait_slice_s)
        if ready and len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        by_ref = {s.ref: s for s in self._slots if s.ref is not None}
        for ref in ready:
            slot = by_ref.get(ref)
            if slot is not None:
                self._complete(slot)

    def _idle_wait(self, now: float) -> float:
        wait = self.config.health_check_period_s
        with self._lock:
            deadlines = [r.deadline for r in self._records.values()]
        deadlines += [s.warmup_at for s in self._slots if s.warmup_at is not None]
        if deadlines:
            wait = min(wait, max(0.0, min(deadlines) - now))
        return max(wait, 0.001)

    def _check_health(self, now: float) -> None:
        exited = _embedded_exit() if self._owns_ray else ""
        if exited:
            # Our own embedded GCS or raylet is gone (not a guess from a refused connection): lost at once.
            raise _ClusterLostError(exited)
        if now - self._last_probe < self.config.health_check_period_s:
            return
        self._last_probe = now
        # The raylet too, not only the GCS: a driver whose raylet died is useless (and Ray ends it at its next call).
        error, what = "", ""
        for name, address in (("Ray head (GCS)", self._probe_address), ("local raylet", self._raylet_address)):
            error, what = (probe_tcp(address) if address else ""), name
            if error:
                break
        if not error:
            self._probe_failures = 0
            return
        self._probe_failures += 1
        logger.warning("%s probe failed (%d in a row): %s", what, self._probe_failures, error)
        if self._probe_failures >= self.config.health_check_failures:
            raise _ClusterLostError(f"{what} unreachable: {error}")

    def _enforce_deadlines(self, now: float) -> None:
        import ray

        restart: list[_Slot] = []
        with self._lock:
            for record in list(self._queue):
                if now >= record.deadline:
                    self._queue.remove(record)
                    self._finish(record, reason="timeout", error=self._timeout_message(record, "queued"))
            for slot in self._slots:
                record = slot.record
                if record is not None and now >= record.deadline:
                    self._finish(record, reason="timeout", error=self._timeout_message(record, "running"))
                    restart.append(slot)
                elif record is None and slot.orphan_deadline is not None and now >= slot.orphan_deadline:
                    restart.append(slot)
        for slot in restart:
            # The call cannot be interrupted inside the actor's thread: restart the process to free the actor.
            logger.warning("%s actor %d still busy past a job deadline: restarting it", slot.kind, slot.index)
            try:
                ray.cancel(slot.ref)
                ray.kill(slot.handle, no_restart=False)
            except Exception as exc:
                # Already dead or restarting: the warm-up call below finds out which.
                logger.debug("restarting %s actor %d: %s", slot.kind, slot.index, exc)
            with self._lock:
                self._counts["actor_deaths"] += 1
                slot.deaths += 1
                slot.record = None
            self._start_actor(slot, new=slot.deaths > self.config.max_restarts)

    @staticmethod
    def _timeout_message(record: _Record, where: str) -> str:
        limit = record.deadline - record.submitted
        return f"no result within {limit:.3g} s of submit (job was {where}, attempt {record.attempts})"

    def _assign(self) -> None:
        """Hand queued jobs (FIFO per kind) to idle actors; each large input array goes into the object store once,
        however many jobs carry it (:mod:`z123_ros.dispatch.payload`)."""
        import ray

        idle = [s for s in self._slots if s.state == "idle"]
        if not idle:
            return
        with self._lock:
            starts: list[tuple[_Slot, _Record, list[SharedArray]]] = []
            for record in list(self._queue):
                slot = next((s for s in idle if s.kind == record.job.kind), None)
                if slot is None:
                    continue
                idle.remove(slot)
                self._queue.remove(record)
                now = time.monotonic()
                record.attempts += 1
                record.started = now
                record.first_started = record.first_started or now
                record.slot = slot
                slot.state, slot.phase, slot.record = "busy", "job", record
                starts.append((slot, record, self._shared.entries(record.arrays)))
        for slot, record, entries in starts:
            try:
                # The job's large arrays as arguments of their own: Ray hands them to the actor from the object
                # store without a copy, and the other jobs of the same frame reuse the colour and depth puts.
                slot.ref = slot.handle.run_packed.remote(record.head, *self._shared.refs(entries, ray.put))
            except ray.exceptions.ObjectStoreFullError as exc:
                with self._lock:
                    slot.state, slot.record, slot.ref = "idle", None, None
                    self._finish(record, reason="object_store_full", error=str(exc))

    def _complete(self, slot: _Slot) -> None:
        """A slot's warm-up or job reference is ready: ray.get does not block here."""
        import ray

        ref, phase = slot.ref, slot.phase
        slot.ref = None
        try:
            reply: WorkerReply = ray.get(ref)  # ready: ray.wait fetched it already
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            if phase == "warmup" and isinstance(exc, ray.exceptions.ActorUnavailableError):
                # Ray is restarting the actor (after a death already counted): ask again shortly.
                slot.warmup_at = time.monotonic() + _WARMUP_RETRY_S
                return
            self._on_actor_death(slot, exc)
            return
        except ray.exceptions.TaskCancelledError:
            with self._lock:
                slot.state, slot.record, slot.orphan_deadline = "idle", None, None
            return
        except ray.exceptions.RayError as exc:
            reply = WorkerReply(ok=False, reason="ray_error", message=f"{type(exc).__name__}: {exc}")
        with self._lock:
            if phase == "warmup":
                self._on_warmup(slot, reply)
                return
            record, slot.record, slot.orphan_deadline = slot.record, None, None
            slot.state = "idle"
            slot.pid = reply.pid or slot.pid
            slot.failures_in_row = 0
            if record is None:
                return  # the job was cancelled or timed out meanwhile: its result is dropped
            if reply.ok:
                self._finish(record, value=reply.value, worker_s=reply.run_s, pid=reply.pid)
            else:
                self._finish(record, reason=reply.reason, error=reply.message, worker_s=reply.run_s, pid=reply.pid)

    def _on_warmup(self, slot: _Slot, reply: WorkerReply) -> None:
        if reply.ok:
            slot.state, slot.pid, slot.failures_in_row, slot.error = "idle", reply.pid, 0, ""
            self._stamp_warm(reply.value)
            logger.info("%s actor %d ready (pid %d, warm-up %.2f s)", slot.kind, slot.index, reply.pid, reply.run_s)
        else:
            # A failed build or warm-up (e.g. missing weights) is deterministic: retrying would fail the same way.
            slot.state, slot.error = "down", f"{reply.reason}: {reply.message}"
            logger.error("%s actor %d failed to start: %s", slot.kind, slot.index, slot.error)
            self._check_pool_down(slot.kind)
        if not any(s.state == "starting" for s in self._slots):
            self.timeline.setdefault("warm", time.monotonic())
        self._lock.notify_all()

    def _stamp_warm(self, stamps: Any) -> None:
        """Timeline stamps of a successful warm-up (lock held): the earliest actor process start and worker build
        (the stamps the actor sent), the first warm actor."""
        for name in ("worker_started", "worker_built"):
            value = stamps.get(name) if isinstance(stamps, dict) else None
            if isinstance(value, float) and value == value:  # NaN where /proc is missing
                self.timeline[name] = min(self.timeline.get(name, value), value)
        self.timeline.setdefault("first_warm", time.monotonic())

    def _check_pool_down(self, kind: str) -> None:
        """When every actor of ``kind`` is down, fail its queued jobs and reject new ones (lock held)."""
        slots = [s for s in self._slots if s.kind == kind]
        if not slots or any(s.state != "down" for s in slots):
            return
        reason = slots[0].error
        self._down_reason[kind] = reason
        for record in [r for r in self._queue if r.job.kind == kind]:
            self._queue.remove(record)
            self._finish(record, reason="no_workers", error=f"every {kind} actor failed to start: {reason}")

    def _on_actor_death(self, slot: _Slot, exc: Exception) -> None:
        cfg = self.config
        message = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        with self._lock:
            self._counts["actor_deaths"] += 1
            slot.deaths += 1
            slot.failures_in_row += 1
            record, slot.record, slot.orphan_deadline = slot.record, None, None
            logger.warning("%s actor %d (pid %d) died: %s", slot.kind, slot.index, slot.pid, message)
            if record is not None:
                if record.attempts <= cfg.retries_on_worker_death:
                    record.slot, record.started = None, None
                    self._queue.appendleft(record)
                    self._counts["retried"] += 1
                else:
                    self._finish(record, reason="worker_died", error=f"worker died {record.attempts} times: {message}")
            if slot.failures_in_row > cfg.max_restarts:
                slot.state, slot.error = "down", f"worker_died: died {slot.failures_in_row} times in a row: {message}"
                self._check_pool_down(slot.kind)
                self._lock.notify_all()
                return
            replace = slot.deaths > cfg.max_restarts
            if replace:
                slot.replacements += 1
        self._start_actor(slot, new=replace)
