"""The simulated RGB-D camera node: rendered YCB scene on the camera topics, ground truth on the side channel."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("pybullet")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data  # noqa: E402
from sensor_msgs.msg import CameraInfo, CompressedImage, Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from z123_ros.camera import invert, transform_points  # noqa: E402
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


def _run_camera(params: list[str], topics: dict[str, tuple[type, str, Any]], until: Callable[[dict], bool]):
    """Start a SimCameraNode with ``params`` and a probe recording ``topics`` until ``until(got)`` (60 s cap)."""
    context = rclpy.context.Context()
    rclpy.init(context=context, args=["--ros-args", *sum((["-p", p] for p in params), [])])
    try:
        camera = SimCameraNode(context=context)
        probe = rclpy.create_node("sim_probe", context=context)
        got: dict[str, list] = {name: [] for name in topics}
        for name, (msg_type, topic, qos) in topics.items():
            probe.create_subscription(msg_type, topic, got[name].append, qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(camera)
        executor.add_node(probe)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not until(got):
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
    finally:
        rclpy.shutdown(context=context)
    return camera, got


SMALL = ["scene.width:=96", "scene.height:=72", "scene.object_names:=[006_mustard_bottle,025_mug]", "rate_hz:=30.0"]


def test_orbit_publishes_the_pose_of_every_frame_on_tf() -> None:
    """Each frame's /tf pose (same stamp) is the pose it was rendered from; the camera sweeps back and forth."""
    from tf2_msgs.msg import TFMessage

    from z123_ros.ros.tf import TransformBuffer
    from z123_ros.ros.tf_listener import TF_QOS, add_tf_message, stamp_to_ns

    reliable = QoSProfile(depth=50, reliability=QoSReliabilityPolicy.RELIABLE)
    topics = {
        "colour": (Image, "camera/color/image_raw", reliable),
        "tf": (TFMessage, "/tf", TF_QOS),
    }
    params = [*SMALL, "trajectory:=orbit", "orbit_views:=4", "orbit_span_deg:=60.0", "max_frames:=8", "qos:=reliable"]
    camera, got = _run_camera(params, topics, lambda g: len(g["colour"]) >= 8 and len(g["tf"]) >= 8)
    assert len(camera.views) == 4 and camera.frames_published == 8
    buffer = TransformBuffer()
    for msg in got["tf"]:
        assert add_tf_message(buffer, msg, static=False) == 0
    # The views are 20 degrees apart around the look-at point, at the scene's height and distance.
    eyes = [invert(v.T_cam_from_world)[:3, 3] for v in camera.views]
    azimuths = np.rad2deg([np.arctan2(e[1], e[0]) for e in eyes])
    np.testing.assert_allclose(np.diff(azimuths), 20.0, atol=1e-6)
    np.testing.assert_allclose([e[2] for e in eyes], 0.45, atol=1e-9)
    shown = []
    for msg in got["colour"]:
        T_world_from_cam = buffer.lookup("world", "camera_color_optical_frame", stamp_to_ns(msg.header.stamp))
        k = int(np.argmin([np.abs(invert(v.T_cam_from_world) - T_world_from_cam).max() for v in camera.views]))
        np.testing.assert_allclose(T_world_from_cam, invert(camera.views[k].T_cam_from_world), atol=1e-9)
        assert bytes(msg.data) == bytes(camera.views[k].colour.data)  # the pixels of that very pose
        shown.append(k)
    assert shown == [0, 1, 2, 3, 2, 1, 0, 1]
    # Different poses see the table differently: the frames are not all the same picture.
    assert len({bytes(camera.views[k].colour.data) for k in range(4)}) == 4


def test_static_pose_is_latched_on_tf_static_and_compressed_topics() -> None:
    from tf2_msgs.msg import TFMessage

    from z123_ros.ros.tf_listener import TF_STATIC_QOS, transform_to_matrix

    qos = qos_profile_sensor_data
    topics = {
        "colour": (CompressedImage, "camera/color/image_raw/compressed", qos),
        "depth": (CompressedImage, "camera/aligned_depth_to_color/image_raw/compressedDepth", qos),
        "tf_static": (TFMessage, "/tf_static", TF_STATIC_QOS),
    }
    params = [*SMALL, "colour_transport:=compressed", "colour_format:=png", "depth_transport:=compressed"]
    params.append("max_frames:=3")
    camera, got = _run_camera(params, topics, lambda g: g["colour"] and g["depth"] and g["tf_static"])
    (tf,) = got["tf_static"][0].transforms
    assert (tf.header.frame_id, tf.child_frame_id) == ("world", "camera_color_optical_frame")
    np.testing.assert_allclose(transform_to_matrix(tf.transform), invert(camera.scene.T_cam_from_world), atol=1e-9)
    np.testing.assert_array_equal(conv.compressed_to_rgb(got["colour"][-1]), camera.scene.rgb)
    depth = conv.compressed_depth_to_metres(got["depth"][-1])
    valid = np.isfinite(camera.scene.depth_m)
    assert np.array_equal(np.isfinite(depth), valid)
    assert np.abs(depth[valid] - camera.scene.depth_m[valid]).max() <= 0.0005 + 1e-6
