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

Every embedded head (lean or not) gets the node address :data:`LOOPBACK` (:func:`loopback_node`): Ray 2.60's C++
gRPC servers (GCS, raylet, the workers' and the driver's core workers) bind the node address when it is 127.0.0.1
and every interface otherwise, and the runtime-env agent binds the node address; with Ray's choice (the machine's
external address) the embedded Ray listened on every interface and on the external address.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
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

#: The embedded head's node address: every listener of the embedded Ray is on it (nothing else joins that head).
LOOPBACK = "127.0.0.1"

_LOCK = threading.Lock()
_NODE_IP_LOCK = threading.Lock()


def head_services_to_skip(lean: bool, dashboard: bool, log_to_driver: bool) -> tuple[str, ...]:
    """Which of :data:`SKIPPABLE` an embedded head leaves out: none for Ray's standard head (``lean`` off) or when
    the dashboard is wanted (the API server serves it; its users expect ``ray status`` too); else the API server and
    the autoscaler monitor, and the log monitor unless the actors' output goes to the driver."""
    if not lean or dashboard:
        return ()
    return ("start_api_server", "start_monitor") + (() if log_to_driver else ("start_log_monitor",))


#: ``ray._raylet``'s names of the dashboard agent's port files, which the stand-in writes.
DASHBOARD_PORT_NAMES = ("METRICS_AGENT_PORT_NAME", "METRICS_EXPORT_PORT_NAME", "DASHBOARD_AGENT_LISTEN_PORT_NAME")


def _runtime_env_port_first(script: list[str], raylet: Any) -> Callable[[str], str] | None:
    port_name = getattr(raylet, "RUNTIME_ENV_AGENT_PORT_NAME", None)
    if not isinstance(port_name, str):
        logger.warning("this Ray has no ray._raylet.RUNTIME_ENV_AGENT_PORT_NAME: its runtime-env agent starts as Ray's")
        return None
    port_first = subprocess.list2cmdline([*script, "runtime-env", port_name, "--"])
    return lambda ray: f"{port_first} {ray}"


def _dashboard_stand_in(script: list[str], raylet: Any, node: Any) -> Callable[[str], str] | None:
    names = [getattr(raylet, name, None) for name in DASHBOARD_PORT_NAMES]
    session_dir = getattr(node, "get_session_dir_path", None)
    node_id = getattr(node, "node_id", None)
    missing = [f"ray._raylet.{n}" for n, v in zip(DASHBOARD_PORT_NAMES, names, strict=True) if not isinstance(v, str)]
    missing += [] if callable(session_dir) else ["Node.get_session_dir_path"]
    missing += [] if isinstance(node_id, str) else ["Node.node_id"]
    if missing:
        logger.warning("this Ray has no %s: its dashboard agent starts as Ray's", ", ".join(missing))
        return None
    stand_in = subprocess.list2cmdline([*script, "dashboard", session_dir(), node_id, *names])

    def rewrite(ray: str) -> str:
        # Ray adds --minimal where ray[default]'s dependencies are missing: that agent serves nothing. Without it
        # Ray's agent serves its modules (the dashboard's, metrics) and stays.
        return stand_in if "--minimal" in ray.split() else ray

    return rewrite


def agent_commands(node: Any) -> dict[str, Callable[[str], str]]:
    """For a head ``node`` being started: the raylet's agent-command options the lean head rewrites, each with its
    rewrite of Ray's value (:mod:`~z123_ros.dispatch.raylet_agents`): the runtime-env agent's port written before
    its imports, and the dashboard agent's stand-in where Ray's value starts it ``--minimal`` (``ray[default]``'s
    dependencies missing: it would serve nothing). A piece whose Ray names (private ones) this Ray lacks is left out,
    with a warning: that agent starts as Ray starts it."""
    import ray._raylet as raylet

    script = [sys.executable, "-I", "-S", raylet_agents.__file__]
    pieces = {
        "runtime_env_agent_command": _runtime_env_port_first(script, raylet),
        "dashboard_agent_command": _dashboard_stand_in(script, raylet, node),
    }
    return {option: rewrite for option, rewrite in pieces.items() if rewrite is not None}


