"""The embedded Ray's head, started with only the services the dispatcher uses (``DispatchConfig.lean_head``).

``ray.init()`` starting a local head runs, besides the GCS and the raylet (with the raylet's two agents):

- Ray's API server (``dashboard.py``), even with ``include_dashboard=False``: then it loads only the usage-statistics
  module (usage statistics are off here). ray.init waits until it has published its address, and only then starts
  the raylet: about 0.8 s on the idle 2-core machine, 1.7 s loaded, of every start and restart.
- The autoscaler monitor (``monitor.py``): a fixed local node has nothing to scale; it also writes the report that
  ``ray status`` prints.
- The log monitor (``log_monitor.py``): forwards the workers' output to the driver (``log_to_driver``).

Each is a Python process importing Ray (about 1 CPU-s each), started while the raylet's agents, which the raylet
waits for, start too: on two cores they compete. Ray offers no ray.init argument to leave them out (its
``RayParams.no_monitor`` / ``include_log_monitor`` are not passed through, and the API server is always started), so
:func:`lean_head` swaps ``ray._private.node.Node`` (the class ray.init instantiates for the head) for a subclass that
skips them, for the duration of one ray.init in this process. Ray's private names are checked first: a Ray without
them gets the standard head and a warning, never a failure.

The same subclass also waits for the raylet's registration in the GCS with short polls
(:data:`REGISTRATION_POLL_S`) before ray.init asks for it: ray.init's own wait (``GlobalStateAccessor::GetNode``)
asks once, then sleeps a whole second between attempts, and the raylet registers only once its agents have started
(0.5-0.8 s on two cores), so the driver slept 0.2-0.5 s after the raylet was there in every start (seen in the
raylet's and the driver's logs). With the raylet registered, Ray's own wait returns at its first attempt.

And the raylet registers only once its two agents (each a Python process importing Ray: 0.45-0.5 CPU-s) have
written their ports to files, so the subclass rewrites their commands (:mod:`z123_ros.dispatch.raylet_agents`): the
runtime-env agent (Ray's own) gets its port picked and written before its imports, and where Ray's dashboard agent
would start ``--minimal`` (Ray without ``ray[default]``'s dependencies, this project's install), which serves
nothing (no module loads, no gRPC or HTTP server, no metrics) but writes -1 to three port files, a stand-in writes
the same files with the standard library alone. The runtime-env agent runs nicer than the raylet (by
``raylet_agents.RUNTIME_ENV_AGENT_NICENESS``): it serves only runtime environments (this project's actors use none)
and would otherwise take a third of the two cores from the workers' start. And ray.init's wait for the GCS's
port file polls every :data:`PORT_POLL_MS` instead of Ray's 100 ms.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from z123_ros.dispatch import raylet_agents

logger = logging.getLogger(__name__)

#: Head services :func:`lean_head` can leave out, each the name of the ``Node`` method that starts it.
SKIPPABLE = ("start_api_server", "start_monitor", "start_log_monitor")

#: Period of the lean head's polls for its raylet's registration in the GCS (each poll is one small GCS request).
REGISTRATION_POLL_S = 0.02
#: After this long the lean head stops polling and leaves the wait (and its error, if any) to ray.init.
REGISTRATION_WAIT_S = 30.0
#: Period of ray.init's polls for the GCS's port file while a lean head starts (Ray's default: 100 ms, so the GCS's
#: 20-60 ms start was waited for in whole 100 ms steps on the node's start-up path).
PORT_POLL_MS = 10

_LOCK = threading.Lock()


def head_services_to_skip(lean: bool, dashboard: bool, log_to_driver: bool) -> tuple[str, ...]:
    """Which of :data:`SKIPPABLE` an embedded head leaves out: none for Ray's standard head (``lean`` off) or when
    the dashboard is wanted (the API server serves it; its users expect ``ray status`` too); else the API server and
    the autoscaler monitor, and the log monitor unless the actors' output goes to the driver."""
    if not lean or dashboard:
        return ()
    return ("start_api_server", "start_monitor") + (() if log_to_driver else ("start_log_monitor",))


def agent_commands(node: Any) -> dict[str, Callable[[str], str]]:
    """For a head ``node`` being started: the raylet's agent-command options the lean head rewrites, each with its
    rewrite of Ray's value (:mod:`~z123_ros.dispatch.raylet_agents`): the runtime-env agent's port written before
    its imports, and, where Ray's dashboard agent would start minimal (``ray[default]``'s dependencies missing: it
    would serve nothing), the stand-in in its place."""
    import ray._private.utils as ray_utils
    import ray._raylet as raylet

    script = [sys.executable, "-I", "-S", raylet_agents.__file__]
    port_first = subprocess.list2cmdline([*script, "runtime-env", raylet.RUNTIME_ENV_AGENT_PORT_NAME, "--"])
    rewrites: dict[str, Callable[[str], str]] = {"runtime_env_agent_command": lambda ray: f"{port_first} {ray}"}
    if ray_utils.get_dashboard_dependency_error() is not None:
        names = (
            raylet.METRICS_AGENT_PORT_NAME,
            raylet.METRICS_EXPORT_PORT_NAME,
            raylet.DASHBOARD_AGENT_LISTEN_PORT_NAME,
        )
        session = [node.get_session_dir_path(), node.node_id]
        stand_in = subprocess.list2cmdline([*script, "dashboard", *session, *names])
        rewrites["dashboard_agent_command"] = lambda _ray: stand_in
    return rewrites


