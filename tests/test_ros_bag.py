"""z123 bag record / play: rosbag2 bags of the simulated camera, read back with rosbags' standard typestore."""

from __future__ import annotations

import argparse
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

    node.create_subscription(Image, COLOUR, lambda m: got["colour"].append((time.monotonic(), m)), reliable)
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
            config = bag.PlayConfig(bag=out, rate=2.0, topics=topics, delay_s=0.0, wait_for_subscribers_s=60.0)
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
CAMERA_TOPICS = (
    "/camera/color/image_raw",
    "/camera/aligned_depth_to_color/image_raw",
    "/camera/color/camera_info",
)
# The bag holds the live camera's bytes: the node sees the same pixels, so its meshes should agree to float noise.
# A few mm is the goal (issue 19); the vertex-clustering simplification of published meshes moves vertices ~1 mm.
SAME_MESH_M = 0.003


def _node_params(prefix: str = "") -> dict:
    params = {
        "target_frame": "world",
        "tf_timeout_s": 2.0,
        "max_segmentation_rate_hz": 10.0,
        "input_qos": "reliable",
        "diagnostics_period_s": 0.2,
        "dispatch.object_store_memory_mb": 128,
        "dispatch.num_cpus": 1,
    }
    if prefix:
        params.update(
            colour_topic=f"{prefix}/camera/color/image_raw",
            depth_topic=f"{prefix}/camera/aligned_depth_to_color/image_raw",
            camera_info_topic=f"{prefix}/camera/color/camera_info",
        )
    return params


def _meshes(probe) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    from z123_ros.ros import conversions as conv

    out = {}
    for rec in probe.messages("reconstruction"):
        vertices, _ = conv.msg_to_mesh(rec.mesh)
        out[rec.object_id] = (np.array([rec.pose.position.x, rec.pose.position.y, rec.pose.position.z]), vertices)
    return out


@pytest.mark.slow  # two z123_node processes (Ray each) and a recording: ~3 min on the loaded 2-core machine
@pytest.mark.ray
def test_bag_of_the_sim_gives_the_live_objects(tmp_path) -> None:
    """Record the sim camera, then run it live into one node and the bag (remapped) into another: both find the
    same objects, with the same meshes in the world frame."""
    pytest.importorskip("ray")
    from _ros_helpers import Probe, wait_for
    from _sim_helpers import CameraThread, NamedNodeProcess

    from z123_ros.reconstruction.metrics import chamfer_distance

    recorded = tmp_path / "sim.bag"
    sim = {**LIVE_SIM, "max_frames": 12}
    bag.record(bag.RecordConfig(out=recorded, frames=12, sim=True, sim_parameters=sim))
    live = NamedNodeProcess("z123_live", _node_params(), tmp_path)
    replay = NamedNodeProcess("z123_replay", _node_params("/bag"), tmp_path)
    live_probe, replay_probe = Probe("live_probe", "/z123_live"), Probe("replay_probe", "/z123_replay")
    camera = None
    try:
        for proc, probe in ((live, live_probe), (replay, replay_probe)):
            up = wait_for(lambda p=probe, q=proc: p.diagnostics().get("state") == "running" or not q.alive(), 240)
            assert up and proc.alive(), proc.log()[-3000:]
        camera = CameraThread({**LIVE_SIM, "qos": "reliable"})
        assert wait_for(lambda: len(_meshes(live_probe)) >= 3, timeout=240, period=0.5), live.log()[-3000:]
        camera.close()
        camera = None
        remap = {t: f"/bag{t}" for t in CAMERA_TOPICS}
        played = bag.play(bag.PlayConfig(bag=recorded, remap=remap, wait_for_subscribers_s=60.0))
        assert played.counts["/camera/color/image_raw"] == 12
        assert wait_for(lambda: len(_meshes(replay_probe)) >= 3, timeout=240, period=0.5), replay.log()[-3000:]
        live_meshes, replay_meshes = _meshes(live_probe), _meshes(replay_probe)
    finally:
        if camera is not None:
            camera.close()
        for probe in (live_probe, replay_probe):
            probe.close()
        for proc in (live, replay):
            proc.stop()
    assert len(live_meshes) == len(replay_meshes) == 3
    for centre, vertices in live_meshes.values():
        # Ids may differ between the two nodes: pair each live object with the replayed one nearest to it.
        other_centre, other_vertices = min(replay_meshes.values(), key=lambda m: np.linalg.norm(m[0] - centre))
        assert np.linalg.norm(other_centre - centre) < SAME_MESH_M
        assert chamfer_distance(vertices, other_vertices) < SAME_MESH_M