def _rewrite_command(command: list[str], rewrites: dict[str, Callable[[str], str]]) -> list[str]:
    """``command`` (the raylet's) with each ``--NAME=value`` option that ``rewrites`` names rewritten; logs which
    changed, and warns of an expected option that is absent (a Ray that passes it differently: that agent starts as
    Ray's)."""
    out, changed, seen = [], [], set()
    for arg in command:
        name, equals, value = arg.removeprefix("--").partition("=")
        if arg.startswith("--") and equals and name in rewrites:
            seen.add(name)
            new = rewrites[name](value)
            changed += [name] if new != value else []
            arg = f"--{name}={new}"
        out.append(arg)
    absent = sorted(set(rewrites) - seen)
    if absent:
        logger.warning("the raylet's command has no %s: that agent starts as Ray's", ", ".join(absent))
    logger.info("embedded Ray head: raylet agents rewritten: %s", ", ".join(changed) or "none")
    return out


def _raylet_with_lean_agents(start_raylet: Any) -> Any:
    """``Node.start_raylet`` that, on a head, starts the raylet with :func:`agent_commands`' rewrites of its agents'
    commands (Ray's ``services.start_ray_process`` is wrapped for this one call; the raylet's other arguments, and
    the raylet of a non-head node, are Ray's)."""

    def method(self, *args, **kwargs):
        if not getattr(self, "head", False):
            return start_raylet(self, *args, **kwargs)
        import ray._private.ray_constants as ray_constants
        import ray._private.services as services

        raylet_kind = getattr(ray_constants, "PROCESS_TYPE_RAYLET", None)
        start_ray_process = getattr(services, "start_ray_process", None)
        if not isinstance(raylet_kind, str) or not callable(start_ray_process):
            logger.warning("this Ray has no services.start_ray_process or PROCESS_TYPE_RAYLET: Ray's raylet agents")
            return start_raylet(self, *args, **kwargs)
        rewrites = agent_commands(self)

        def start_with_lean_agents(command, process_type, *rest, **options):
            if process_type == raylet_kind:
                command = _rewrite_command(command, rewrites)
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
    needed += ("start_raylet",) if lean_agents else ()
    missing = [name for name in needed if not callable(getattr(base, name, None))]
    if base is None or missing:
        logger.warning("this Ray has no %s: the embedded Ray starts its standard head", missing or "Node class")
        yield ()
        return
    waiter = _port_waiter(ray_node)
    with _LOCK:
        ray_node.Node = _lean_node_class(base, skip, poll_registration, lean_agents)
        if waiter is not None:
            ray_node.wait_for_persisted_port = functools.partial(waiter, poll_interval_ms=PORT_POLL_MS)
        try:
            yield skip
        finally:
            ray_node.Node = base
            if waiter is not None:
                ray_node.wait_for_persisted_port = waiter


def _port_waiter(ray_node: Any) -> Callable[..., Any] | None:
    """``ray._private.node.wait_for_persisted_port`` where it takes ``poll_interval_ms`` (else None, logged: Ray's
    own polls stay)."""
    waiter = getattr(ray_node, "wait_for_persisted_port", None)
    try:
        if "poll_interval_ms" in inspect.signature(waiter).parameters:
            return waiter
    except (TypeError, ValueError):  # not a callable, or one without a signature
        pass
    logger.info("this Ray has no wait_for_persisted_port(poll_interval_ms=...): its GCS port file is polled as Ray's")
    return None


@contextlib.contextmanager
def loopback_node(embedded: bool) -> Iterator[str | None]:
    """While inside, ray.init keeps ``_node_ip_address=LOOPBACK``: Ray replaces a loopback node address with the
    machine's external one (``services.resolve_ip_for_localhost``, so that other nodes can reach the head), which
    for the embedded head, joined by nothing, only opens its listeners to the network. Yields the node address to
    pass (:data:`LOOPBACK`), or None when ``embedded`` is False (a cluster is joined: Ray's choice stands) or this
    Ray lacks the private name (then logged; Ray picks the address as it always did)."""
    if not embedded:
        yield None
        return
    import ray._private.services as services

    resolve = getattr(services, "resolve_ip_for_localhost", None)
    if not callable(resolve):
        logger.warning("this Ray has no services.resolve_ip_for_localhost: the embedded Ray takes Ray's node address")
        yield None
        return

    def keep_loopback(host: str) -> str:
        return host if host == LOOPBACK else resolve(host)

    with _NODE_IP_LOCK:
        services.resolve_ip_for_localhost = keep_loopback
        try:
            yield LOOPBACK
        finally:
            services.resolve_ip_for_localhost = resolve
