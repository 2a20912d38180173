"""z123 bag record / play: rosbag2 bags of the simulated camera, read back with rosbags' standard typestore."""

from __future__ import annotations

import argparse
import logging
import threading
import time

import numpy as np
import pytest
import yaml

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rosbags")
pytest.importorskip("pybullet")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy  # noqa: E402
from rclpy.serialization import deserialize_message  # noqa: E402
from rosbags.rosbag2 import Reader  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from rosgraph_msgs.msg import Clock  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402

from z123_ros.ros import bag, bag_cli  # noqa: E402
from z123_ros.sim import SceneConfig, render_tabletop_scene  # noqa: E402

pytestmark = pytest.mark.ros

SIM = {
    "scene.width": 96,
    "scene.height": 72,
    "scene.object_names": ["006_mustard_bottle", "025_mug"],
    "rate_hz": 20.0,
    "trajectory": "orbit",
    "orbit_views": 3,
}
FRAMES = 6
COLOUR = "/camera/color/image_raw"


@pytest.fixture(scope="module", params=["sqlite3", "mcap"])
def sim_bag(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("bags") / f"sim_{request.param}"
    summary = bag.record(bag.RecordConfig(out=out, storage=request.param, frames=FRAMES, sim=True, sim_parameters=SIM))
    return out, summary


def test_recorded_bag_is_standard_rosbag2(sim_bag) -> None:
    """Every frame of the sim is in the bag, and an independent reader (rosbags with the standard ROS 2 message
    definitions, as ``ros2 bag`` uses) decodes the images to the rendered pixels and the /tf to the poses."""
    out, summary = sim_bag
    assert not out.with_name(f".{out.name}.partial").exists()
    counts = summary.counts
    assert counts[COLOUR] == FRAMES and counts["/camera/aligned_depth_to_color/image_raw"] == FRAMES
    assert counts["/camera/color/camera_info"] == FRAMES and counts["/tf"] == FRAMES
    assert counts["/sim_camera/ground_truth"] == 1
    meta = yaml.safe_load((out / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == bag.BAG_VERSION and meta["storage_identifier"] in ("sqlite3", "mcap")
    types = {t["topic_metadata"]["name"]: t["topic_metadata"]["type"] for t in meta["topics_with_message_count"]}
    assert types[COLOUR] == "sensor_msgs/msg/Image" and types["/tf"] == "tf2_msgs/msg/TFMessage"

    views = [
        render_tabletop_scene(
            SceneConfig(
                width=96,
                height=72,
                object_names=("006_mustard_bottle", "025_mug"),
                camera_azimuth_deg=az,
                compute_visible_fraction=False,
            )
        ).rgb
        for az in (0.0, 45.0, 90.0)  # orbit_views=3 over the default 90 degree span
    ]
    typestore = get_typestore(Stores.ROS2_KILTED)
    shown = []
    with Reader(out) as reader:
        for conn, _, data in reader.messages():
            msg = typestore.deserialize_cdr(data, conn.msgtype)
            if conn.topic == COLOUR:
                rgb = np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width, 3)
                shown.append(next(k for k, v in enumerate(views) if np.array_equal(v, rgb)))
            elif conn.topic == "/tf":
                (tf,) = msg.transforms
                assert (tf.header.frame_id, tf.child_frame_id) == ("world", "camera_color_optical_frame")
                assert abs(tf.transform.translation.z - 0.45) < 1e-9  # the camera height of the scene
    assert shown == [0, 1, 2, 1, 0, 1]  # back and forth along the orbit


def _probe(context):
    node = rclpy.create_node("bag_probe", context=context)
    got: dict[str, list] = {"colour": [], "tf": [], "clock": [], "gt": []}
    reliable = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
    latched = QoSProfile(
        depth=10, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
    )
    from std_msgs.msg import String

    node.create_subscription(Image, "/replayed/image", lambda m: got["colour"].append((time.monotonic(), m)), reliable)
    node.create_subscription(TFMessage, "/tf", lambda m: got["tf"].append(m), reliable)
    node.create_subscription(Clock, "/clock", lambda m: got["clock"].append(m), reliable)
    node.create_subscription(String, "/sim_camera/ground_truth", lambda m: got["gt"].append(m), latched)
    return node, got


def test_play_publishes_every_message_with_original_spacing_and_clock(sim_bag) -> None:
    out, summary = sim_bag
    context = rclpy.context.Context()
    rclpy.init(context=context, args=[])
    try:
        node, got = _probe(context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        done = threading.Event()
        spinner = threading.Thread(
            target=lambda: [executor.spin_once(timeout_sec=0.05) for _ in iter(done.is_set, True)]
        )
        spinner.start()
        try:
            t0 = time.monotonic()
            topics = (COLOUR, "/tf", "/sim_camera/ground_truth")  # the probe's (the player waits for them)
            remap = {COLOUR: "/replayed/image"}
            config = bag.PlayConfig(
                bag=out, rate=2.0, topics=topics, delay_s=0.0, wait_for_subscribers_s=60.0, remap=remap
            )
            played = bag.play(config)
            elapsed = time.monotonic() - t0
            deadline = time.monotonic() + 30
            while len(got["colour"]) < FRAMES and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            done.set()
            spinner.join()
        executor.shutdown()
    finally:
        rclpy.shutdown(context=context)
    assert played.counts[COLOUR] == FRAMES
    assert len(got["colour"]) == FRAMES and len(got["tf"]) == FRAMES and got["gt"]
    # Same bytes as recorded, in order.
    with Reader(out) as reader:
        conns = [c for c in reader.connections if c.topic == COLOUR]
        recorded = [bytes(d) for _, _, d in reader.messages(connections=conns)]
        stamps = [t for _, t, _ in reader.messages(connections=conns)]
    assert [bytes(m.data) for _, m in got["colour"]] == [
        bytes(np.asarray(deserialize_message(r, Image).data)) for r in recorded
    ]
    # The player sleeps until each message is due: it cannot finish faster than the bag's span / rate.
    assert elapsed >= (stamps[-1] - stamps[0]) * 1e-9 / 2.0
    # /clock carries the bag time of every message, non-decreasing.
    clock_ns = [c.clock.sec * 10**9 + c.clock.nanosec for c in got["clock"]]
    assert clock_ns == sorted(clock_ns) and set(stamps) <= set(clock_ns)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    bag_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_bad_input_is_one_line_and_exit_2(sim_bag, tmp_path, capsys) -> None:
    out, _ = sim_bag
    assert _cli(["bag", "play", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a readable rosbag2 bag" in err
    assert _cli(["bag", "record", "--out", str(out), "--frames", "1"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert _cli(["bag", "play", str(out), "--rate", "0"]) == 2
    assert "rate must be > 0" in capsys.readouterr().err
    assert _cli(["bag", "info", str(out)]) == 0
    assert f"{COLOUR}: {FRAMES}" in capsys.readouterr().out


# ------------------------------------------------------------------------------------ a bag into z123_node
LIVE_SIM = {"scene.seed": 0, "scene.num_objects": 3, "scene.width": 320, "scene.height": 240, "rate_hz": 4.0}
# The bag holds the live camera's bytes: the node sees the same pixels, so its meshes should agree to float noise.
# A few mm is the goal (issue 19); the simplification of published meshes moves vertices ~1 mm.
SAME_MESH_M = 0.003


def _node_params() -> dict:
    return {
        "target_frame": "world",
        "tf_timeout_s": 2.0,
        "max_segmentation_rate_hz": 10.0,
        "input_qos": "reliable",
        "diagnostics_period_s": 0.2,
        "dispatch.object_store_memory_mb": 128,
    }


def _meshes(probe) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    from z123_ros.ros import conversions as conv

    out = {}
    for rec in probe.messages("reconstruction"):
        vertices, _ = conv.msg_to_mesh(rec.mesh)
        out[rec.object_id] = (np.array([rec.pose.position.x, rec.pose.position.y, rec.pose.position.z]), vertices)
    return out


def _run_node(name: str, folder, feed) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Start z123_node as ``name``, call ``feed()`` once it runs, return its meshes once it has 3 (or fail)."""
    from _ros_helpers import Probe, wait_for
    from _sim_helpers import NamedNodeProcess

    proc = NamedNodeProcess(name, _node_params(), folder)
    probe = Probe(f"{name}_probe", f"/{name}")

    def state() -> str:
        # The renamed node reports under its own name (Probe.diagnostics() reads z123_node's).
        for msg in reversed(probe.messages("diagnostics")):
            for status in msg.status:
                if status.hardware_id == name:
                    return {kv.key: kv.value for kv in status.values}.get("state", "")
        return ""

    try:
        up = wait_for(lambda: state() == "running" or not proc.alive(), timeout=300)
        assert up and proc.alive(), proc.log()[-3000:]
        stop = feed()
        try:
            assert wait_for(lambda: len(_meshes(probe)) >= 3, timeout=300, period=0.5), proc.log()[-3000:]
        finally:
            stop()
        return _meshes(probe)
    finally:
        probe.close()
        proc.stop()


@pytest.mark.slow  # two z123_node runs (Ray each, one after the other) and a recording: ~4 min on 2 loaded cores
@pytest.mark.ray
def test_bag_of_the_sim_gives_the_live_objects(tmp_path) -> None:
    """Record the sim camera; run it live into a node, then play the bag into a fresh node: both find the same
    objects, with the same meshes in the world frame."""
    pytest.importorskip("ray")
    from _sim_helpers import CameraThread

    from z123_ros.reconstruction.metrics import chamfer_distance

    recorded = tmp_path / "sim.bag"
    bag.record(bag.RecordConfig(out=recorded, frames=12, sim=True, sim_parameters={**LIVE_SIM, "max_frames": 12}))

    def live_camera():
        camera = CameraThread({**LIVE_SIM, "qos": "reliable"})
        return camera.close

    def play_bag():
        stop = threading.Event()
        played: dict = {}
        config = bag.PlayConfig(bag=recorded, wait_for_subscribers_s=60.0)
        thread = threading.Thread(target=lambda: played.update(bag.play(config, stop).counts))
        thread.start()

        def close():
            stop.set()
            thread.join(timeout=60)

        return close

    live_meshes = _run_node("z123_live", tmp_path, live_camera)
    replay_meshes = _run_node("z123_replay", tmp_path, play_bag)
    assert len(live_meshes) == len(replay_meshes) == 3
    differences = []
    for centre, vertices in live_meshes.values():
        # Ids may differ between the two nodes: pair each live object with the replayed one nearest to it.
        other_centre, other_vertices = min(replay_meshes.values(), key=lambda m: np.linalg.norm(m[0] - centre))
        differences.append((np.linalg.norm(other_centre - centre), chamfer_distance(vertices, other_vertices)))
    logging.getLogger(__name__).info(
        "bag vs live: (centre, Chamfer) differences in mm: %s",
        [(round(1e3 * a, 2), round(1e3 * b, 2)) for a, b in differences],
    )
    assert all(a < SAME_MESH_M and b < SAME_MESH_M for a, b in differences), differences
