"""Helpers of the tf, bag and compressed-transport tests: the simulated camera in a thread, z123_node under a name of
its own (so two can run side by side)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import yaml
from _ros_helpers import NODE_YAML, REPO, NodeProcess


class CameraThread:
    """A SimCameraNode spinning in its own context and thread, and a log of every /tf it publishes (test helper)."""

    def __init__(self, params: dict) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.parameter import Parameter
        from tf2_msgs.msg import TFMessage

        from z123_ros.ros.sim_camera_node import SimCameraNode
        from z123_ros.ros.tf_listener import TF_QOS

        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, args=[])
        # Subscribed before the camera exists: same DDS participant, so it matches before the first frame.
        self.recorder = rclpy.create_node("tf_recorder", context=self.context)
        self.tf_log: list = []
        self.recorder.create_subscription(TFMessage, "/tf", self.tf_log.append, TF_QOS)
        overrides = [Parameter(k, value=v) for k, v in params.items()]
        self.node = SimCameraNode(context=self.context, parameter_overrides=overrides)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.executor.add_node(self.recorder)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def close(self) -> None:
        import rclpy

        self._stop.set()
        self._thread.join(timeout=10)
        self.executor.shutdown()
        self.node.destroy_node()
        self.recorder.destroy_node()
        rclpy.shutdown(context=self.context)


class NamedNodeProcess(NodeProcess):
    """``z123_node`` as a child process renamed to ``name`` (outputs on /<name>/...), parameters ``overrides``
    (dotted names) over config/z123_node.yaml."""

    def __init__(self, name: str, overrides: dict[str, Any], folder: Path) -> None:
        data = yaml.safe_load(NODE_YAML.read_text())
        params = data["z123_node"]["ros__parameters"]
        for dotted, value in overrides.items():
            cursor = params
            *parents, last = dotted.split(".")
            for part in parents:
                cursor = cursor.setdefault(part, {})
            cursor[last] = value
        params_file = folder / f"{name}.yaml"
        # "/**": the parameters apply whatever the node is renamed to.
        params_file.write_text(yaml.safe_dump({"/**": {"ros__parameters": params}}))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self.log_path = folder / f"{name}.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "z123_ros.ros.node", "--ros-args", "-r", f"__node:={name}"]
        self.proc = subprocess.Popen(
            [*cmd, "--params-file", str(params_file)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO),
            start_new_session=True,
        )
