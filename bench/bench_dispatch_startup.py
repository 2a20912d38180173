"""Dispatcher start-up and recovery, stage by stage: where the seconds go before reconstructions run (issues 17, 20).

1. Cold start of the node's dispatcher (SupervisedDispatcher with the node's dispatch settings: embedded Ray, two
   reconstruction actors): seconds to READY (Ray up, actors created: jobs are accepted), to the first reconstruction
   result, and to every actor warm; the stages (``dispatch.startup_s``: python_and_imports, ray_init, actor_create,
   worker_process, worker_build, first_warm, all_warm; see z123_ros/dispatch/timeline.py).
2. Recovery: SIGKILL of the raylet, the gcs_server and the dispatch (driver) process in turn, each once the previous
   one recovered (the pids come from this run's own Ray: no other Ray on the machine is touched): seconds to
   DEGRADED, to READY, to the first reconstruction result of a job submitted the way the node does (again every
   0.1 s while it is rejected), to every actor warm, and the restart's stages.
3. ``--node``: the ROS node's start-up, process start -> lifecycle active and -> Ray up with every actor warm
   (from its /diagnostics), with the node's own stamps; ``--join`` also with a Ray already running on the machine
   (``ray start --head``, as a system service would start it), which the node joins (``dispatch.address``).

``--compare`` runs 1 and 2 also without the standby dispatch process (``dispatch.standby_process: false``), side by
side in the same run. ``--head N`` times the embedded Ray's start options instead: N rounds of cold starts, each in a
fresh process (the dispatch child's work: ray.init, then the node's two reconstruction actors warm), one per variant
in turn (HEAD_VARIANTS: Ray's standard head, then without its API server, without the autoscaler monitor too, without
the log monitor too (``dispatch.lean_head``); with Ray's 1 s or a 100 ms retry of local socket connections
(``dispatch.connect_retry_ms``); workers prestarted with the raylet (``dispatch.prestart_workers``); the raylet's
registration polled by the lean head or left to ray.init's 1 s retry), with the median and range of every stage.
Report the load average beside every figure (the script prints it).

With ``--node`` each checkout's bytecode is written first (a warm cache, as an installed package has it; see
_proc.compile_package), unless ``--cold-bytecode``.

``--node --rounds N --repo BEFORE AFTER`` starts the node N times per checkout, interleaved, and gives per checkout
the median (range) of process start -> active and -> actors warm as a subscriber of /diagnostics sees them (with
``--period``, the node's diagnostics_period_s: 0.1 here, 0.5 in bench_node.py), the node's own stamp of the actors
warm, and the CPU seconds each kind of process (node, dispatch process, GCS + raylet, the raylet's agents, actors)
had used by then.

    python bench/bench_dispatch_startup.py [--quick] [--compare] [--node [--join] [--repo CHECKOUT]] [--json FILE]
    python bench/bench_dispatch_startup.py --no-dispatcher --node --rounds 5 --repo BEFORE AFTER [--period 0.5]
    python bench/bench_dispatch_startup.py --head 3
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from _proc import compile_package, cpu_s, descendants  # bench/ is sys.path[0] when a bench script runs
from _table import markdown_table

from z123_ros.camera import CameraIntrinsics
from z123_ros.dispatch import (
    DispatchConfig,
    Dispatcher,
    DispatcherState,
    JobRejectedError,
    JobResult,
    ReconstructionJob,
    SupervisedDispatcher,
    WorkerPoolConfig,
)
from z123_ros.dispatch import dispatcher as dispatcher_module
from z123_ros.dispatch import head as head_module
from z123_ros.dispatch.child import ray_info
from z123_ros.dispatch.head import SKIPPABLE
from z123_ros.reconstruction import ReconstructionInput

REPO = Path(__file__).resolve().parents[1]
VICTIMS = ("raylet", "gcs_server", "driver")
WAIT_S = 300.0


def node_dispatch_config(tmp: str, standby: bool = True) -> DispatchConfig:
    """The node's dispatch settings (config/z123_node.yaml): embedded Ray on 2 CPUs, 2 reconstruction actors."""
    config = DispatchConfig(
        num_cpus=2,
        object_store_memory_mb=256,
        temp_dir=tmp,
        pools={"reconstruction": WorkerPoolConfig(num_actors=2, num_cpus=1.0)},
        connect_timeout_s=WAIT_S,
    )
    if hasattr(config, "standby_process"):  # absent before it was built: the bench also times older checkouts
        config.standby_process = standby
    return config


