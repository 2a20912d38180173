"""``sim_camera``: a simulated RGB-D camera publishing a rendered tabletop scene of real YCB scans.

It renders one scene with :func:`z123_ros.sim.render_tabletop_scene` (pybullet TinyRenderer, CPU) at start-up and
publishes it at ``rate_hz`` with fresh stamps, like a camera driver looking at a static table: colour (rgb8), depth
(32FC1 metres or 16UC1 millimetres, registered to colour) and CameraInfo, on the topics ``z123_node`` listens to by
default. Ground truth for evaluation goes to a side channel:

- ``~/ground_truth`` (std_msgs/String, latched): JSON with ``T_cam_from_world``, the intrinsics and per object its
  id, YCB name, visible fraction, pixel count and, when ``ground_truth_dir`` is set, the path of its mesh;
- ``ground_truth_dir`` (parameter): when set, ``scene.json`` (the same JSON), ``object_<id>.ply`` (meshes in metres,
  world frame) and ``instance_ids.png`` are written there at start-up.

Run: ``python -m z123_ros.ros.sim_camera_node --ros-args --params-file config/sim_camera.yaml``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header, String

from z123_ros.errors import Z123Error
from z123_ros.ros import conversions as conv
from z123_ros.ros.params import declare_parameters, read_parameters
from z123_ros.sim import RenderedScene, SceneConfig, render_tabletop_scene

NODE_NAME = "sim_camera"


@dataclass
class SimCameraConfig:
    """Parameters of ``sim_camera``. Each field is one ROS parameter (the scene's are ``scene.*``)."""

    rate_hz: float = field(default=15.0, metadata={"range": (0.1, 120.0)})
    """Frames published per second."""
    frame_id: str = "camera_color_optical_frame"
    """frame_id of every header (an OpenCV optical frame: x right, y down, z forward)."""
    colour_topic: str = "camera/color/image_raw"
    """Colour image topic (rgb8)."""
    depth_topic: str = "camera/aligned_depth_to_color/image_raw"
    """Depth image topic, registered to colour; empty = do not publish depth."""
    camera_info_topic: str = "camera/color/camera_info"
    """CameraInfo topic."""
    depth_encoding: str = field(default="32FC1", metadata={"choices": ("32FC1", "16UC1")})
    """32FC1 (metres, NaN = no reading) or 16UC1 (millimetres, 0 = no reading), like real RGB-D drivers."""
    qos: str = field(default="sensor_data", metadata={"choices": ("sensor_data", "reliable")})
    """QoS of the camera topics."""
    ground_truth_dir: str = ""
    """When set, write scene.json, object_<id>.ply and instance_ids.png there at start-up."""
    max_frames: int = field(default=0, metadata={"range": (0, 2**31 - 1)})
    """Stop publishing after this many frames (0 = forever)."""
    scene: SceneConfig = field(default_factory=SceneConfig)


def ground_truth_json(scene: RenderedScene, mesh_paths: dict[int, str] | None = None) -> dict[str, Any]:
    """The ground-truth record of a rendered scene (what ``~/ground_truth`` and ``scene.json`` hold)."""
    intr = scene.intrinsics
    return {
        "T_cam_from_world": np.asarray(scene.T_cam_from_world).tolist(),
        "intrinsics": {
            "fx": intr.fx,
            "fy": intr.fy,
            "cx": intr.cx,
            "cy": intr.cy,
            "width": intr.width,
            "height": intr.height,
        },
        "world_frame": "table top at z = 0, +z up",
        "objects": [
            {
                "id": int(o.id),
                "name": o.name,
                "visible_fraction": float(o.visible_fraction),
                "pixel_count": int(o.pixel_count),
                "T_world_from_object": np.asarray(o.T_world_from_object).tolist(),
                "mesh_world_ply": (mesh_paths or {}).get(o.id, ""),
            }
            for o in scene.objects
        ],
    }


def scene_messages(
    scene: RenderedScene, header: Header, depth_encoding: str = "32FC1"
) -> tuple[Image, Image, CameraInfo]:
    """(colour rgb8, depth, camera info) messages of a rendered scene, all with ``header``."""
    colour = conv.numpy_to_image(np.ascontiguousarray(scene.rgb), "rgb8", header)
    depth_m = np.asarray(scene.depth_m, dtype=np.float32)
    if depth_encoding == "16UC1":
        mm = np.where(np.isfinite(depth_m), np.round(depth_m * 1000.0), 0.0)
        depth = conv.numpy_to_image(np.clip(mm, 0, 65535).astype(np.uint16), "16UC1", header)
    else:
        depth = conv.numpy_to_image(np.ascontiguousarray(depth_m), "32FC1", header)
    info = conv.intrinsics_to_camera_info(scene.intrinsics, header)
    return colour, depth, info


class SimCameraNode(Node):
    """Publishes one rendered scene as a camera stream; see the module docstring."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._specs = declare_parameters(self, SimCameraConfig())
        self.config: SimCameraConfig = read_parameters(self, SimCameraConfig(), self._specs)
        config = self.config
        config.scene.check()
        t0 = time.monotonic()
        self.scene = render_tabletop_scene(config.scene)
        names = ", ".join(o.name for o in self.scene.objects)
        self.get_logger().info(f"rendered {names} in {time.monotonic() - t0:.1f} s")
        qos = qos_profile_sensor_data if config.qos == "sensor_data" else QoSProfile(depth=5)
        self._pub_colour = self.create_publisher(Image, config.colour_topic, qos)
        self._pub_depth = self.create_publisher(Image, config.depth_topic, qos) if config.depth_topic else None
        self._pub_info = self.create_publisher(CameraInfo, config.camera_info_topic, qos)
        latched = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
        )
        self._pub_gt = self.create_publisher(String, "~/ground_truth", latched)
        self._pub_gt.publish(String(data=json.dumps(self._write_ground_truth())))
        # The pixels never change: encode once, restamp per frame.
        self._colour, self._depth, self._info = scene_messages(
            self.scene, Header(frame_id=config.frame_id), config.depth_encoding
        )
        self.frames_published = 0
        self._timer = self.create_timer(1.0 / config.rate_hz, self._tick)

    def _write_ground_truth(self) -> dict[str, Any]:
        out_dir = self.config.ground_truth_dir
        if not out_dir:
            return ground_truth_json(self.scene)
        import cv2

        folder = Path(out_dir)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for obj in self.scene.objects:
            path = folder / f"object_{obj.id}.ply"
            obj.mesh_world.export(path)
            paths[obj.id] = str(path)
        cv2.imwrite(str(folder / "instance_ids.png"), self.scene.instance_ids.astype(np.uint16))
        record = ground_truth_json(self.scene, paths)
        (folder / "scene.json").write_text(json.dumps(record, indent=1))
        return record

    def _tick(self) -> None:
        if self.config.max_frames and self.frames_published >= self.config.max_frames:
            return
        stamp = self.get_clock().now().to_msg()
        for msg in (self._colour, self._depth, self._info):
            msg.header.stamp = stamp
        self._pub_colour.publish(self._colour)
        if self._pub_depth is not None:
            self._pub_depth.publish(self._depth)
        self._pub_info.publish(self._info)
        self.frames_published += 1


def main(args: list[str] | None = None) -> int:
    """Run the simulated camera until Ctrl-C / SIGTERM. Returns the exit code."""
    rclpy.init(args=args)
    try:
        node = SimCameraNode()
    except Z123Error as exc:
        rclpy.logging.get_logger(NODE_NAME).fatal(f"cannot start: {exc}")
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