def _raylet_with_lean_agents(start_raylet: Any) -> Any:
    """``Node.start_raylet`` that, on a head, starts the raylet with :func:`agent_commands`' rewrites of its agents'
    commands (Ray's ``services.start_ray_process`` is wrapped for this one call; the raylet's other arguments, and
    the raylet of a non-head node, are Ray's)."""

    def method(self, *args, **kwargs):
        if not getattr(self, "head", False):
            return start_raylet(self, *args, **kwargs)
        import ray._private.ray_constants as ray_constants
        import ray._private.services as services

        rewrites = agent_commands(self)
        start_ray_process = services.start_ray_process

        def rewritten(arg: str) -> str:
            name, equals, value = arg.removeprefix("--").partition("=")
            return f"--{name}={rewrites[name](value)}" if equals and arg.startswith("--") and name in rewrites else arg

        def start_with_lean_agents(command, process_type, *rest, **options):
            if process_type == ray_constants.PROCESS_TYPE_RAYLET:
                command = [rewritten(arg) for arg in command]
            return start_ray_process(command, process_type, *rest, **options)

        services.start_ray_process = start_with_lean_agents
        try:
            return start_raylet(self, *args, **kwargs)
        finally:
            services.start_ray_process = start_ray_process

    method.__name__ = "start_raylet"
    return method


def _lean_node_class(base: type, skip: tuple[str, ...], poll_registration: bool, lean_agents: bool = False) -> type:
    def skipped(name: str):
        original = getattr(base, name)

        def method(self, *args, **kwargs):
            if getattr(self, "head", False):
                logger.debug("embedded Ray head: %s skipped (dispatch.lean_head)", name)
                return None
            return original(self, *args, **kwargs)

        method.__name__ = name
        return method

    methods: dict[str, Any] = {name: skipped(name) for name in skip}
    if poll_registration:
        start_ray_processes = base.start_ray_processes

        def start_and_wait(self, *args, **kwargs):
            result = start_ray_processes(self, *args, **kwargs)
            if getattr(self, "head", False):
                wait_for_registration(self)
            return result

        methods["start_ray_processes"] = start_and_wait
    if lean_agents:
        methods["start_raylet"] = _raylet_with_lean_agents(base.start_raylet)
    return type("LeanHeadNode", (base,), methods)


def wait_for_registration(
    node: Any, period_s: float = REGISTRATION_POLL_S, limit_s: float = REGISTRATION_WAIT_S
) -> bool:
    """Poll the GCS every ``period_s`` until ``node`` (a Ray ``Node`` whose raylet was just started) is listed alive;
    True once it is, False after ``limit_s`` (ray.init then waits and fails as it would have). A failed request
    (the GCS still starting) counts as not yet."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            nodes = node.get_gcs_client().get_all_node_info(timeout=max(period_s, 1.0))
            if any(key.hex() == node.node_id and info.state == info.ALIVE for key, info in nodes.items()):
                return True
        except Exception as exc:  # noqa: BLE001 - Ray raises several kinds while its GCS starts; retried.
            logger.debug("raylet registration poll: %s", exc)
        time.sleep(period_s)
    logger.warning("the embedded Ray's raylet did not register in %.0f s; ray.init's own wait decides", limit_s)
    return False


@contextlib.contextmanager
def lean_head(
    skip: tuple[str, ...], poll_registration: bool = True, lean_agents: bool = True
) -> Iterator[tuple[str, ...]]:
    """While inside, a head that ray.init starts in this process leaves out the services ``skip`` names (a subset of
    :data:`SKIPPABLE`), with ``poll_registration`` waits for its raylet's registration with short polls
    (:func:`wait_for_registration`) and, with ``lean_agents``, starts its raylet's agents as :func:`agent_commands`
    says. Yields what is actually skipped: () when ``skip`` is empty (Ray's standard head, unchanged) or this Ray
    lacks the private names (then logged)."""
    unknown = set(skip) - set(SKIPPABLE)
    if unknown:
        raise ValueError(f"unknown head services {sorted(unknown)}; known: {SKIPPABLE}")
    if not skip:
        yield ()
        return
    import ray._private.node as ray_node

    base = getattr(ray_node, "Node", None)
    needed = skip + (("start_ray_processes", "get_gcs_client") if poll_registration else ())
    needed += ("start_raylet", "get_session_dir_path") if lean_agents else ()
    missing = [name for name in needed if not callable(getattr(base, name, None))]
    if base is None or missing:
        logger.warning("this Ray has no %s: the embedded Ray starts its standard head", missing or "Node class")
        yield ()
        return
    waiter = getattr(ray_node, "wait_for_persisted_port", None)
    with _LOCK:
        ray_node.Node = _lean_node_class(base, skip, poll_registration, lean_agents)
        if callable(waiter):
            ray_node.wait_for_persisted_port = functools.partial(waiter, poll_interval_ms=PORT_POLL_MS)
        try:
            yield skip
        finally:
            ray_node.Node = base
            if callable(waiter):
                ray_node.wait_for_persisted_port = waiter