def _box_input() -> ReconstructionInput:
    """A 160x120 view of a box 0.47 m away on a wall at 0.5 m (a real depth-backend job, small and deterministic)."""
    h, w = 120, 160
    depth = np.full((h, w), 0.5, np.float32)
    mask = np.zeros((h, w), bool)
    mask[40:80, 60:100] = True
    depth[mask] = 0.47
    rgb = np.full((h, w, 3), 200, np.uint8)
    rgb[mask] = (180, 60, 40)
    return ReconstructionInput(rgb=rgb, mask=mask, intrinsics=CameraIntrinsics.from_fov(60.0, w, h), depth_m=depth)


class _Results:
    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.done: dict[int, tuple[float, JobResult]] = {}

    def __call__(self, job_id: int, result: JobResult) -> None:
        with self._cv:
            self.done[job_id] = (time.monotonic(), result)
            self._cv.notify_all()

    def wait(self, job_id: int) -> tuple[float, JobResult]:
        with self._cv:
            if not self._cv.wait_for(lambda: job_id in self.done, WAIT_S):
                raise RuntimeError(f"job {job_id}: no result in {WAIT_S} s")
            return self.done[job_id]


def _first_result(d: SupervisedDispatcher, results: _Results, inp: ReconstructionInput) -> float:
    """Submit like the node (again every 0.1 s while rejected); monotonic time of the first successful result."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            job_id = d.submit(ReconstructionJob(inp=inp, key="bench"), on_done=results)
        except JobRejectedError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"jobs rejected for {WAIT_S} s: {d.state_reason}") from None
            time.sleep(0.1)
            continue
        t_done, result = results.wait(job_id)
        if result.ok:
            return t_done
        if result.reason not in ("cluster_lost", "worker_died"):
            raise RuntimeError(f"reconstruction failed: {result.reason}: {result.error}")


def _wait_state(d: SupervisedDispatcher, states: tuple[DispatcherState, ...]) -> float:
    deadline = time.monotonic() + WAIT_S
    while d.state not in states:
        if time.monotonic() > deadline:
            raise RuntimeError(f"dispatcher not {states} after {WAIT_S} s: {d.state_reason}")
        time.sleep(0.005)
    return time.monotonic()


def _row(case: str, variant: str, t0: float, marks: dict[str, float], stages: dict[str, float]) -> dict:
    row = {"case": case, "variant": variant}
    row.update({f"{name}_s": round(t - t0, 2) for name, t in marks.items()})
    row["stages"] = ", ".join(f"{k}={v:.2f}" for k, v in stages.items())
    row["load"] = round(os.getloadavg()[0], 1)
    return row


def _cold_start(config: DispatchConfig, variant: str, inp: ReconstructionInput) -> tuple[SupervisedDispatcher, dict]:
    d = SupervisedDispatcher(config)
    results = _Results()
    t0 = time.monotonic()
    d.start(wait_s=0)
    t_ready = _wait_state(d, (DispatcherState.READY,))
    t_result = _first_result(d, results, inp)
    if not d.wait_ready(WAIT_S):
        raise RuntimeError(f"actors not warm: {d.state_reason}")
    t_warm = time.monotonic()
    marks = {"ready": t_ready, "first_result": t_result, "warm": t_warm}
    return d, _row("cold start", variant, t0, marks, getattr(d.stats(), "startup_s", {}))


def _victim_pid(d: SupervisedDispatcher, victim: str) -> int:
    info = d.ray_info()
    return info["driver_pid"] if victim == "driver" else info[f"{victim}_pids"][0]


def _recovery(d: SupervisedDispatcher, victim: str, variant: str, inp: ReconstructionInput) -> dict:
    results = _Results()
    if not d.wait_ready(WAIT_S):
        raise RuntimeError(f"not ready before the {victim} drill: {d.state_reason}")
    time.sleep(2.0)  # the standby process (when on) starts once the actors are warm: let it finish its imports
    pid = _victim_pid(d, victim)
    t_kill = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    t_degraded = _wait_state(d, (DispatcherState.DEGRADED, DispatcherState.CONNECTING))
    t_ready = _wait_state(d, (DispatcherState.READY,))
    t_result = _first_result(d, results, inp)
    if not d.wait_ready(WAIT_S):
        raise RuntimeError(f"actors not warm after the {victim} drill: {d.state_reason}")
    t_warm = time.monotonic()
    marks = {"degraded": t_degraded, "ready": t_ready, "first_result": t_result, "warm": t_warm}
    return _row(f"{victim} killed", variant, t_kill, marks, getattr(d.stats(), "startup_s", {}))


def run_dispatcher(quick: bool, compare: bool) -> list[dict]:
    inp = _box_input()
    rows = []
    variants = [("standby", True)] + ([("no standby", False)] if compare else [])
    for variant, standby in variants:
        with tempfile.TemporaryDirectory(prefix="z123s", dir="/tmp") as tmp:
            d, row = _cold_start(node_dispatch_config(tmp, standby), variant, inp)
            rows.append(row)
            try:
                for victim in VICTIMS[:1] if quick else VICTIMS:
                    rows.append(_recovery(d, victim, variant, inp))
            finally:
                d.shutdown()
    return rows


def _warm(values: dict[str, str]) -> bool:
    """Active, Ray up, every actor warm (tests/_ros_helpers.dispatcher_warm; here too, so --repo may name a
    checkout older than it)."""
    total = int(values.get("dispatch.actors_total", 0) or 0)
    ready = values.get("state") == "running" and values.get("dispatch.state") == "ready"
    return ready and total > 0 and int(values.get("dispatch.actors_ready", 0) or 0) == total


def _ros_helpers(repo: Path) -> Any:
    """``tests/_ros_helpers.py`` of checkout ``repo``, as a module of its own per checkout (several checkouts' nodes
    start side by side in one run; each helper starts its own checkout's code)."""
    name = f"_ros_helpers_{hashlib.sha1(str(repo).encode()).hexdigest()[:12]}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, repo / "tests" / "_ros_helpers.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _process_kind(pid: int, root: int) -> str:
    """Which part of the node's start-up a process is: the node itself, its dispatch process (the Ray driver and
    the standby one), Ray's GCS and raylet, the raylet's two agents (the dashboard agent may be the lean head's
    stand-in, z123_ros/dispatch/raylet_agents.py), or a worker (the actors)."""
    if pid == root:
        return "node"
    name = Path(f"/proc/{pid}/comm").read_text().strip()
    if name in ("gcs_server", "raylet"):
        return "gcs+raylet"
    if name.startswith(("ray::DashboardA", "ray::RuntimeEnv", "z123-agent-stub")):
        return "agents"
    if name.startswith("ray::"):
        return "actors"
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    if b"runtime_env/agent/main.py" in cmdline:  # the runtime-env agent before it names itself
        return "agents"
    return "dispatch" if b"z123_ros.dispatch.child" in cmdline else "other"


def process_cpu_s(root: int) -> dict[str, float]:
    """CPU seconds (user + system) used so far by process ``root`` and every descendant, summed by
    :func:`_process_kind` (Linux /proc; {} elsewhere)."""
    out: dict[str, float] = {}
    for pid in [root, *descendants(root)]:
        with contextlib.suppress(OSError):
            kind = _process_kind(pid, root)
            out[kind] = out.get(kind, 0.0) + float(np.nan_to_num(cpu_s(pid)))
    return out


def run_node(repo: Path = REPO, ray_address: str = "", period_s: float = 0.1) -> list[dict]:
    """The node's start-up: process start -> active, and -> Ray up with every actor warm (from /diagnostics, published
    every ``period_s``), of the node in checkout ``repo`` (its tests/_ros_helpers starts that checkout's code); with
    ``ray_address`` the node joins that running Ray instead of starting its own. Also the CPU seconds each kind of
    process had used when the actors were warm."""
    helpers = _ros_helpers(repo)
    tmp = Path(tempfile.mkdtemp(prefix="z123n", dir="/tmp"))
    overrides = {"diagnostics_period_s": period_s, "dispatch.temp_dir": str(tmp / "r"), "dispatch.address": ray_address}
    params = helpers.write_params(tmp / "params.yaml", overrides)
    t0 = time.monotonic()
    proc = helpers.NodeProcess(params, tmp / "node.log")
    probe = helpers.Probe(node_name="z123_startup_probe")
    try:
        diag = probe.diagnostics
        if not helpers.wait_for(lambda: diag().get("state") == "running" or not proc.alive(), WAIT_S, period=0.02):
            raise RuntimeError(f"node not active:\n{proc.log()[-2000:]}")
        t_active = time.monotonic()

        if not helpers.wait_for(lambda: _warm(diag()), WAIT_S, period=0.02):
            raise RuntimeError(f"node's actors not warm:\n{proc.log()[-2000:]}")
        t_warm = time.monotonic()
        cpu = process_cpu_s(proc.proc.pid)
        values = diag()
    finally:
        probe.close()
        proc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    node_stamps = {k.removeprefix("startup."): float(v) for k, v in values.items() if k.startswith("startup.")}
    stages = {k.removeprefix("dispatch.startup_s."): float(v) for k, v in values.items() if "startup_s." in k}
    case = "node start-up, joining a running Ray" if ray_address else "node start-up"
    row = _row(case, repo.name, t0, {"active": t_active, "warm": t_warm}, stages)
    row["node_stamps"] = ", ".join(f"{k}={v:.2f}" for k, v in node_stamps.items())
    row["node_actors_warm_s"] = node_stamps.get("actors_warm_s", float("nan"))
    row["cpu_s"] = ", ".join(f"{k}={v:.2f}" for k, v in sorted(cpu.items()))
    row["cpu"] = cpu
    return [row]


def run_node_rounds(repos: list[Path], rounds: int, period_s: float) -> list[dict]:
    """``rounds`` interleaved rounds of one node start-up per checkout in ``repos``; per checkout the median (range)
    of process start -> active and -> actors warm as the subscriber saw them, the node's own stamp of the actors
    warm, and the CPU seconds by kind of process at that moment."""
    samples: dict[Path, list[dict]] = {repo: [] for repo in repos}
    loads = []
    for _ in range(rounds):
        for repo in repos:
            loads.append(os.getloadavg()[0])
            samples[repo].append(run_node(repo, period_s=period_s)[0])
    loads.append(os.getloadavg()[0])

    def spread(values: list[float]) -> str:
        return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"

    rows = []
    for repo, runs in samples.items():
        kinds = sorted({k for r in runs for k in r["cpu"]})
        rows.append(
            {
                "checkout": f"{repo.name} ({_head(repo)})",
                "starts": len(runs),
                "active_s (subscriber)": spread([r["active_s"] for r in runs]),
                "warm_s (subscriber)": spread([r["warm_s"] for r in runs]),
                "warm_s, each start": " ".join(f"{r['warm_s']:.2f}" for r in runs),
                "actors_warm_s (node's stamp)": spread([r["node_actors_warm_s"] for r in runs]),
                "cpu_s at warm, median": ", ".join(
                    f"{k}={statistics.median([r['cpu'].get(k, 0.0) for r in runs]):.2f}" for k in kinds
                ),
                "diagnostics_period_s": period_s,
                "load": f"{min(loads):.1f}-{max(loads):.1f}",
            }
        )
    return rows


def _head(repo: Path) -> str:
    """The checkout's commit (or "?" for an exported tree without git)."""
    out = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    marker = repo / "COMMIT"
    return out.stdout.strip() if out.returncode == 0 else (marker.read_text().strip() if marker.is_file() else "?")


def run_node_joining(repo: Path = REPO) -> list[dict]:
    """The node's start-up when Ray already runs on the machine (``ray start --head``, e.g. as a system service):
    the node's dispatcher joins it (``dispatch.address``) and creates its actors there."""
    sys.path[:0] = [str(REPO / "tests")]
    from _dispatch_helpers import RayHead, free_port

    # As the embedded Ray does (dispatch.worker_niceness 0): Ray's default would run the actors at nice +15.
    os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112  (Ray reads this exact name)
    head = RayHead(free_port(), num_cpus=2, object_store_mb=256).start()
    try:
        time.sleep(5.0)  # the head's own start-up (agents, prestarted workers) is over before the node starts
        return run_node(repo, head.address)
    finally:
        head.stop()


#: Start variants of ``--head``: name -> (head services left out (z123_ros.dispatch.head.SKIPPABLE), DispatchConfig
#: fields). The last one is the default.
_OLD = {"connect_retry_ms": 1000, "prestart_workers": False}
HEAD_VARIANTS: dict[str, tuple[tuple[str, ...], dict]] = {
    "standard head (lean_head: false), Ray's 1 s socket retry, no prestart": ((), _OLD),
    "standard head, 100 ms socket retry": ((), {"prestart_workers": False}),
    "no API server, 1 s retry": (("start_api_server",), _OLD),
    "no API server, no autoscaler monitor, 1 s retry": (("start_api_server", "start_monitor"), _OLD),
    "lean head (none of the three), 1 s retry": (SKIPPABLE, _OLD),
    "lean head, 100 ms retry": (SKIPPABLE, {"prestart_workers": False}),
    "lean head, 100 ms retry, workers prestarted, Ray's 1 s registration retry": (
        SKIPPABLE,
        {"poll_registration": False},
    ),
    "lean head, 100 ms retry, workers prestarted, registration polled (the defaults)": (SKIPPABLE, {}),
}


def one_head_start(skip: tuple[str, ...], fields: dict) -> dict:
    """One cold start in this (fresh) process, as the dispatch child does it (in-process Dispatcher, the node's
    settings and ``fields``), with the head leaving out ``skip``; returns the stage durations and the head's
    processes."""
    dispatcher_module.head_services_to_skip = lambda *_: skip  # this variant's services, whatever the config says
    fields = dict(fields)
    poll = fields.pop("poll_registration", True)
    dispatcher_module.lean_head = functools.partial(head_module.lean_head, poll_registration=poll)
    with tempfile.TemporaryDirectory(prefix="z123h", dir="/tmp") as tmp:
        config = node_dispatch_config(tmp)
        for name, value in fields.items():
            setattr(config, name, value)
        d = Dispatcher(config)
        t0 = time.monotonic()
        d.start(wait_s=WAIT_S)
        if not d.wait_ready(WAIT_S):
            raise RuntimeError(f"actors not warm: {d.state_reason}")
        warm = time.monotonic() - t0
        stages = d.stats().startup_s
        processes = sorted(k.removesuffix("_pids") for k in ray_info() if k.endswith("_pids"))
        d.shutdown()
    return {"ray_up_and_warm_s": round(warm, 3), **stages, "processes": processes}


def run_head_variants(rounds: int) -> list[dict]:
    """``rounds`` interleaved rounds of one fresh-process cold start per HEAD_VARIANTS entry; medians per variant."""
    samples: dict[str, list[dict]] = {name: [] for name in HEAD_VARIANTS}
    loads = []
    for _ in range(rounds):
        for name, (skip, fields) in HEAD_VARIANTS.items():
            loads.append(os.getloadavg()[0])
            cmd = [sys.executable, __file__, "--one-head-start", ",".join(skip), json.dumps(fields)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=WAIT_S).stdout
            samples[name].append(json.loads(out.strip().splitlines()[-1]))
    rows = []
    for name, runs in samples.items():
        keys = ("ray_up_and_warm_s", "ray_init", "actor_create", "worker_build", "first_warm", "all_warm")
        row = {"head": name, "runs": len(runs)}
        for key in keys:
            values = [r[key] for r in runs if key in r]
            row[key] = f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})" if values else "-"
        row["processes"] = " ".join(runs[-1]["processes"])
        row["load"] = f"{min(loads):.1f}-{max(loads):.1f}"
        rows.append(row)
    return rows


