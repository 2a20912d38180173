"""SupervisedDispatcher: the Dispatcher's interface, with the Ray driver in a child process the node outlives.

Ray ends a driver process whose raylet dies, so the node must not be the driver. This class keeps the interface the
node uses (``start``, ``submit(job, on_done)``, ``cancel``, ``stats``, ``workers``, ``state``, ``shutdown``) and runs
the real :class:`~z123_ros.dispatch.dispatcher.Dispatcher` in ``python -m z123_ros.dispatch.child``, talking over
an anonymous socket pair (:mod:`z123_ros.dispatch.wire`: pickles only between these two processes, numpy arrays
out of band).

Threads: the supervisor thread starts the child, reads every message from it and runs the ``on_done`` callbacks
(the collector thread's role in Dispatcher: callbacks must return quickly); a sender thread writes to the child so
``submit`` never blocks on the socket. ``submit`` decides admission from the child's last report (state, queue,
workers), under a lock, without waiting for the child.

Policies on top of Dispatcher's (see its module docstring):

- Ray lost (the child reports it: GCS or raylet probe failed; or the child died, or sent nothing for
  ``child_silence_s``): state DEGRADED within about a second, new jobs rejected with ``degraded``, every process of
  the lost child's session (its embedded raylet, GCS, workers) killed, and a fresh child started: at once after a
  child that had been ready for at least ``reconnect_backoff_s``, else after a backoff (``reconnect_backoff_s``
  doubling up to ``reconnect_backoff_max_s``) so a Ray that cannot start is not retried in a tight loop.
- Standby (``standby_process``): once the current child's actors are warm and no job has been in flight for a
  second, the next child is started ahead of need (Python up, Ray imported, waiting for its config), so a restart
  skips Python's start and the imports.
- READY as soon as the child's Ray is up and its actors exist: jobs queue in the child until an actor is warm
  (``start`` and ``wait_ready`` still wait for the warm-up).
- Jobs in flight when Ray was lost are submitted again to the next child (``resubmit_lost_jobs``) until their
  deadline, then end with ``cluster_lost``. A rejection the child decides (a race with the admission here) ends the
  job through its callback with the rejection's reason.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from z123_ros.dispatch.config import DispatchConfig
from z123_ros.dispatch.dispatcher import (
    Dispatcher,
    DispatcherState,
    DispatchStats,
    JobRejectedError,
    JobResult,
    WorkerInfo,
)
from z123_ros.dispatch.kinds import get_kind, is_kind
from z123_ros.dispatch.timeline import breakdown
from z123_ros.dispatch.wire import Channel
from z123_ros.dispatch.workers import Job

logger = logging.getLogger(__name__)

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])

#: The standby dispatch process starts once the warm dispatcher has had no job in flight this long (seconds).
_STANDBY_IDLE_S = 1.0


@dataclass(eq=False)
class _Pending:
    job_id: int
    job: Job
    on_done: Callable[[int, JobResult], None] | None
    submitted: float
    deadline: float
    attempts: int = 0
    """Attempts in children before the current one (a resubmission adds the lost child's)."""
    lost: bool = False
    """Its child was lost: waiting for the next one (resubmit_lost_jobs)."""


class SupervisedDispatcher:
    """A Dispatcher in a supervised child process; same interface (see the module docstring)."""

    def __init__(self, config: DispatchConfig | None = None) -> None:
        self.config = config or DispatchConfig()
        self.config.validate()
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        self._outq: queue.Queue[tuple[Channel, tuple] | None] = queue.Queue()
        """(channel, message): a message meant for a child that is gone by the time it is sent is dropped."""
        self._state = DispatcherState.STOPPED
        self._state_reason = "not started"
        self._records: dict[int, _Pending] = {}
        self._ids = iter(range(1, 2**62))
        self._child: subprocess.Popen | None = None
        self._chan: Channel | None = None
        self._last_heard = 0.0
        self._child_stats: DispatchStats | None = None
        self._child_workers: list[WorkerInfo] = []
        self._ray_info: dict[str, Any] = {}
        self._base = collections.Counter()
        """retried / actor_deaths of the children before the current one."""
        self._counts: collections.Counter[str] = collections.Counter()
        self._failed_by_reason: collections.Counter[str] = collections.Counter()
        self._rejected_by_reason: collections.Counter[str] = collections.Counter()
        window = self.config.latency_window
        self._lat = {k: collections.deque(maxlen=window) for k in ("total", "queue", "run")}
        self._outbox: list[tuple[_Pending, JobResult]] = []
        self.lost_at: float | None = None
        """monotonic time the last Ray loss was noticed (failure drills measure recovery from it)."""
        self.ready_at: float | None = None
        """monotonic time the current child became ready."""
        self._stamps: dict[str, float] = {}
        """Start-up stamps of the current child (:mod:`z123_ros.dispatch.timeline`), from the loss of the last."""
        self._standby: tuple[subprocess.Popen, Channel] | None = None
        self._batching = threading.local()
        """``messages``: this thread's messages held until the end of its :meth:`batch` (None outside one)."""
        self._idle_since: float | None = None
        """monotonic time since which the warm dispatcher has had no job in flight (None: busy or not warm)."""

    # ------------------------------------------------------------------------------------------------ public API

    @property
    def state(self) -> DispatcherState:
        return self._state

    @property
    def state_reason(self) -> str:
        return self._state_reason

    @property
    def standby_pid(self) -> int | None:
        """Process id of the standby dispatch process once it is ready (Python up, Ray imported: its first message
        is waiting), None before. It is started once the actors are warm."""
        standby = self._standby
        if standby is None or standby[0].poll() is not None:
            return None
        try:
            return standby[0].pid if standby[1].poll(0) else None
        except (OSError, ValueError):  # closed meanwhile (a restart took it, or shutdown)
            return None

    def ray_info(self) -> dict[str, Any]:
        """The current child's Ray: driver_pid, session_id, gcs_address, raylet_address, gcs_server_pids,
        raylet_pids... ({} while none is ready)."""
        with self._lock:
            return dict(self._ray_info)

    def prepare(self, process: DispatchProcess | None = None) -> None:
        """Have the dispatch process ready ahead of :meth:`start`: ``process`` (started even before the config was
        known, see :class:`DispatchProcess`), else one started now. Python starts and imports Ray (0.4 s on the idle
        2-core machine) while the caller does other work (the node: its own imports and configure), and start()
        hands the config to a process that is ready. After start(), or when one is prepared already, ``process`` is
        closed; shutdown() ends the prepared one."""
        with self._lock:
            if self._thread is not None or self._standby is not None:
                if process is not None:
                    process.close()
                return
            if process is not None:
                if process.alive():
                    self._standby = process.take()
                    return
                process.close()  # it died before its config came: its socket goes, a fresh process replaces it
            try:
                # Not the job inputs' modules: the child imports them once Ray is up, while the actors warm up.
                # Imported here, they would delay ray.init by 0.4 s when start() follows at once (the node).
                self._standby = _popen_child()
            except OSError as exc:
                logger.warning("could not start the dispatch process ahead of need: %s", exc)

    def start(self, wait_s: float | None = None) -> DispatcherState:
        """Start the supervisor; wait until the child's dispatcher is ready with warm actors, or ``wait_s``
        (default ``connect_timeout_s``; 0 = do not wait). Never raises for an unreachable cluster: the state says
        DEGRADED."""
        with self._lock:
            if self._thread is not None:
                return self._state
            self._stopping.clear()
            self._set_state(DispatcherState.CONNECTING, "starting the dispatch process")
            self._sender = threading.Thread(target=self._send_loop, name="z123-dispatch-send", daemon=True)
            self._thread = threading.Thread(target=self._run, name="z123-dispatch-supervisor", daemon=True)
            self._sender.start()
            self._thread.start()
        if wait_s == 0:
            return self._state  # the caller does not wait (the node: Ray starts while it segments)
        self.wait_ready(self.config.connect_timeout_s if wait_s is None else wait_s)
        if self._state is not DispatcherState.READY:
            logger.warning("dispatcher is %s: %s", self._state.value, self._state_reason)
        return self._state

    def wait_ready(self, timeout_s: float) -> bool:
        """Wait until READY with every actor warm (or down), or ``timeout_s``; True if READY then."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                # No workers listed yet: the child's first stats after READY are still on their way.
                starting = not self._child_workers or any(w.state == "starting" for w in self._child_workers)
                if self._state is DispatcherState.READY and not starting:
                    return True
                if self._state in (DispatcherState.DEGRADED, DispatcherState.STOPPED):
                    return False
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))

    def submit(self, job: Job, on_done: Callable[[int, JobResult], None] | None = None) -> int:
        """Queue ``job``; ``on_done(job_id, JobResult)`` runs exactly once, on the supervisor thread.

        Raises:
            JobRejectedError: not accepted (reason: queue_full, degraded, not_ready, no_workers, stopped, bad_job).
        """
        kind = getattr(job, "kind", "")
        if not isinstance(job, Job) or not is_kind(kind):
            self._reject("bad_job", f"submit() takes a Job subclass (ReconstructionJob, ...), got {type(job).__name__}")
        now = time.monotonic()
        timeout = job.timeout_s if job.timeout_s is not None else self.config.job_timeout_s
        with self._lock:
            self._admit(job)
            record = _Pending(next(self._ids), job, on_done, now, now + timeout)
            self._records[record.job_id] = record
            self._counts["submitted"] += 1
            self._post(("submit", record.job_id, job))
        return record.job_id

    def cancel(self, job_id: int) -> bool:
        """End a job with ``cancelled`` (its child drops or discards it); False if it already finished."""
        with self._lock:
            record = self._records.get(job_id)
            if record is None:
                return False
            self._finish(record, JobResult(job_id, False, reason="cancelled", error="cancelled by the caller"))
            self._post(("cancel", job_id))
        return True

    def stats(self) -> DispatchStats:
        with self._lock:
            child = self._child_stats
            ready = self._state is DispatcherState.READY and child is not None

            def pct(name: str, q: float) -> float:
                values = self._lat[name]
                return float(np.percentile(np.fromiter(values, float), q)) if values else float("nan")

            return DispatchStats(
                state=self._state.value,
                state_reason=self._state_reason,
                address=self.config.address or "embedded",
                queued=child.queued if ready else 0,
                running=child.running if ready else 0,
                in_flight=len(self._records),
                submitted=self._counts["submitted"],
                completed=self._counts["completed"],
                failed=self._counts["failed"],
                rejected=self._counts["rejected"],
                retried=self._base["retried"] + (child.retried if child else 0),
                actor_deaths=self._base["actor_deaths"] + (child.actor_deaths if child else 0),
                actors_ready=child.actors_ready if ready else 0,
                actors_total=child.actors_total if child else 0,
                failed_by_reason=dict(self._failed_by_reason),
                rejected_by_reason=dict(self._rejected_by_reason),
                latency_s={
                    "total_p50": pct("total", 50),
                    "total_p95": pct("total", 95),
                    "total_max": max(self._lat["total"], default=float("nan")),
                    "queue_p50": pct("queue", 50),
                    "run_p50": pct("run", 50),
                },
                ray_restarts=self._counts["ray_restarts"],
                resubmitted=self._counts["resubmitted"],
                standby=int(self.standby_pid is not None),
                startup_s=breakdown(self._stamps),
            )

    def startup_stamps(self) -> dict[str, float]:
        """monotonic stamps of the current child's start (:mod:`z123_ros.dispatch.timeline`), from the loss of the
        previous one; ``ready`` (jobs accepted) and ``warm`` (every actor warm) once reached."""
        with self._lock:
            return dict(self._stamps)

    def workers(self) -> list[WorkerInfo]:
        with self._lock:
            return list(self._child_workers) if self._state is DispatcherState.READY else []

    def shutdown(self, timeout_s: float = 60.0) -> None:
        """Stop the child (its actors and embedded Ray), end unfinished jobs with ``shutdown``. Idempotent."""
        thread = self._thread
        if thread is None:
            self._drop_standby()  # prepared, never started
            return
        self._stopping.set()
        with self._lock:
            self._post(("shutdown",))
        thread.join(timeout_s)
        if thread.is_alive():
            logger.warning("dispatch supervisor did not stop within %.0f s; killing its child", timeout_s)
            self._kill_child()
        self._outq.put(None)
        if self._sender is not None:
            self._sender.join(5.0)
        with self._lock:
            for record in list(self._records.values()):
                self._finish(record, JobResult(record.job_id, False, reason="shutdown", error="dispatcher shut down"))
            self._thread = None
            self._set_state(DispatcherState.STOPPED, "shut down")
        self._deliver()

    def __enter__(self) -> SupervisedDispatcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    # ------------------------------------------------------------------------------------------------ admission

    def _admit(self, job: Job) -> None:
        """Raise JobRejectedError unless ``job`` may be queued now (lock held)."""
        if self._state is not DispatcherState.READY:
            reason = {DispatcherState.DEGRADED: "degraded", DispatcherState.STOPPED: "stopped"}.get(
                self._state, "not_ready"
            )
            self._reject(reason, f"dispatcher is {self._state.value}: {self._state_reason}")
        kind = job.kind
        if self.config.pool(kind).num_actors == 0:
            self._reject("no_workers", f"no {kind} actors are configured (dispatch.{kind}.num_actors = 0)")
        pool = [w for w in self._child_workers if w.kind == kind]
        if pool and all(w.state == "down" for w in pool):
            self._reject("no_workers", f"every {kind} actor failed to start: {pool[0].error}")
        same_key = job.key is not None and any(r.job.key == job.key for r in self._records.values())
        if len(self._records) >= self.config.max_in_flight and not same_key:
            self._reject("queue_full", f"{self.config.max_in_flight} jobs in flight (dispatch.max_in_flight)")

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Jobs this thread submits inside the block go to the dispatch process in one message, at the block's end:
        the arrays they share (one camera frame's colour and depth images, 2.15 MB at VGA) are pickled and sent once
        (pickle's memo) instead of once per job, and arrive there as the same array objects, which the dispatcher
        puts into Ray's object store once (:mod:`z123_ros.dispatch.payload`)."""
        self._batching.messages = []
        try:
            yield
        finally:
            messages, self._batching.messages = self._batching.messages, None
            with self._lock:
                for chan, group in itertools.groupby(messages, key=lambda item: item[0]):
                    group_messages = [message for _, message in group]
                    one = group_messages[0] if len(group_messages) == 1 else ("batch", group_messages)
                    self._outq.put((chan, one))

    def _post(self, message: tuple) -> None:
        """Queue ``message`` for the current child (lock held); dropped if that child is gone before it is sent.
        Inside :meth:`batch` (this thread), held until the batch's end."""
        if self._chan is None:
            return
        batching = getattr(self._batching, "messages", None)
        if batching is not None:
            batching.append((self._chan, message))
        else:
            self._outq.put((self._chan, message))

    def _reject(self, reason: str, message: str) -> None:
        with self._lock:
            self._counts["rejected"] += 1
            self._rejected_by_reason[reason] += 1
        raise JobRejectedError(message, reason)

    def _set_state(self, state: DispatcherState, reason: str) -> None:
        if state is not self._state or reason != self._state_reason:
            log = logger.warning if state is DispatcherState.DEGRADED else logger.info
            log("dispatcher %s: %s", state.value, reason)
        self._state, self._state_reason = state, reason
        self._lock.notify_all()

    def _finish(self, record: _Pending, result: JobResult) -> None:
        """Record the outcome (lock held) and queue the callback for the supervisor thread."""
        if self._records.pop(record.job_id, None) is None:
            return
        now = time.monotonic()
        result = replace(
            result,
            job_id=record.job_id,
            attempts=record.attempts + result.attempts,
            timings=replace(result.timings, total_s=now - record.submitted),
        )
        if result.ok:
            self._counts["completed"] += 1
            self._lat["total"].append(result.timings.total_s)
            self._lat["queue"].append(result.timings.queue_s)
            self._lat["run"].append(result.timings.run_s)
        else:
            self._counts["failed"] += 1
            self._failed_by_reason[result.reason] += 1
        self._outbox.append((record, result))

    def _deliver(self) -> None:
        """Run the queued callbacks (lock NOT held: callbacks may call submit/cancel/stats)."""
        with self._lock:
            outbox, self._outbox = self._outbox, []
        for record, result in outbox:
            if record.on_done is None:
                continue
            try:
                record.on_done(record.job_id, result)
            except Exception:
                logger.exception("on_done callback of job %d raised; the dispatcher goes on", record.job_id)

    # ------------------------------------------------------------------------------------------------ the child

    def _run(self) -> None:
        cfg = self.config
        backoff = cfg.reconnect_backoff_s
        while not self._stopping.is_set():
            self.ready_at = None
            reason = self._serve_child()
            if self._stopping.is_set():
                break
            self._on_lost(reason)
            if self.ready_at is not None:
                # The lost child worked (Ray died under it): a new outage, and every second counts, so restart at
                # once, unless it died right after it became ready (a Ray that dies again and again). A child that
                # never became ready is retried after a backoff that doubles: no tight loop on a Ray that cannot start.
                backoff = cfg.reconnect_backoff_s
                if self.lost_at - self.ready_at >= cfg.reconnect_backoff_s:
                    continue
            self._wait_backoff(backoff)
            backoff = min(2 * backoff, cfg.reconnect_backoff_max_s)
        self._stop_child()
        self._drop_standby()
        self._deliver()

    def _wait_backoff(self, backoff: float) -> None:
        """Sleep ``backoff`` s before the next child, ending lost jobs whose deadline passes meanwhile."""
        end = time.monotonic() + backoff
        while not self._stopping.is_set() and time.monotonic() < end:
            self._expire_lost(time.monotonic())
            self._deliver()
            self._stopping.wait(min(0.1, max(0.0, end - time.monotonic())))

    def _serve_child(self) -> str:
        """Start one child and relay its messages until it is lost; returns why it was lost."""
        try:
            self._spawn_child()
        except OSError as exc:
            return f"could not start the dispatch process: {exc}"
        chan = self._chan
        if chan is None:
            return "the dispatch process went away at start"
        heard = False
        while not self._stopping.is_set():
            # Until its first message the child is still starting Python (seconds on a loaded machine).
            silence = self.config.child_silence_s if heard else self.config.connect_timeout_s
            try:
                if not chan.poll(0.25):
                    if time.monotonic() - self._last_heard > silence:
                        return f"the dispatch process sent nothing for {silence:.0f} s (hung)"
                    self._expire_lost(time.monotonic())
                    self._deliver()
                    continue
                message = chan.recv()
            except (EOFError, OSError):
                return self._death_reason()
            self._last_heard, heard = time.monotonic(), True
            lost = self._handle(message)
            self._deliver()
            if lost:
                return lost
            self._maybe_start_standby()
        return "shut down"

    def _spawn_child(self) -> None:
        """Make the standby child (or a new one) the current child: send it the config."""
        standby, self._standby = self._standby, None
        if standby is not None and standby[0].poll() is None:
            child, chan = standby
            how = "standby dispatch process"
        else:
            child, chan = _popen_child()
            how = "dispatch process"
        self._child = child
        try:
            # First, before any job can be queued for this child. The kinds travel with the config: the child knows
            # a kind registered only here (a diagnostic or test kind) without importing anything itself.
            chan.send(("config", self.config, [get_kind(kind) for kind in self.config.pools]))
        except OSError:
            chan.close()
            raise
        with self._lock:
            self._chan = chan
            self._stamps["spawned"] = self._last_heard = time.monotonic()
        logger.info("%s %d started", how, child.pid)

    def _maybe_start_standby(self) -> None:
        """Start the next child ahead of need once the current one is warm and no job has been in flight for
        ``_STANDBY_IDLE_S``: its start (Python, Ray and the job inputs' imports, ~1.5 CPU-s) must not take the cores
        from the first reconstructions, which come right after the warm-up (on 2 cores it made the first objects
        0.3-0.5 s slower, docs/node/latency.md)."""
        if not self.config.standby_process or self._standby is not None or self._stopping.is_set():
            return
        now = time.monotonic()
        with self._lock:
            workers = self._child_workers
            warm = self._state is DispatcherState.READY and workers and all(w.state != "starting" for w in workers)
            if not warm or self._records:
                self._idle_since = None
                return
            if self._idle_since is None:
                self._idle_since = now
            idle = now - self._idle_since >= _STANDBY_IDLE_S
        if idle:
            try:
                self._standby = _popen_child(self.config.job_input_modules())
            except OSError as exc:
                logger.warning("could not start a standby dispatch process: %s", exc)

    def _drop_standby(self) -> None:
        standby, self._standby = self._standby, None
        if standby is not None:
            _end_waiting_child(*standby)

    def _death_reason(self) -> str:
        child = self._child
        code = child.wait(timeout=5.0) if child is not None else None
        return f"the dispatch process exited (status {code})"

    def _handle(self, message: tuple) -> str:
        """Apply one child message; returns a loss reason when the child reports Ray lost, else ""."""
        kind = message[0]
        with self._lock:
            if kind == "stats":
                self._child_stats, self._child_workers = message[1], message[2]
                self._lock.notify_all()
            elif kind == "timeline":
                self._stamps.update(message[1])
            elif kind == "ray":
                self._on_ready(message[1])
            elif kind == "done":
                record = self._records.get(message[1])
                result: JobResult = message[2]
                if record is not None and result.reason == "cluster_lost" and self.config.resubmit_lost_jobs:
                    record.lost, record.attempts = True, record.attempts + result.attempts
                elif record is not None:
                    self._finish(record, result)
            elif kind == "rejected":
                record = self._records.get(message[1])
                if record is not None:
                    self._finish(record, JobResult(message[1], False, reason=message[2], error=message[3]))
            elif kind == "lost":
                return f"Ray lost: {message[1]}"
        return ""

    def _on_ready(self, info: dict[str, Any]) -> None:
        """The child's dispatcher is ready (lock held): READY, and resend the jobs the last child lost."""
        self._ray_info = info
        self.ready_at = self._stamps["ready"] = time.monotonic()
        if self.lost_at is not None:
            self._counts["ray_restarts"] += 1
        where = info.get("gcs_address", "?")
        self._set_state(DispatcherState.READY, f"Ray driver in process {info.get('driver_pid')}, GCS {where}")
        for record in self._records.values():
            if record.lost:
                record.lost = False
                self._counts["resubmitted"] += 1
                self._post(("submit", record.job_id, record.job))

    def _on_lost(self, reason: str) -> None:
        """The child is gone or useless: DEGRADED, clean up its processes, hold its jobs for the next child."""
        with self._lock:
            self.lost_at = time.monotonic()
            self._stamps = {"lost": self.lost_at}
            self._set_state(DispatcherState.DEGRADED, reason)
            if self._child_stats is not None:
                self._base["retried"] += self._child_stats.retried
                self._base["actor_deaths"] += self._child_stats.actor_deaths
            self._child_stats, self._child_workers, self._ray_info = None, [], {}
            for record in list(self._records.values()):
                if self.config.resubmit_lost_jobs:
                    record.lost = True
                else:
                    self._finish(record, JobResult(record.job_id, False, reason="cluster_lost", error=reason))
        self._kill_child()
        with self._lock:
            self._stamps["cleaned"] = time.monotonic()
        self._deliver()

    def _expire_lost(self, now: float) -> None:
        with self._lock:
            for record in list(self._records.values()):
                if record.lost and now >= record.deadline:
                    error = f"Ray was lost ({self._state_reason}) and not back before the job's deadline"
                    self._finish(record, JobResult(record.job_id, False, reason="cluster_lost", error=error))

    def _send_loop(self) -> None:
        """The only writer of the socket, so a slow child never blocks submit()."""
        while True:
            item = self._outq.get()
            if item is None:
                return
            chan, message = item
            if chan is not self._chan:
                continue  # for a lost child: its jobs are resubmitted to the next one
            try:
                chan.send(message)
            except OSError:
                continue  # the child is gone: the supervisor thread notices and resubmits

    def _stop_child(self) -> None:
        """Ask the child to shut down (it stops its actors and embedded Ray), then make sure it is gone."""
        child, chan = self._child, self._chan
        if child is not None and child.poll() is None:
            if chan is not None:
                # Again, directly: shutdown() may have posted its request before this child's channel existed (the
                # node may be stopped while Ray still starts). The child acts on the first and exits.
                with contextlib.suppress(OSError):
                    chan.send(("shutdown",))
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=30.0)
        self._kill_child()

    def _kill_child(self) -> None:
        """Kill the child and every process of its session (its embedded raylet, GCS and workers)."""
        with self._lock:
            child, chan = self._child, self._chan
            self._child, self._chan = None, None
        if chan is not None:
            with contextlib.suppress(OSError):
                chan.close()
        if child is None:
            return
        if child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10.0)
        kill_session(child.pid)


