"""Start-up of the raylet's two agents on a lean embedded head (:mod:`z123_ros.dispatch.head`).

Ray's raylet starts a dashboard agent and a runtime-env agent, each a Python process that imports Ray (0.45-0.5
CPU-s each on the 2-core development machine), and registers with the GCS (so ray.init returns and the prestarted
workers start) only once both have written their ports to files in the session folder. This module runs as a script
in their place (``python -I -S raylet_agents.py ROLE ...``: standard library only, no package import):

- ``dashboard SESSION_DIR NODE_ID PORT_NAME...``: a stand-in for Ray's dashboard agent where that agent would start
  ``--minimal`` (Ray without ``ray[default]``'s dependencies, as this project installs it). Ray 2.60's minimal agent
  loads none of its modules, runs no gRPC or HTTP server and exports no metrics: it writes -1 ("not served") to its
  three port files and lives as long as the raylet. The stand-in writes the same files the same way (a temporary
  file renamed into place, as Ray's ``persist_port`` does) and waits for the raylet's death as Ray's agent does (the
  raylet fate-shares with its agents, so it must not end first). Its process name is ``z123-agent-stub``.
- ``runtime-env PORT_NAME -- AGENT_COMMAND...``: Ray's own runtime-env agent (it serves the raylet's runtime
  environments), with its port written first: the agent picks a free port only after its imports (about 0.5 s),
  and the raylet waits for that file. Here the port is picked first on the same address (a socket bound with port
  0, as the agent binds, and held open across the exec, not listening: no other process can take the port before
  the agent binds it), written to the agent's port file, and the agent exec'd in this process (the raylet's child,
  the pid the raylet watches) with that port, :data:`RUNTIME_ENV_AGENT_NICENESS` nicer than the raylet (only then:
  an agent started as Ray starts it keeps Ray's niceness): the agent's start (0.45-0.7 CPU-s) then yields to the
  prestarted workers', which are the node's start-up path, instead of taking a third of the two cores from them.
  A runtime environment requested before the agent listens meets a port not yet open, which the raylet's client
  retries (this project's actors use none).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time

#: The dashboard stand-in's process name, as ``ps`` and /proc show it (at most 15 characters).
PROCESS_NAME = "z123-agent-stub"
#: How often the dashboard stand-in checks that the raylet (its parent) is still there.
PARENT_POLL_S = 0.5
#: Niceness the runtime-env agent gets on top of the raylet's (see the module docstring).
RUNTIME_ENV_AGENT_NICENESS = 10


def persist_port(session_dir: str, node_id: str, name: str, port: int) -> None:
    """Write ``port`` to ``SESSION_DIR/NAME_NODEID`` as Ray's ``persist_port`` does (whole file, then rename)."""
    path = os.path.join(session_dir, f"{name}_{node_id}")
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(str(port))
    os.replace(tmp, path)


def dashboard_stand_in(session_dir: str, node_id: str, names: list[str]) -> int:
    """Write -1 to each port file ``names`` and wait until the raylet is gone."""
    # The raylet names itself to its agents (Ray's agents read the same variable): a raylet already gone when this
    # starts (this process re-parented at once) ends it at once too.
    parent = int(os.environ.get("RAY_RAYLET_PID") or os.getppid())
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as f:
        f.write(PROCESS_NAME)
    for name in names:
        persist_port(session_dir, node_id, name, -1)
    # The raylet's death (SIGKILL included) re-parents this process: then it ends, as Ray's agent would. A clean
    # shutdown of the raylet sends SIGTERM, whose default action ends it at once.
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    return 0


def _option(argv: list[str], name: str) -> tuple[int, str] | None:
    """Index and value of ``--name=value`` in ``argv`` (Ray's services.py writes every agent option so)."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"--{name}="):
            return i, arg.split("=", 1)[1]
    return None


def hold_free_port(ip: str) -> socket.socket:
    """A socket bound to a free port on ``ip`` (port 0, as the agent binds), held open and inheritable (it survives
    the exec into the agent) but not listening: until the agent ends, another process's plain bind of that port gets
    EADDRINUSE, while the agent's own bind (SO_REUSEADDR, as asyncio binds its servers on Unix) and listen succeed.
    Closed instead, the port would stand free for the agent's half-second of imports, and a process taking it then
    would end the agent and, fate-shared with it, the raylet."""
    family, kind, proto, _, address = socket.getaddrinfo(ip, 0, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.set_inheritable(True)
    except OSError:
        sock.close()
        raise
    return sock


def runtime_env_with_port_first(port_name: str, argv: list[str]) -> tuple[list[str], socket.socket | None]:
    """``argv`` (Ray's runtime-env agent command) with its port fixed and that port written to its file, and the
    socket holding that port (:func:`hold_free_port`; None for a port Ray fixed); ``(argv, None)`` unchanged and no
    file written when an option it needs is missing (a Ray that writes them differently: its agent then runs as Ray
    starts it)."""
    port, ip = _option(argv, "runtime-env-agent-port"), _option(argv, "node-ip-address")
    session, node = _option(argv, "session-dir"), _option(argv, "node-id")
    if None in (port, ip, session, node):
        return argv, None
    number, held = int(port[1] or 0), None
    if number == 0:
        held = hold_free_port(ip[1])
        number = held.getsockname()[1]
    argv = list(argv)
    argv[port[0]] = f"--runtime-env-agent-port={number}"
    try:
        persist_port(session[1], node[1], port_name, number)
    except OSError:
        if held is not None:
            held.close()
        raise
    return argv, held


def main(argv: list[str]) -> int:
    role, *rest = argv
    if role == "dashboard":
        session_dir, node_id, *names = rest
        return dashboard_stand_in(session_dir, node_id, names)
    if role == "runtime-env":
        port_name, separator, *command = rest
        if separator != "--" or not command:
            raise SystemExit("usage: raylet_agents.py runtime-env PORT_NAME -- AGENT_COMMAND...")
        try:
            lean, _held = runtime_env_with_port_first(port_name, command)  # _held: open across the exec
        except OSError as exc:  # no free port, an unwritable session folder: the agent starts as Ray starts it
            sys.stderr.write(f"raylet_agents: the runtime-env agent's port was not written first: {exc}\n")
            lean = command
        if lean is not command:  # niced only behind its port file: a plain start (Ray's) is left as Ray's
            os.nice(RUNTIME_ENV_AGENT_NICENESS)
        os.execv(lean[0], lean)
    raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
