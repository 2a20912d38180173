"""Helpers of the ROS tests and the node benchmark: start z123_node as its own process, and a probe node that plays
the camera (rendered YCB scenes from z123_ros.sim) and records what the node publishes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import yaml

REPO = Path(__file__).resolve().parent.parent
NODE_YAML = REPO / "config" / "z123_node.yaml"


def read_params(path: Path = NODE_YAML, node_name: str = "z123_node") -> dict[str, Any]:
    """A ``--params-file`` YAML's parameters of ``node_name``, by dotted name (what build_config takes)."""

    def leaves(d: dict, prefix: str = ""):
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            yield from leaves(v, name) if isinstance(v, dict) else [(name, v)]

    return dict(leaves(yaml.safe_load(path.read_text())[node_name]["ros__parameters"]))


def write_params(path: Path, overrides: dict[str, Any], base: Path = NODE_YAML, node_name: str = "z123_node") -> Path:
    """Copy the node's YAML with ``overrides`` (dotted names) applied, to ``path``."""
    data = yaml.safe_load(base.read_text())
    params = data[node_name]["ros__parameters"]
    for dotted, value in overrides.items():
        cursor = params
        parts = dotted.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = value
    path.write_text(yaml.safe_dump(data))
    return path


class NodeProcess:
    """``python -m z123_ros.ros.node --ros-args --params-file ...`` as a child process, logging to a file."""

    def __init__(self, params_file: Path, log_path: Path, module: str = "z123_ros.ros.node") -> None:
        env = dict(os.environ)
        # The child must run this checkout's code, not an installed copy.
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--ros-args", "--params-file", str(params_file)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(REPO),
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGINT (as Ctrl-C), then SIGKILL of the process group if it does not exit in ``timeout``."""
        if self.alive():
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()
        return self.proc.returncode


class Probe:
    """A probe node in the test process: publishes camera frames, records every output of z123_node."""

    def __init__(
        self,
        node_name: str = "z123_probe",
        target: str = "/z123_node",
        reliable_camera: bool = True,
        raw: tuple[str, ...] = (),
    ) -> None:
        """``raw``: outputs recorded as serialised bytes, deserialised only when read (:meth:`records`), so that
        their arrival time is the delivery of the bytes, not the Python deserialisation of a large mesh or marker
        array in this probe's single executor thread (which delays every other message behind it)."""
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2
        from visualization_msgs.msg import MarkerArray
        from z123_interfaces.msg import ObjectReconstruction, ObjectSegmentation
        from z123_interfaces.srv import ReconstructObject

        self.context = rclpy.context.Context()
        rclpy.init(context=self.context, args=[])
        self.node = rclpy.create_node(node_name, context=self.context)
        self.lock = threading.Lock()
        self.received: dict[str, list[tuple[float, Any]]] = defaultdict(list)
        self._types: dict[str, Any] = {}
        reliable = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
        )
        # Best-effort megabyte images over loopback UDP lose most frames when the CPU is busy (DDS fragments are
        # dropped): tests publish reliably (the node then subscribes with input_qos: reliable).
        camera_qos = (
            QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
            if reliable_camera
            else (qos_profile_sensor_data)
        )
        self.pub_colour = self.node.create_publisher(Image, "camera/color/image_raw", camera_qos)
        self.pub_depth = self.node.create_publisher(Image, "camera/aligned_depth_to_color/image_raw", camera_qos)
        self.pub_info = self.node.create_publisher(CameraInfo, "camera/color/camera_info", camera_qos)
        for name, msg_type, topic, qos in (
            ("segmentation", ObjectSegmentation, f"{target}/segmentation", reliable),
            ("reconstruction", ObjectReconstruction, f"{target}/reconstruction", reliable),
            ("cloud", PointCloud2, f"{target}/objects_cloud", latched),
            ("markers", MarkerArray, f"{target}/markers", latched),
            ("diagnostics", DiagnosticArray, "/diagnostics", reliable),
        ):
            self._types[name] = msg_type
            self.node.create_subscription(msg_type, topic, self._recorder(name), qos, raw=name in raw)
        self.service = self.node.create_client(ReconstructObject, f"{target}/reconstruct_object")
        from rcl_interfaces.srv import SetParameters

        self.param_client = self.node.create_client(SetParameters, f"{target}/set_parameters")
        self.SetParameters = SetParameters
        self.ReconstructObject = ReconstructObject
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self.lock:
                self.received[name].append((time.monotonic(), msg))

        return record

    def _spin(self) -> None:
        while not self._stop and self.context.ok():
            self.executor.spin_once(timeout_sec=0.05)

    def records(self, name: str) -> list[tuple[float, Any]]:
        """(time.monotonic() at arrival, message) of every ``name`` message so far (raw ones deserialised now)."""
        from rclpy.serialization import deserialize_message

        with self.lock:
            records = list(self.received[name])
        return [(t, deserialize_message(m, self._types[name]) if isinstance(m, bytes) else m) for t, m in records]

    def messages(self, name: str) -> list[Any]:
        return [m for _, m in self.records(name)]

    def diagnostics(self) -> dict[str, str]:
        """Key-values of the latest /diagnostics status of z123_node ({} before the first)."""
        for msg in reversed(self.messages("diagnostics")):
            for status in msg.status:
                if status.hardware_id == "z123_node":
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def stamp(self) -> Any:
        return self.node.get_clock().now().to_msg()

    def publish_frame(self, colour: Any, depth: Any, info: Any, stamp: Any = None) -> Any:
        """Publish one frame with a common (fresh by default) stamp; returns the stamp."""
        stamp = stamp or self.stamp()
        for msg in (colour, depth, info):
            if msg is not None:
                msg.header.stamp = stamp
        self.pub_colour.publish(colour)
        if depth is not None:
            self.pub_depth.publish(depth)
        self.pub_info.publish(info)
        return stamp

    def set_parameters(self, values: dict[str, Any], timeout: float = 20.0) -> list[Any]:
        """Set parameters of the target node at run time; returns the SetParametersResult list."""
        from rclpy.parameter import Parameter

        request = self.SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        return self.call(request, timeout, client=self.param_client).results

    def call(self, request: Any, timeout: float = 20.0, client: Any = None) -> Any:
        client = client or self.service
        if not client.wait_for_service(timeout_sec=timeout):
            raise TimeoutError(f"service {client.srv_name} not available")
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.02)
        if not future.done():
            raise TimeoutError("reconstruct_object call timed out")
        return future.result()

    def close(self) -> None:
        import rclpy

        self._stop = True
        self._thread.join(timeout=5)
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)


