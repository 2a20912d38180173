"""The dispatch child: the one process that holds the Ray driver, started and supervised by SupervisedDispatcher.

    python -m z123_ros.dispatch.child FD        # FD: this end of the supervisor's socket pair

Why a separate process: Ray terminates a driver whose raylet dies ("The connection to the plasma store is failed.
Terminate the process."), so whatever must outlive Ray cannot be the driver. This process runs a plain
:class:`~z123_ros.dispatch.dispatcher.Dispatcher` and relays its jobs, results, state and stats over the socket.

Its life: it puts itself in a new session (so the supervisor can end the embedded Ray's raylet, GCS and workers,
which inherit the session, by their session id once this process is gone), imports Ray, then waits for its
DispatchConfig and the worker kinds it names (registered here as they were in the supervisor's process): the
supervisor may start a child ahead of need (a standby) so a restart skips Python's start and the imports. With its
config it starts the dispatcher, reports READY as soon as Ray is up and the actors are created (jobs queue in the
dispatcher until an actor is warm; the warm-up goes on), and then exits as soon as Ray is lost after having been
ready (or could not be reached at all): the supervisor starts a fresh child, which is a cleaner restart than
re-initialising Ray in a process whose Ray died under it. It also exits when the supervisor goes away (end of file
on the socket).

It sends the stamps of its start-up stages (:mod:`z123_ros.dispatch.timeline`) whenever they change.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

from z123_ros.dispatch.addons import addons_for_loaded_libraries
from z123_ros.dispatch.config import DispatchConfig
from z123_ros.dispatch.dispatcher import Dispatcher, DispatcherState, JobRejectedError, JobResult
from z123_ros.dispatch.kinds import register_kind
from z123_ros.dispatch.timeline import process_started_at
from z123_ros.dispatch.wire import Channel

logger = logging.getLogger(__name__)

#: Exit status of a child whose Ray was lost or never came up (the supervisor restarts it with backoff).
EXIT_RAY_LOST = 3
#: Exit status when the supervisor's end of the socket closed (the node is gone or shut down).
EXIT_SUPERVISOR_GONE = 4

#: Period of the heartbeat (stats) messages; the supervisor's silence limit is many of these.
HEARTBEAT_S = 0.25


def ray_info() -> dict[str, Any]:
    """Addresses and process ids of the Ray this driver uses (the embedded one's processes, for failure drills)."""
    import ray

    info: dict[str, Any] = {"driver_pid": os.getpid(), "session_id": os.getsid(0)}
    with contextlib.suppress(Exception):
        info["gcs_address"] = ray.get_runtime_context().gcs_address
    node = getattr(ray._private.worker, "_global_node", None)
    if node is not None:
        info["raylet_address"] = f"{node.node_ip_address}:{node.node_manager_port}"
        info["session_dir"] = str(node.get_session_dir_path())
        for name, processes in node.all_processes.items():
            info[f"{name}_pids"] = [p.process.pid for p in processes if p.process is not None]
    return info


def private_auth_token() -> None:
    """Leave Ray's token file readable by its owner only (Ray 2.60 creates ~/.ray/auth_token 0644)."""
    paths = [os.environ.get("RAY_AUTH_TOKEN_PATH", ""), str(Path.home() / ".ray" / "auth_token")]
    for path in filter(None, paths):
        with contextlib.suppress(OSError):
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                os.chmod(path, 0o600)


class ChildServer:
    """Relays between the socket and one Dispatcher; see the module docstring."""

    def __init__(self, channel: Channel, config: DispatchConfig, stamps: dict[str, float] | None = None) -> None:
        self._chan = channel
        self._dispatcher = Dispatcher(config)
        self._stamps = dict(stamps or {})
        """This process's start-up stamps (child_started, imported); the dispatcher's own are added to them."""
        self._ids: dict[int, int] = {}
        """Supervisor job id -> this dispatcher's job id (for cancel)."""
        self._ids_lock = threading.Lock()
        self._early: set[int] = set()
        """Supervisor job ids whose result was sent before submit() returned (nothing left to cancel)."""
        self._state_lock = threading.Lock()
        self._stamps_sent: dict[str, float] = {}
        """The start-up stamps as last sent (they are sent again only when they changed)."""

    def serve(self) -> int:
        """Start the dispatcher, relay until Ray is lost or the supervisor leaves; returns the exit status."""
        threading.Thread(target=self._read, name="z123-dispatch-child-read", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="z123-dispatch-child-beat", daemon=True).start()
        private_auth_token()
        dispatcher = self._dispatcher
        dispatcher.start(wait_s=0)
        # READY once Ray is up and the actors exist: the supervisor may send jobs while the actors warm up.
        state = dispatcher.wait_while(DispatcherState.CONNECTING)
        private_auth_token()
        if state is not DispatcherState.READY:
            self._send(("lost", f"{state.value}: {dispatcher.state_reason}"))
            return EXIT_RAY_LOST
        self._send(("stats", dispatcher.stats(), dispatcher.workers()))  # the actors, still warming up
        self._send(("ray", ray_info()))
        # The actors import the same stack while they warm up: on a 2-core machine this process's import would take
        # a third of the CPU they need. No job can run before an actor is warm anyway.
        dispatcher.wait_ready(dispatcher.config.connect_timeout_s)
        # At once, not at the next heartbeat (up to HEARTBEAT_S later): the node reports "actors warm" from these.
        self._send_state()
        self._import_job_inputs()
        dispatcher.wait_while(DispatcherState.READY)
        # Ray went away under a ready dispatcher: report and leave; a fresh child restarts Ray.
        self._send(("lost", dispatcher.state_reason))
        return EXIT_RAY_LOST

    def _import_job_inputs(self) -> None:
        """Import the modules whose classes reconstruction jobs carry (ReconstructionInput) once the actors are warm,
        not when the first job is unpickled (it delayed the first meshes when it was the whole reconstruction stack,
        0.46 s; now the types' module alone). A standby child imported them already (instant then)."""
        for module in self._dispatcher.config.job_input_modules():
            importlib.import_module(module)  # the dispatch layer imports the core lazily

    def _heartbeat(self) -> None:
        """Stats 4 times a second, from the start: the supervisor takes a long silence for a hung process. The
        start-up stamps too, when they changed."""
        while True:
            self._send_state()
            time.sleep(HEARTBEAT_S)

    def _send_state(self) -> None:
        """The dispatcher's start-up stamps when they changed since they were last sent, then its stats and workers
        (the heartbeat thread and serve() both call this). Stamps first: whoever sees the workers warm in the stats
        finds the "warm" stamp already there."""
        with self._state_lock:
            stamps = {**self._stamps, **self._dispatcher.timeline}
            if stamps != self._stamps_sent:
                self._send(("timeline", stamps))
                self._stamps_sent = stamps
            self._send(("stats", self._dispatcher.stats(), self._dispatcher.workers()))

    def _send(self, message: tuple) -> None:
        try:
            self._chan.send(message)
        except OSError:
            os._exit(EXIT_SUPERVISOR_GONE)

    def _read(self) -> None:
        while True:
            try:
                message = self._chan.recv()
            except (EOFError, OSError):
                self._leave(EXIT_SUPERVISOR_GONE)
            # A batch: one frame's jobs, sent together so that the arrays they share came once (and are one object
            # each here, put into Ray's object store once).
            for one in message[1] if message[0] == "batch" else [message]:
                self._handle(one)

    def _handle(self, message: tuple) -> None:
        if message[0] == "submit":
            self._submit(message[1], message[2])
        elif message[0] == "cancel":
            with self._ids_lock:
                job_id = self._ids.get(message[1])
            if job_id is not None:
                self._dispatcher.cancel(job_id)
        elif message[0] == "shutdown":
            self._leave(0)

    def _submit(self, proxy_id: int, job: Any) -> None:
        def on_done(job_id: int, result: JobResult) -> None:
            with self._ids_lock:
                if self._ids.pop(proxy_id, None) is None:
                    self._early.add(proxy_id)
            result.job_id = proxy_id
            self._send(("done", proxy_id, result))

        try:
            job_id = self._dispatcher.submit(job, on_done=on_done)
        except JobRejectedError as exc:
            self._send(("rejected", proxy_id, exc.reason, str(exc)))
            return
        with self._ids_lock:
            # The job may have finished already (its callback ran on the collector thread): then forget it.
            if proxy_id in self._early:
                self._early.discard(proxy_id)
            else:
                self._ids[proxy_id] = job_id

    def _leave(self, status: int) -> None:
        """Stop the dispatcher (its actors; the embedded Ray) and exit; the supervisor cleans up the rest."""
        with contextlib.suppress(Exception):
            self._dispatcher.shutdown(timeout_s=20.0)
        with contextlib.suppress(OSError):
            self._chan.send(("bye", status))
        os._exit(status)


def main(argv: list[str] | None = None) -> int:
    """``argv``: the socket's file descriptor, then modules to import before waiting (a standby child imports the
    job inputs' modules of the config it will get, so a restart does not wait for them either)."""
    argv = sys.argv[1:] if argv is None else argv
    fd = int(argv[0])
    os.setsid()  # a session of our own: its id names every process of the embedded Ray for the cleanup
    os.umask(0o077)  # Ray's session folder and token file: private to this user
    logging.basicConfig(level=logging.INFO, format="[z123 dispatch child %(process)d] %(levelname)s %(message)s")
    import ray  # noqa: F401  (now, not after the config came: a standby child has it loaded when it is needed)

    addons_for_loaded_libraries()  # this process is the dispatcher's own: no pydantic or pyarrow in its jobs

    for module in argv[1:]:
        importlib.import_module(module)

    stamps = {"child_started": process_started_at(), "imported": time.monotonic()}
    channel = Channel(socket.socket(fileno=fd))
    try:
        channel.send(("timeline", stamps))  # also tells the supervisor that a standby child is ready
        message = channel.recv()
    except (EOFError, OSError):
        return EXIT_SUPERVISOR_GONE  # a standby child that was never needed
    if message[0] != "config" or not isinstance(message[1], DispatchConfig):
        sys.stderr.write("z123 dispatch child: the first message must be the DispatchConfig\n")
        return 2
    for kind in message[2]:
        register_kind(kind, replace=True)
    return ChildServer(channel, message[1], stamps).serve()


if __name__ == "__main__":
    os._exit(main())
