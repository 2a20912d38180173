"""The transform buffer (z123_ros.ros.tf, no ROS needed) and its /tf listener (rclpy)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pytest

from z123_ros.camera import invert, look_at, transform_points
from z123_ros.ros.tf import (
    TransformBuffer,
    TransformError,
    make_transform,
    matrix_to_quaternion,
    quaternion_to_matrix,
    slerp,
)

S = 1_000_000_000  # ns per second


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return quaternion_to_matrix(q / np.linalg.norm(q))


def _set(buffer: TransformBuffer, parent: str, child: str, stamp_ns: int, T: np.ndarray, static: bool = False) -> None:
    buffer.set_transform(parent, child, stamp_ns, T[:3, 3], matrix_to_quaternion(T[:3, :3]), static=static)


def _rot_z(deg: float, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    a = np.deg2rad(deg)
    T = np.eye(4)
    T[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    T[:3, 3] = t
    return T


def test_quaternion_round_trip_and_slerp_halfway() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        R = _random_rotation(rng)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-12)
    # 180 degree rotations (trace = -1) are the hard case of matrix -> quaternion.
    for axis in np.eye(3):
        R = 2 * np.outer(axis, axis) - np.eye(3)
        np.testing.assert_allclose(quaternion_to_matrix(matrix_to_quaternion(R)), R, atol=1e-12)
    q0, q1 = matrix_to_quaternion(_rot_z(0)[:3, :3]), matrix_to_quaternion(_rot_z(90)[:3, :3])
    np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, q1, 0.5)), _rot_z(45)[:3, :3], atol=1e-12)
    # q and -q are the same rotation: slerp takes the short arc (30 degrees, not 330).
    np.testing.assert_allclose(quaternion_to_matrix(slerp(q0, -q1, 1 / 3)), _rot_z(30)[:3, :3], atol=1e-12)


def test_interpolates_translation_linearly_and_rotation_by_slerp() -> None:
    buffer = TransformBuffer()
    _set(buffer, "world", "camera", 10 * S, _rot_z(0, (0.0, 0.0, 1.0)))
    _set(buffer, "world", "camera", 12 * S, _rot_z(60, (1.0, 2.0, 1.0)))
    T = buffer.lookup("world", "camera", 11 * S + S // 2)  # 3/4 of the way
    np.testing.assert_allclose(T, _rot_z(45, (0.75, 1.5, 1.0)), atol=1e-12)
    np.testing.assert_allclose(buffer.lookup("world", "camera", 10 * S), _rot_z(0, (0, 0, 1.0)), atol=1e-12)
    # The inverse direction is the inverse transform.
    np.testing.assert_allclose(buffer.lookup("camera", "world", 11 * S), invert(_rot_z(30, (0.5, 1, 1))), atol=1e-12)


def test_no_extrapolation_beyond_the_samples() -> None:
    buffer = TransformBuffer()
    _set(buffer, "world", "camera", 10 * S, np.eye(4))
    _set(buffer, "world", "camera", 11 * S, np.eye(4))
    with pytest.raises(TransformError, match="known from 10.000 to 11.000"):
        buffer.lookup("world", "camera", 12 * S)
    with pytest.raises(TransformError):
        buffer.lookup("world", "camera", 9 * S)
    tolerant = TransformBuffer(extrapolation_s=0.5)
    _set(tolerant, "world", "camera", 10 * S, np.eye(4))
    assert tolerant.can_transform("world", "camera", 10 * S + S // 4)
    assert not tolerant.can_transform("world", "camera", 11 * S)


def test_chains_static_and_dynamic_edges_through_intermediate_frames() -> None:
    """map -> odom (static) -> base_link (moving) -> camera_link (static) -> optical (static), and a second branch
    base_link -> gripper: every lookup equals the product of the edges."""
    rng = np.random.default_rng(1)
    edges = {}
    for name in ("odom", "camera_link", "optical", "gripper"):
        T = np.eye(4)
        T[:3, :3], T[:3, 3] = _random_rotation(rng), rng.normal(size=3)
        edges[name] = T
    buffer = TransformBuffer()
    _set(buffer, "map", "odom", 0, edges["odom"], static=True)
    _set(buffer, "base_link", "camera_link", 0, edges["camera_link"], static=True)
    _set(buffer, "camera_link", "optical", 0, edges["optical"], static=True)
    _set(buffer, "base_link", "gripper", 0, edges["gripper"], static=True)
    _set(buffer, "odom", "base_link", 1 * S, _rot_z(0, (0, 0, 0)))
    _set(buffer, "odom", "base_link", 3 * S, _rot_z(90, (2, 0, 0)))
    base_at_2 = _rot_z(45, (1, 0, 0))
    expected = edges["odom"] @ base_at_2 @ edges["camera_link"] @ edges["optical"]
    np.testing.assert_allclose(buffer.lookup("map", "optical", 2 * S), expected, atol=1e-12)
    gripper_from_optical = invert(edges["gripper"]) @ edges["camera_link"] @ edges["optical"]
    # Both frames hang off base_link: the moving edge cancels out, any time (even outside its samples) works.
    np.testing.assert_allclose(buffer.lookup("gripper", "optical", 99 * S), gripper_from_optical, atol=1e-12)
    # Points map through the chain as through the product.
    p = rng.normal(size=(5, 3))
    np.testing.assert_allclose(
        transform_points(buffer.lookup("optical", "map", 2 * S), transform_points(expected, p)), p, atol=1e-12
    )
    assert buffer.frames() == {"map", "odom", "base_link", "camera_link", "optical", "gripper"}


def test_time_zero_is_the_latest_common_time() -> None:
    buffer = TransformBuffer()
    _set(buffer, "world", "a", 1 * S, _rot_z(0, (0, 0, 0)))
    _set(buffer, "world", "a", 3 * S, _rot_z(0, (3, 0, 0)))
    _set(buffer, "world", "b", 1 * S, _rot_z(0, (0, 0, 0)))
    _set(buffer, "world", "b", 2 * S, _rot_z(0, (0, 1, 0)))
    # Latest common time is 2 s (b's last sample), where a is halfway between x = 0 and x = 3.
    np.testing.assert_allclose(buffer.lookup("b", "a", 0)[:3, 3], [1.5, -1.0, 0.0], atol=1e-12)


def test_errors_name_the_problem() -> None:
    buffer = TransformBuffer()
    _set(buffer, "world", "camera", 0, np.eye(4), static=True)
    _set(buffer, "robot", "wrist", 0, np.eye(4), static=True)
    with pytest.raises(TransformError, match="'base' does not exist"):
        buffer.lookup("base", "camera")
    with pytest.raises(TransformError, match="not connected"):
        buffer.lookup("world", "wrist")
    with pytest.raises(TransformError, match="non-finite"):
        buffer.set_transform("world", "x", 0, (np.nan, 0, 0), (0, 0, 0, 1))
    with pytest.raises(TransformError, match="zero quaternion"):
        buffer.set_transform("world", "x", 0, (0, 0, 0), (0, 0, 0, 0))
    with pytest.raises(TransformError, match="must be set and differ"):
        buffer.set_transform("world", "world", 0, (0, 0, 0), (0, 0, 0, 1))
    # A non-unit quaternion is normalised, as tf2 does.
    buffer.set_transform("world", "y", 0, (0, 0, 0), (0, 0, 0, 2), static=True)
    np.testing.assert_allclose(buffer.lookup("world", "y"), np.eye(4))


def test_cache_keeps_only_recent_samples() -> None:
    buffer = TransformBuffer(cache_time_s=2.0)
    for t in range(10):
        _set(buffer, "world", "camera", t * S, _rot_z(0, (t, 0, 0)))
    assert buffer.can_transform("world", "camera", 8 * S) and not buffer.can_transform("world", "camera", 6 * S)
    # Out-of-order arrival inside the window is inserted in time order.
    _set(buffer, "world", "camera", 8 * S + S // 2, _rot_z(0, (100, 0, 0)))
    assert buffer.lookup("world", "camera", 8 * S + S // 2)[0, 3] == 100.0


def test_wait_for_returns_when_the_transform_arrives() -> None:
    buffer = TransformBuffer()
    started = threading.Event()

    def publish_later() -> None:
        started.wait()
        _set(buffer, "world", "camera", 5 * S, look_at(np.array([1.0, 0, 1]), np.zeros(3)))

    thread = threading.Thread(target=publish_later)
    thread.start()
    started.set()
    # Generous timeout: the test only fails if the notification never wakes the waiter.
    T = buffer.wait_for("world", "camera", 5 * S, timeout_s=60.0)
    thread.join()
    np.testing.assert_allclose(T[:3, 3], [1.0, 0, 1])
    with pytest.raises(TransformError, match="does not exist"):
        buffer.wait_for("world", "nowhere", 5 * S, timeout_s=0.01)


def test_make_transform_matches_the_matrix() -> None:
    T = look_at(np.array([0.5, -0.3, 0.4]), np.array([0.0, 0.0, 0.05]))
    np.testing.assert_allclose(make_transform(T[:3, 3], matrix_to_quaternion(T[:3, :3])), T, atol=1e-12)


@pytest.mark.ros
def test_listener_receives_static_and_dynamic_tf() -> None:
    """A probe publishes /tf_static before the listener exists (latched) and /tf after: both are looked up."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.executors import SingleThreadedExecutor
    from tf2_msgs.msg import TFMessage

    from z123_ros.ros import tf_listener as tfl

    context = rclpy.context.Context()
    rclpy.init(context=context, args=[])
    try:
        pub_node = rclpy.create_node("tf_probe", context=context)
        static_pub = pub_node.create_publisher(TFMessage, tfl.TF_STATIC_TOPIC, tfl.TF_STATIC_QOS)
        tf_pub = pub_node.create_publisher(TFMessage, tfl.TF_TOPIC, tfl.TF_QOS)
        stamp = pub_node.get_clock().now().to_msg()
        mount = _rot_z(90, (0.1, 0.0, 0.5))
        static_pub.publish(TFMessage(transforms=[tfl.transform_stamped("base_link", "camera", mount, stamp)]))
        listen_node = rclpy.create_node("tf_listen", context=context)
        listener = tfl.TfListener(listen_node, prefer_tf2_ros=False)
        assert listener.backend == "z123"
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(pub_node)
        executor.add_node(listen_node)
        odom = _rot_z(30, (1.0, 2.0, 0.0))
        bad = tfl.transform_stamped("world", "broken", np.eye(4), stamp)
        bad.transform.rotation.w = 0.0
        tf_pub.publish(TFMessage(transforms=[tfl.transform_stamped("world", "base_link", odom, stamp), bad]))
        done = threading.Event()

        def spin() -> None:
            while not done.is_set():
                executor.spin_once(timeout_sec=0.05)

        spinner = threading.Thread(target=spin)
        spinner.start()
        try:
            T = listener.lookup("world", "camera", tfl.stamp_to_ns(stamp), timeout_s=60.0)
        finally:
            done.set()
            spinner.join()
        np.testing.assert_allclose(T, odom @ mount, atol=1e-9)
        assert listener.rejected == 1
        with pytest.raises(TransformError):
            listener.lookup("world", "nowhere", 0, timeout_s=0.01)
        listener.destroy()
        executor.shutdown()
    finally:
        rclpy.shutdown(context=context)