class DispatchProcess:
    """A dispatch process started before its config is known (Python up, Ray imported, waiting):
    :meth:`SupervisedDispatcher.prepare` adopts it. The node starts one as soon as it exists, so the process's
    start overlaps the node's own imports and configure. :meth:`close` ends it when no dispatcher took it."""

    def __init__(self) -> None:
        self._process: tuple[subprocess.Popen, Channel] | None = _popen_child()

    @property
    def pid(self) -> int | None:
        return self._process[0].pid if self._process is not None else None

    def alive(self) -> bool:
        return self._process is not None and self._process[0].poll() is None

    def take(self) -> tuple[subprocess.Popen, Channel]:
        """Hand the process over (once); this object no longer owns it."""
        process, self._process = self._process, None
        if process is None:
            raise RuntimeError("this dispatch process was taken or closed already")
        return process

    def close(self) -> None:
        """End the process unless it was taken (idempotent)."""
        process, self._process = self._process, None
        if process is not None:
            _end_waiting_child(*process)


def _end_waiting_child(child: subprocess.Popen, chan: Channel) -> None:
    """End a child that waits for its config (a standby or prepared one): it exits at the end of file."""
    chan.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=5.0)
    if child.poll() is None:
        child.kill()
        child.wait(timeout=5.0)