def run(quick: bool = False) -> list[dict]:
    return run_dispatcher(quick, compare=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="cold start and the raylet kill only")
    parser.add_argument("--compare", action="store_true", help="also without the standby dispatch process")
    parser.add_argument("--node", action="store_true", help="also the ROS node's start-up (needs rclpy)")
    parser.add_argument(
        "--repo", type=Path, nargs="+", default=[REPO], help="--node: the checkout(s) whose node is started"
    )
    parser.add_argument("--rounds", type=int, metavar="N", help="--node: N interleaved start-ups per checkout")
    parser.add_argument("--period", type=float, default=0.1, help="--node: the node's diagnostics_period_s")
    parser.add_argument("--join", action="store_true", help="--node: also joining a running `ray start --head`")
    parser.add_argument("--no-dispatcher", action="store_true", help="skip parts 1 and 2")
    parser.add_argument(
        "--cold-bytecode",
        action="store_true",
        help="--node: leave the checkouts' bytecode as it is (by default it is written first: a warm cache)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here, one JSON object per line")
    parser.add_argument("--head", type=int, metavar="ROUNDS", help="only the head variants, ROUNDS rounds")
    parser.add_argument("--one-head-start", nargs=2, help=argparse.SUPPRESS)  # --head's child: SKIP FIELDS_JSON
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if args.one_head_start is not None:
        skip, fields = args.one_head_start
        print(json.dumps(one_head_start(tuple(filter(None, skip.split(","))), json.loads(fields))))
        return
    print(f"load average at start: {os.getloadavg()}")
    if args.head:
        rows = run_head_variants(args.head)
    else:
        rows = [] if args.no_dispatcher else run_dispatcher(args.quick, args.compare)
    repos = [repo.resolve() for repo in args.repo]
    if args.node and not args.cold_bytecode:
        for repo in repos:
            compile_package(repo)
    if args.node and args.rounds:
        rows += run_node_rounds(repos, args.rounds, args.period)
    elif args.node and not args.head:
        for repo in repos:
            rows += run_node(repo, period_s=args.period)
    if args.node and args.join:
        rows += run_node_joining(repos[-1])
    rows = [{k: v for k, v in r.items() if k != "cpu"} for r in rows]  # cpu: the raw dict behind the cpu_s column
    print(f"load average at end: {os.getloadavg()}")
    print(markdown_table(rows))
    if args.json:
        with args.json.open("a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