# ----------------------------------------------------------------------------------------------- z123_node + tf

# The node with target_frame: world, fed by the simulated camera orbiting the table (its pose on /tf).

ORBIT_SCENE = {
    "scene.seed": 0,
    "scene.num_objects": 3,
    "scene.width": 320,
    "scene.height": 240,
}
ORBIT_VIEWS = 6
# The node's world-frame mesh against the depth backend run here on the same frame (its mask, depth and plane) and
# moved to the world with the sim's ground-truth pose: only the simplification of published meshes
# moves vertices (~1 mm); a frame error (camera frame published as world, a pose from another stamp, an inverted
# pose) moves them by centimetres to decimetres.
SAME_AS_LIBRARY_M = 0.003
# Issue 19's goal for mesh centres against the scanned objects, world frame. Not asserted: the depth backend's own
# single-view error (its completion of the unseen side) is 6-60 mm on these objects from a static camera at the same
# pose, so this measures the backend, not the frame handling; the test logs it.
CENTRE_GOAL_M = 0.01


@pytest.fixture(scope="module")
def world_node(tmp_path_factory):
    pytest.importorskip("rclpy")
    pytest.importorskip("ray")
    from _ros_helpers import NodeProcess, Probe, dispatcher_warm, wait_for, write_params

    tmp = tmp_path_factory.mktemp("z123_node_tf")
    params = write_params(
        tmp / "params.yaml",
        {
            "target_frame": "world",
            "tf_timeout_s": 2.0,
            "max_segmentation_rate_hz": 10.0,
            "input_qos": "reliable",
            "diagnostics_period_s": 0.2,
            "log_throttle_s": 0.0,
            "dispatch.object_store_memory_mb": 128,
        },
    )
    proc = NodeProcess(params, tmp / "node.log")
    probe = Probe()
    try:
        running = wait_for(lambda: dispatcher_warm(probe.diagnostics()) or not proc.alive(), timeout=180)
        assert running and proc.alive(), f"node did not become active with warm actors:\n{proc.log()[-3000:]}"
        yield proc, probe
    finally:
        probe.close()
        proc.stop()


