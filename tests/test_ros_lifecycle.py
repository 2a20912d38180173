"""z123_node's lifecycle in process, without Ray: configure validates parameters, cleanup releases, bad values fail
the transition instead of crashing."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("z123_interfaces")

from rclpy.lifecycle import TransitionCallbackReturn  # noqa: E402

from z123_ros.ros.node import Z123Node  # noqa: E402

pytestmark = pytest.mark.ros


def _node(*overrides: str) -> tuple[Z123Node, rclpy.context.Context]:
    context = rclpy.context.Context()
    args = ["--ros-args"]
    for item in overrides:
        args += ["-p", item]
    rclpy.init(context=context, args=args)
    return Z123Node(context=context), context


def test_configure_cleanup_cycle_reads_parameters() -> None:
    node, context = _node("max_segmentation_rate_hz:=3", "segmentation.stride:=2", "dispatch.address:=''")
    try:
        assert node.describe_parameter("sync_slop_s").description.startswith("Largest stamp difference")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node.config.max_segmentation_rate_hz == 3.0 and node.config.segmentation.stride == 2
        assert node.config.dispatch.address is None
        assert node.diagnostics()["state"] == "configured"
        assert node.trigger_cleanup() == TransitionCallbackReturn.SUCCESS
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    finally:
        node.release()
        node.destroy_node()
        rclpy.shutdown(context=context)


@pytest.mark.parametrize(
    "override",
    [
        "backend:=multiview",  # a learned backend without dispatch.reconstruction.model_path
        "dispatch.address:=nohostport",
        "tracking.smoothing:=0.0",
    ],
)
def test_invalid_parameters_fail_configure(override: str) -> None:
    node, context = _node(override)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node.config is None
    finally:
        node.release()
        node.destroy_node()
        rclpy.shutdown(context=context)


def _dispatch_processes() -> list[int]:
    children = psutil.Process().children()
    return [p.pid for p in children if "z123_ros.dispatch.child" in " ".join(p.cmdline()) and p.is_running()]


def test_the_dispatch_process_starts_with_the_node_and_configure_hands_it_to_the_dispatcher() -> None:
    """The dispatch process starts when the node is made (its Python start overlaps the node's own), the dispatcher
    made at configure adopts that one (no second process), and release() ends it. No Ray starts here."""
    before = set(_dispatch_processes())
    node, context = _node()
    try:
        started = set(_dispatch_processes()) - before
        assert len(started) == 1
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert set(_dispatch_processes()) - before == started
    finally:
        node.release()
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert set(_dispatch_processes()) - before == set()


def test_out_of_range_parameter_is_refused_at_startup() -> None:
    context = rclpy.context.Context()
    rclpy.init(context=context, args=["--ros-args", "-p", "sync_queue_size:=0"])
    try:
        with pytest.raises(rclpy.exceptions.InvalidParameterValueException):
            Z123Node(context=context)
    finally:
        rclpy.shutdown(context=context)


class _WarmingDispatcher:
    """Test double of the node's dispatcher: "starts" at once and becomes warm when the test says so (proves that
    /diagnostics goes out when the actors are warm, not at the next period)."""

    def __init__(self, config) -> None:
        self.config = config
        self.warm = threading.Event()
        self.stopped = False

    def start(self, wait_s: float | None = None) -> str:
        return "connecting"

    def wait_ready(self, timeout_s: float) -> bool:
        return self.warm.wait(timeout_s) and not self.stopped

    def stats(self) -> SimpleNamespace:
        return SimpleNamespace(flat=lambda: {"state": "ready" if self.warm.is_set() else "connecting"})

    def startup_stamps(self) -> dict[str, float]:
        return {}

    def shutdown(self) -> None:
        self.stopped = True
        self.warm.set()


def test_diagnostics_go_out_when_the_actors_are_warm_not_at_the_next_period() -> None:
    """With a 60 s period the timer publishes nothing for a minute: the one message that arrives is the one sent when
    the dispatcher reported its actors warm, and it says so."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor

    node, context = _node("diagnostics_period_s:=60.0")
    executor = SingleThreadedExecutor(context=context)
    received: list[dict[str, str]] = []
    probe = rclpy.create_node("z123_lifecycle_probe", context=context)
    probe.create_subscription(
        DiagnosticArray, "/diagnostics", lambda m: received.append({v.key: v.value for v in m.status[0].values}), 10
    )
    executor.add_node(node)
    executor.add_node(probe)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    try:
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        node._dispatcher.shutdown()  # the prepared dispatcher (its process): replaced by the double
        double = node._dispatcher = _WarmingDispatcher(node.config.dispatch)
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        spinner.start()
        assert not received
        double.warm.set()
        deadline = time.monotonic() + 30.0
        while not received and time.monotonic() < deadline:
            time.sleep(0.02)
        assert received, "no /diagnostics message after the actors were warm"
        assert received[0]["dispatch.state"] == "ready" and received[0]["state"] == "running"
    finally:
        executor.shutdown()
        node.release()
        probe.destroy_node()
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_the_node_module_loads_without_the_segmentation_stack() -> None:
    """Importing the node's module (what ``python -m z123_ros.ros.node`` does before it can start the dispatch
    process) leaves the segmentation stack and scipy to the node's constructor, which starts the dispatch process
    first: that process's Python start and Ray import (0.5 s) then overlap the node's remaining imports."""
    probe = (
        "import sys, z123_ros.ros.node\n"
        "print(','.join(m for m in ('scipy', 'z123_ros.segmentation', 'z123_ros.ros.pipeline') if m in sys.modules))"
    )
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=root, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_segmenter_warms_up_at_activation_once_ray_is_starting() -> None:
    """The segmenter's warm-up runs at activation after the dispatcher was told to start (Ray starts meanwhile in
    the dispatch process), not at configure, where it delayed Ray's start by its 0.1 s."""
    node, context = _node()
    calls: list[str] = []
    try:
        node._pipeline._warm_up = lambda segmenter: calls.append("segmenter warm-up")
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert calls == []
        node._dispatcher.shutdown()  # the prepared dispatcher (its process): replaced by the double
        double = node._dispatcher = _WarmingDispatcher(node.config.dispatch)
        double.start = lambda wait_s=None: calls.append("dispatcher started")
        assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        assert calls == ["dispatcher started", "segmenter warm-up"]
    finally:
        node.release()
        node.destroy_node()
        rclpy.shutdown(context=context)