def dispatcher_warm(values: dict[str, str]) -> bool:
    """True when the node's /diagnostics ``values`` say it is active with Ray up and every actor warm (activation
    does not wait for Ray: it starts in the background)."""
    total = int(values.get("dispatch.actors_total", 0) or 0)
    return (
        values.get("state") == "running"
        and values.get("dispatch.state") == "ready"
        and total > 0
        and int(values.get("dispatch.actors_ready", 0) or 0) == total
    )


def wait_for(
    predicate: Callable[[], Any], timeout: float, period: float = 0.05, tick: Callable[[], None] | None = None
):
    """Poll ``predicate`` until truthy (returned) or ``timeout`` (returns the last falsy value); ``tick`` runs each
    period (e.g. publish the next camera frame)."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        if tick is not None:
            tick()
        time.sleep(period)
        value = predicate()
    return value


def stamp_key(stamp: Any) -> tuple[int, int]:
    return int(stamp.sec), int(stamp.nanosec)


def full_mask(seg_obj: Any, width: int, height: int) -> np.ndarray:
    """The full-image bool mask of a SegmentedObject message (its mask is a box-sized mono8 crop)."""
    from z123_ros.ros.conversions import image_to_numpy

    out = np.zeros((height, width), bool)
    box = seg_obj.box
    crop = image_to_numpy(seg_obj.mask) > 0
    out[box.y_offset : box.y_offset + box.height, box.x_offset : box.x_offset + box.width] = crop
    return out