@pytest.mark.ros
@pytest.mark.ray
def test_frames_without_a_transform_are_counted_not_fatal(world_node) -> None:
    from _ros_helpers import wait_for
    from std_msgs.msg import Header

    from z123_ros.ros.sim_camera_node import scene_messages
    from z123_ros.sim import SceneConfig, render_tabletop_scene

    proc, probe = world_node
    scene = render_tabletop_scene(SceneConfig(width=160, height=120, compute_visible_fraction=False))
    # A camera frame nobody publishes a pose for.
    colour, depth, info = scene_messages(scene, Header(frame_id="unposed_camera"), "16UC1")

    def drops() -> int:
        return int(probe.diagnostics().get("drop.no_transform", 0))

    assert wait_for(
        lambda: drops() >= 3, timeout=120, period=0.3, tick=lambda: probe.publish_frame(colour, depth, info)
    )
    assert proc.alive() and probe.diagnostics()["state"] == "running"
    assert not any(r.header.frame_id == "unposed_camera" for r in probe.messages("reconstruction"))


def _library_in_world(camera: Any, seg_msg, T_world_from_cam: np.ndarray, object_id: int):
    """The depth backend on the view the sim showed at ``T_world_from_cam``, moved to the world with that pose."""
    from _ros_helpers import full_mask

    from z123_ros.reconstruction import ReconstructionInput, reconstruct
    from z123_ros.ros import conversions as conv

    views = camera.node.views
    k = int(np.argmin([np.abs(invert(v.T_cam_from_world) - T_world_from_cam).max() for v in views]))
    intr = camera.node.scene.intrinsics
    rgb, depth = conv.image_to_rgb(views[k].colour), conv.depth_to_metres(views[k].depth)
    obj = next(o for o in seg_msg.objects if o.id == object_id)
    mask = full_mask(obj, intr.width, intr.height)
    inp = ReconstructionInput(rgb, mask, intr, depth_m=depth, support_plane_cam=np.array(seg_msg.plane))
    result = reconstruct(inp, "depth")
    return transform_points(T_world_from_cam, result.vertices)


