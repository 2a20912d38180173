"""``sim_camera``: a simulated RGB-D camera publishing a rendered tabletop scene of real YCB scans.

It renders one scene with :func:`z123_ros.sim.render_tabletop_scene` (pybullet TinyRenderer, CPU) at start-up and
publishes it at ``rate_hz`` with fresh stamps, like a camera driver looking at a static table: colour (rgb8), depth
(32FC1 metres or 16UC1 millimetres, registered to colour) and CameraInfo, on the topics ``z123_node`` listens to by
default; with ``colour_transport`` / ``depth_transport: compressed`` on ``<topic>/compressed`` (jpeg or png) and
``<topic>/compressedDepth`` (16UC1 png) instead, as image_transport names them.

The camera pose goes on tf as ``world_frame -> frame_id`` (T_world_from_camera):

- ``trajectory: static``: once on /tf_static (latched), the camera never moves;
- ``trajectory: orbit``: ``orbit_views`` poses around the table over ``orbit_span_deg`` of azimuth (starting at the
  scene's azimuth) are rendered at start-up; frame k shows pose k (back and forth unless the span is 360 degrees)
  and its pose goes on /tf with the frame's own stamp, so a node looking up world <- camera at the image stamp gets
  exactly the pose the frame was rendered from.

Ground truth for evaluation goes to a side channel:

- ``~/ground_truth`` (std_msgs/String, latched): JSON with ``T_cam_from_world``, the intrinsics and per object its
  id, YCB name, visible fraction, pixel count and, when ``ground_truth_dir`` is set, the path of its mesh; plus the
  frame names, the trajectory and ``views_T_cam_from_world`` (every rendered pose, in publishing order of views);
- ``ground_truth_dir`` (parameter): when set, ``scene.json`` (the same JSON), ``object_<id>.ply`` (meshes in metres,
  world frame) and ``instance_ids.png`` are written there at start-up.

Run: ``python -m z123_ros.ros.sim_camera_node --ros-args --params-file config/sim_camera.yaml``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String
from tf2_msgs.msg import TFMessage

from z123_ros.camera import invert
from z123_ros.errors import Z123Error
from z123_ros.ros import conversions as conv
from z123_ros.ros import tf_listener as tfl
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
    world_frame: str = "world"
    """Parent frame of the camera pose on tf: the table top at z = 0, +z up (the ground truth's world frame)."""
    trajectory: str = field(default="static", metadata={"choices": ("static", "orbit")})
    """static: one pose on /tf_static; orbit: the camera moves around the table, its pose on /tf with every frame."""
    orbit_views: int = field(default=12, metadata={"range": (2, 720)})
    """Poses rendered along the orbit at start-up (each costs one render); frames step through them."""
    orbit_span_deg: float = field(default=90.0, metadata={"range": (1.0, 360.0)})
    """Azimuth covered by the orbit, degrees, from scene.camera_azimuth_deg; 360 = full circle, else back and forth."""
    colour_transport: str = field(default="raw", metadata={"choices": ("raw", "compressed")})
    """raw: sensor_msgs/Image on colour_topic; compressed: CompressedImage on colour_topic + '/compressed'."""
    colour_format: str = field(default="jpeg", metadata={"choices": ("jpeg", "png")})
    """Codec of the compressed colour transport."""
    jpeg_quality: int = field(default=90, metadata={"range": (1, 100)})
    """JPEG quality of the compressed colour transport (image_transport's default is 95)."""
    depth_transport: str = field(default="raw", metadata={"choices": ("raw", "compressed")})
    """raw: Image on depth_topic; compressed: '16UC1; compressedDepth png' on depth_topic + '/compressedDepth'."""
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


def orbit_azimuths_deg(start_deg: float, span_deg: float, views: int) -> list[float]:
    """Azimuths of the orbit's rendered poses: evenly over a full circle, or over [start, start + span] inclusive."""
    if span_deg >= 360.0:
        return [start_deg + 360.0 * k / views for k in range(views)]
    return [start_deg + span_deg * k / (views - 1) for k in range(views)]


def view_sequence(views: int, full_circle: bool) -> list[int]:
    """Order in which frames show the views: round and round a full circle, back and forth over an arc."""
    if full_circle or views < 3:
        return list(range(views))
    return list(range(views)) + list(range(views - 2, 0, -1))


def _azimuth_deg(T_cam_from_world: np.ndarray) -> float:
    eye = invert(T_cam_from_world)[:3, 3]
    return float(np.rad2deg(np.arctan2(eye[1], eye[0])))


@dataclass
class _View:
    """One rendered camera pose and its encoded messages (the pixels never change: encode once, restamp)."""

    T_cam_from_world: np.ndarray
    """4x4 pose the view was rendered from."""
    colour: Any
    """Its colour message (Image, or CompressedImage with colour_transport: compressed)."""
    depth: Any
    """Its depth message (Image, or CompressedImage with depth_transport: compressed)."""


class SimCameraNode(Node):
    """Publishes one rendered scene as a camera stream, from a static or orbiting camera; see the module docstring."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._specs = declare_parameters(self, SimCameraConfig())
        self.config: SimCameraConfig = read_parameters(self, SimCameraConfig(), self._specs)
        config = self.config
        config.scene.check()
        t0 = time.monotonic()
        self.scene = render_tabletop_scene(config.scene)
        self.views = self._render_views()
        names = ", ".join(o.name for o in self.scene.objects)
        self.get_logger().info(f"rendered {names} from {len(self.views)} pose(s) in {time.monotonic() - t0:.1f} s")
        self._sequence = view_sequence(len(self.views), config.orbit_span_deg >= 360.0)
        self._create_publishers()
        self._pub_gt.publish(String(data=json.dumps(self._write_ground_truth())))
        if config.trajectory == "static":
            T_world_from_cam = invert(self.scene.T_cam_from_world)
            stamp = self.get_clock().now().to_msg()
            tf = tfl.transform_stamped(config.world_frame, config.frame_id, T_world_from_cam, stamp)
            self._pub_tf_static.publish(TFMessage(transforms=[tf]))
        self._info = conv.intrinsics_to_camera_info(self.scene.intrinsics, Header(frame_id=config.frame_id))
        self.frames_published = 0
        self._timer = self.create_timer(1.0 / config.rate_hz, self._tick)

    def _create_publishers(self) -> None:
        config = self.config
        qos = qos_profile_sensor_data if config.qos == "sensor_data" else QoSProfile(depth=5)
        if config.colour_transport == "compressed":
            self._pub_colour = self.create_publisher(CompressedImage, f"{config.colour_topic}/compressed", qos)
        else:
            self._pub_colour = self.create_publisher(Image, config.colour_topic, qos)
        self._pub_depth = None
        if config.depth_topic and config.depth_transport == "compressed":
            self._pub_depth = self.create_publisher(CompressedImage, f"{config.depth_topic}/compressedDepth", qos)
        elif config.depth_topic:
            self._pub_depth = self.create_publisher(Image, config.depth_topic, qos)
        self._pub_info = self.create_publisher(CameraInfo, config.camera_info_topic, qos)
        latched = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
        )
        self._pub_gt = self.create_publisher(String, "~/ground_truth", latched)
        self._pub_tf = self.create_publisher(TFMessage, tfl.TF_TOPIC, tfl.TF_QOS)
        self._pub_tf_static = self.create_publisher(TFMessage, tfl.TF_STATIC_TOPIC, tfl.TF_STATIC_QOS)

    def _render_views(self) -> list[_View]:
        """The scene from every pose of the trajectory (one for static), with encoded messages."""
        config = self.config
        scenes = [self.scene]
        if config.trajectory == "orbit":
            start = _azimuth_deg(self.scene.T_cam_from_world)
            azimuths = orbit_azimuths_deg(start, config.orbit_span_deg, config.orbit_views)
            # Same seed = same objects in the same places; only the camera moves. Visible fractions are ground
            # truth of the first view only (they cost a render per object).
            for azimuth in azimuths[1:]:
                moved = dataclasses.replace(config.scene, camera_azimuth_deg=azimuth, compute_visible_fraction=False)
                scenes.append(render_tabletop_scene(moved))
        return [self._encode(scene) for scene in scenes]

    def _encode(self, scene: RenderedScene) -> _View:
        config = self.config
        header = Header(frame_id=config.frame_id)
        colour, depth, _ = scene_messages(scene, header, config.depth_encoding)
        if config.colour_transport == "compressed":
            colour = conv.rgb_to_compressed(scene.rgb, config.colour_format, header, config.jpeg_quality)
        if config.depth_transport == "compressed":
            depth = conv.depth_to_compressed_depth(scene.depth_m, header)
        return _View(T_cam_from_world=np.asarray(scene.T_cam_from_world), colour=colour, depth=depth)

    def _write_ground_truth(self) -> dict[str, Any]:
        config = self.config
        out_dir = config.ground_truth_dir
        paths: dict[int, str] = {}
        folder = Path(out_dir) if out_dir else None
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            for obj in self.scene.objects:
                path = folder / f"object_{obj.id}.ply"
                obj.mesh_world.export(path)
                paths[obj.id] = str(path)
            cv2.imwrite(str(folder / "instance_ids.png"), self.scene.instance_ids.astype(np.uint16))
        record = ground_truth_json(self.scene, paths)
        record.update(
            world_frame_id=config.world_frame,
            camera_frame_id=config.frame_id,
            trajectory=config.trajectory,
            views_T_cam_from_world=[v.T_cam_from_world.tolist() for v in self.views],
        )
        if folder is not None:
            (folder / "scene.json").write_text(json.dumps(record, indent=1))
        return record

    def _tick(self) -> None:
        config = self.config
        if config.max_frames and self.frames_published >= config.max_frames:
            return
        view = self.views[self._sequence[self.frames_published % len(self._sequence)]]
        stamp = self.get_clock().now().to_msg()
        if config.trajectory == "orbit":
            # Before the images, so a node that gets the image first rarely has to wait for its pose.
            T_world_from_cam = invert(view.T_cam_from_world)
            tf = tfl.transform_stamped(config.world_frame, config.frame_id, T_world_from_cam, stamp)
            self._pub_tf.publish(TFMessage(transforms=[tf]))
        for msg in (view.colour, view.depth, self._info):
            msg.header.stamp = stamp
        self._pub_colour.publish(view.colour)
        if self._pub_depth is not None:
            self._pub_depth.publish(view.depth)
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
