"""Helpers of the dispatch tests and benchmark: a callback sink, a free port, `ray start` head and worker nodes."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import psutil

from z123_ros.camera import CameraIntrinsics
from z123_ros.dispatch import JobResult

REPO_ROOT = Path(__file__).resolve().parents[1]


class Results:
    """on_done sink: ``results.wait(job_id)`` blocks until that job's JobResult arrived (or fails the test)."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self.by_id: dict[int, JobResult] = {}
        self.threads: set[str] = set()

    def __call__(self, job_id: int, result: JobResult) -> None:
        with self._cv:
            self.by_id[job_id] = result
            self.threads.add(threading.current_thread().name)
            self._cv.notify_all()

    def wait(self, job_id: int, timeout_s: float = 60.0) -> JobResult:
        with self._cv:
            if not self._cv.wait_for(lambda: job_id in self.by_id, timeout_s):
                raise AssertionError(f"job {job_id} got no result within {timeout_s} s (the dispatcher hangs)")
            return self.by_id[job_id]


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str, period_s: float = 0.05) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(period_s)


def record_reliability(case: str, **figures: object) -> None:
    """Append one measured case to the file named by Z123_RELIABILITY_OUT (scripts/reliability_table.py)."""
    path = os.environ.get("Z123_RELIABILITY_OUT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"case": case, **figures, "load": round(os.getloadavg()[0], 1)}) + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    """A separate Ray head process (`ray start --head --block`) on 127.0.0.1, stopped by killing its process tree.

    Never `ray stop`: that stops every Ray on the machine, including other people's.
    """

    def __init__(
        self,
        port: int,
        num_cpus: float = 1,
        object_store_mb: int = 80,
        join: str | None = None,
        resources: dict[str, float] | None = None,
    ) -> None:
        """``join``: the head's address; then this is a worker node (``ray start --address``), not a head."""
        self.port = port
        self.address = join or f"127.0.0.1:{port}"
        self._join = join
        self._resources = resources or {}
        self._num_cpus = num_cpus
        self._object_store_mb = object_store_mb
        self._tmp = tempfile.mkdtemp(prefix="z123_rayhead_")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> RayHead:
        ray_cli = Path(sys.executable).with_name("ray")
        env = dict(os.environ)
        # The head's workers run the dispatcher's actors: they must import this checkout of z123_ros.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        env["RAY_AUTH_MODE"] = "token"  # the default of a head that finds ~/.ray/auth_token; made explicit
        role = (
            [f"--address={self._join}"]
            if self._join
            else ["--head", f"--port={self.port}", "--include-dashboard=false"]
        )
        cmd = [
            str(ray_cli),
            "start",
            *role,
            "--block",
            "--node-ip-address=127.0.0.1",
            "--disable-usage-stats",
            f"--num-cpus={self._num_cpus}",
            "--num-gpus=0",
            f"--object-store-memory={self._object_store_mb * 1024 * 1024}",
            f"--temp-dir={self._tmp}",
        ]
        if self._resources:
            cmd.append(f"--resources={json.dumps(self._resources)}")
        # Fixed default ports (dashboard agent 52365, metrics, ...) collide with any other Ray on this
        # machine, e.g. a parallel test's embedded one: take free ones.
        for option in (
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "node-manager-port",
            "object-manager-port",
        ):
            cmd.append(f"--{option}={free_port()}")
        self._log = Path(self._tmp) / "ray_start.log"
        with self._log.open("ab") as log:
            self.proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if self._join:
                    # A worker node opens no port of its own to wait for: its log says when it is up.
                    if "Ray runtime started" not in self._log.read_text(errors="replace"):
                        raise OSError("not yet")
                else:
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    output = self._log.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"`ray start --head` exited with {self.proc.returncode}:\n{output}") from None
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"ray head did not open port {self.port} in {timeout_s} s") from None
                time.sleep(0.2)

    def pids(self) -> set[int]:
        """This node's processes (its `ray start`, raylet, workers...)."""
        if self.proc is None:
            return set()
        try:
            root = psutil.Process(self.proc.pid)
            return {root.pid, *(p.pid for p in root.children(recursive=True))}
        except psutil.NoSuchProcess:
            return set()

    def stop(self) -> None:
        """Kill the node and every process it spawned (GCS, raylet, workers); idempotent."""
        if self.proc is None:
            return
        try:
            tree = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.send_signal(signal.SIGKILL)
        psutil.wait_procs(tree, timeout=10)
        self.proc.wait(timeout=10)
        self.proc = None

    def cleanup(self) -> None:
        """Stop the head and remove its session folder (logs included)."""
        self.stop()
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> RayHead:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def ball_input():
    """A ball of radius 4 cm, 0.4 m in front of the camera, against a wall at 0.5 m: exact depth, 48x64."""
    from z123_ros.reconstruction import ReconstructionInput  # the reconstruction stack: only the tests that use it

    h, w = 48, 64
    intrinsics = CameraIntrinsics.from_fov(60.0, w, h)
    v, u = np.mgrid[0:h, 0:w]
    x, y = (u - intrinsics.cx) / intrinsics.fx, (v - intrinsics.cy) / intrinsics.fy
    # Ray (x, y, 1) * z meets the sphere |p - (0, 0, 0.4)| = 0.04 where a z^2 - 0.8 z + 0.16 - 0.04^2 = 0.
    a = x**2 + y**2 + 1
    disc = 0.64 - 4 * a * (0.16 - 0.04**2)
    mask = disc > 0
    depth = np.where(mask, (0.8 - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.5).astype(np.float32)
    assert mask.sum() > 50
    return ReconstructionInput(rgb=np.full((h, w, 3), 200, np.uint8), mask=mask, intrinsics=intrinsics, depth_m=depth)