@pytest.mark.ros
@pytest.mark.ray
@pytest.mark.slow  # renders 6 views and sweeps them through the node: ~45 s (plus the node's start) on 2 loaded cores
def test_orbiting_camera_keeps_ids_and_meshes_in_world(world_node) -> None:
    """The camera sweeps 60 degrees around the table: every object keeps its id, is reconstructed once, and its
    mesh lies where the scanned object is, in the world frame."""
    from _ros_helpers import stamp_key, wait_for

    from z123_ros.ros.tf_listener import transform_to_matrix

    proc, probe = world_node
    from _sim_helpers import CameraThread

    camera = CameraThread(
        {
            **ORBIT_SCENE,
            "trajectory": "orbit",
            "orbit_views": ORBIT_VIEWS,
            "orbit_span_deg": 60.0,
            "rate_hz": 4.0,
            "qos": "reliable",
        }
    )
    try:
        scene = camera.node.scene
        views = camera.node.views

        # 3 x the views: over one sweep there and back (2 x views - 2 frames), whichever frames the rate limit skips.
        def frames_with_all_objects() -> set[tuple[int, int]]:
            out = set()
            for seg in probe.messages("segmentation"):
                if seg.header.frame_id == "camera_color_optical_frame" and len(seg.objects) == 3:
                    out.add(stamp_key(seg.header.stamp))
            return out

        def swept() -> bool:
            recs = probe.messages("reconstruction")
            return (
                len({r.object_id for r in recs if r.header.frame_id == "world"}) >= 3
                and len(frames_with_all_objects()) >= 3 * ORBIT_VIEWS
            )

        assert wait_for(swept, timeout=300, period=0.5), f"diagnostics: {probe.diagnostics()}\n{proc.log()[-3000:]}"
    finally:
        camera.close()
        poses = {
            stamp_key(m.transforms[0].header.stamp): transform_to_matrix(m.transforms[0].transform)
            for m in camera.tf_log
        }
    segs = [s for s in probe.messages("segmentation") if s.header.frame_id == "camera_color_optical_frame"]
    ids = {o.id for s in segs for o in s.objects}
    recs = [r for r in probe.messages("reconstruction") if r.header.frame_id == "world"]
    assert len(ids) == 3, f"object ids changed during the orbit: {sorted(ids)}"
    assert sorted(r.object_id for r in recs) == sorted(ids), "a static object was reconstructed again"
    assert int(probe.diagnostics()["count.jobs_submitted"]) == 3

    from z123_ros.reconstruction.metrics import chamfer_distance
    from z123_ros.ros import conversions as conv

    seg_by_stamp = {stamp_key(s.header.stamp): s for s in segs}
    gt_centres = [0.5 * (o.mesh_world.bounds[0] + o.mesh_world.bounds[1]) for o in scene.objects]
    goal_errors = []
    for rec in recs:
        stamp = stamp_key(rec.header.stamp)
        T_world_from_cam = poses[stamp]  # the pose the sim rendered that frame from
        library = _library_in_world(camera, seg_by_stamp[stamp], T_world_from_cam, rec.object_id)
        vertices, _ = conv.msg_to_mesh(rec.mesh)
        same = chamfer_distance(vertices, library)
        assert same < SAME_AS_LIBRARY_M, (rec.object_id, same)
        centre = np.array([rec.pose.position.x, rec.pose.position.y, rec.pose.position.z])
        np.testing.assert_allclose(centre, 0.5 * (library.min(0) + library.max(0)), atol=SAME_AS_LIBRARY_M)
        goal_errors.append(min(float(np.linalg.norm(centre - g)) for g in gt_centres))
    logging.getLogger(__name__).info(
        "orbit: mesh centre vs scanned object, world (mm): %s (goal %.0f mm)",
        [round(1e3 * e, 1) for e in goal_errors],
        1e3 * CENTRE_GOAL_M,
    )
    assert len(views) == ORBIT_VIEWS
