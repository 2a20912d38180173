"""The simulated RGB-D camera node: rendered YCB scene on the camera topics, ground truth on the side channel."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("pybullet")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from z123_ros.camera import transform_points  # noqa: E402
from z123_ros.ros import conversions as conv  # noqa: E402
from z123_ros.ros.sim_camera_node import SimCameraNode  # noqa: E402

pytestmark = pytest.mark.ros


def test_sim_camera_publishes_frames_and_ground_truth(tmp_path) -> None:
    context = rclpy.context.Context()
    rclpy.init(
        context=context,
        args=[
            "--ros-args",
            "-p",
            "scene.width:=160",
            "-p",
            "scene.height:=120",
            "-p",
            "depth_encoding:=16UC1",
            "-p",
            "rate_hz:=30.0",
            "-p",
            "max_frames:=5",
            "-p",
            f"ground_truth_dir:={tmp_path}",
            "-p",
            "scene.object_names:=[006_mustard_bottle,025_mug]",
        ],
    )
    try:
        camera = SimCameraNode(context=context)
        probe = rclpy.create_node("sim_probe", context=context)
        got: dict[str, list] = {"colour": [], "depth": [], "info": [], "gt": []}
        probe.create_subscription(Image, "camera/color/image_raw", got["colour"].append, qos_profile_sensor_data)
        probe.create_subscription(
            Image, "camera/aligned_depth_to_color/image_raw", got["depth"].append, qos_profile_sensor_data
        )
        probe.create_subscription(CameraInfo, "camera/color/camera_info", got["info"].append, qos_profile_sensor_data)
        latched = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
        )
        probe.create_subscription(String, "/sim_camera/ground_truth", got["gt"].append, latched)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(camera)
        executor.add_node(probe)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (len(got["info"]) < 5 or not got["gt"]):
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
    finally:
        rclpy.shutdown(context=context)

    assert camera.frames_published == 5 and len(got["info"]) >= 3 and got["gt"]
    colour, depth, info = got["colour"][-1], got["depth"][-1], got["info"][-1]
    assert colour.header == depth.header == info.header and colour.header.frame_id == "camera_color_optical_frame"
    assert colour.encoding == "rgb8" and depth.encoding == "16UC1"
    rgb, depth_m = conv.image_to_rgb(colour), conv.depth_to_metres(depth)
    np.testing.assert_array_equal(rgb, camera.scene.rgb)
    # Millimetre quantisation only.
    valid = np.isfinite(camera.scene.depth_m)
    assert np.nanmax(np.abs(depth_m[valid] - camera.scene.depth_m[valid])) <= 0.0005 + 1e-6
    assert conv.camera_info_to_intrinsics(info) == camera.scene.intrinsics

    record = json.loads(got["gt"][0].data)
    assert [o["name"] for o in record["objects"]] == ["006_mustard_bottle", "025_mug"]
    assert json.loads((tmp_path / "scene.json").read_text()) == record
    # The written meshes are the ground truth in the world frame: seen through T_cam_from_world they lie in front of
    # the camera, where the depth image sees them.
    import trimesh

    mesh = trimesh.load(record["objects"][0]["mesh_world_ply"])
    cam = transform_points(np.array(record["T_cam_from_world"]), mesh.vertices)
    assert (
        cam[:, 2].min() > 0.1
        and abs(np.median(cam[:, 2]) - np.nanmedian(camera.scene.depth_m[camera.scene.instance_ids == 1])) < 0.1
    )