def _popen_child(preload: list[str] | None = None) -> tuple[subprocess.Popen, Channel]:
    """Start ``python -m z123_ros.dispatch.child`` on one end of a new socket pair; it imports the ``preload``
    modules and waits for its config."""
    parent_sock, child_sock = socket.socketpair()
    env = dict(os.environ)
    paths = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if _PACKAGE_ROOT not in paths:
        env["PYTHONPATH"] = os.pathsep.join([_PACKAGE_ROOT, *paths])  # the child imports this z123_ros
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "z123_ros.dispatch.child", str(child_sock.fileno()), *(preload or [])],
            pass_fds=(child_sock.fileno(),),
            env=env,
            stdin=subprocess.DEVNULL,
        )
    except OSError:
        parent_sock.close()
        raise
    finally:
        child_sock.close()
    return child, Channel(parent_sock)


def kill_session(session_id: int, timeout_s: float = 10.0) -> int:
    """SIGKILL every process whose session id is ``session_id`` (one our child created); returns how many.

    Linux /proc only (the ROS 2 targets); elsewhere nothing is killed and the embedded Ray's processes end by
    themselves once their raylet is gone.
    """
    victims = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if name.isdigit() and int(name) != os.getpid():
                with contextlib.suppress(OSError):
                    if os.getsid(int(name)) == session_id:
                        os.kill(int(name), signal.SIGKILL)
                        victims.append(int(name))
    killed, deadline = len(victims), time.monotonic() + timeout_s
    while victims and time.monotonic() < deadline:
        victims = [pid for pid in victims if _alive(pid)]
        time.sleep(0.02)
    return killed


def _alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a zombie of another parent is as good as gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def make_dispatcher(config: DispatchConfig) -> Any:
    """The dispatcher ``config`` asks for: SupervisedDispatcher (``isolate``, the default) or an in-process one."""
    return SupervisedDispatcher(config) if config.isolate else Dispatcher(config)
