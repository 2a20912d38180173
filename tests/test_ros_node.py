"""z123_node end to end, with a real rclpy graph: the node runs as its own process started with the YAML
(``python -m z123_ros.ros.node --ros-args --params-file ...``), an embedded local Ray runs the depth backend, and a
probe node in this process plays the RGB-D camera with rendered frames of real YCB scans on a table.

The probe checks that segmentations and reconstructions come back stamped with the input header, that the meshes
brought to the world frame with T_world_from_cam overlap the ground-truth objects, that a static scene is
reconstructed once (not per frame), the on-demand service, every kind of bad input (counted by reason in
/diagnostics, the node alive and still serving good frames afterwards), and a clean shutdown.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("z123_interfaces")
pytest.importorskip("ray")
pytest.importorskip("pybullet")

from _ros_helpers import (  # noqa: E402
    NODE_YAML,
    NodeProcess,
    Probe,
    dispatcher_warm,
    full_mask,
    read_params,
    stamp_key,
    wait_for,
    write_params,
)
from sensor_msgs.msg import CameraInfo, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from z123_ros.camera import transform_points  # noqa: E402
from z123_ros.reconstruction import ReconstructionInput, reconstruct  # noqa: E402
from z123_ros.reconstruction.metrics import chamfer_distance, volumetric_iou  # noqa: E402
from z123_ros.ros import conversions as conv  # noqa: E402
from z123_ros.ros.sim_camera_node import scene_messages  # noqa: E402
from z123_ros.sim import SceneConfig, render_tabletop_scene  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.ray]

FRAME_ID = "camera_color_optical_frame"
# Floor of the IoU between the node's mesh (brought to the world frame) and the scanned object. A mesh in the wrong
# frame (camera frame left untransformed, a mirrored axis, millimetres for metres) or another object's mesh scores
# ~0 (no overlap: the objects stand >= 1 cm apart and are 5-20 cm large); the depth backend itself scores 0.27-0.83
# on these objects as its heuristics evolve. 0.15 separates "right object, right place" from every frame, unit or
# association error without tying this test to the backend's current quality (its own tests own that).
IOU_FLOOR = 0.15
# The node must deliver the backend's geometry intact: its mesh against reconstruct() run here on the same mask and
# decoded depth. Only the simplification of meshes above max_mesh_faces moves vertices (a dense vertex lies ~half a
# simplified edge from its nearest kept one, ~1 mm here); a wrong frame or unit moves them by centimetres to metres.
SAME_AS_LIBRARY_CHAMFER_M = 0.003
# The IoU grid: 32^3 instead of the paper protocol's 64^3 (8x fewer winding-number queries, seconds per object on
# the CI machine); ample for a floor that separates overlap from no overlap.
IOU_RESOLUTION = 32


@pytest.fixture(scope="module")
def scene():
    # QVGA keeps segmentation and the depth backend about twice as fast as VGA on the 2-core CI machine.
    return render_tabletop_scene(SceneConfig(seed=0, num_objects=3, width=320, height=240))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("z123_node")
    params = write_params(
        tmp / "params.yaml",
        {
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
        running = wait_for(lambda: dispatcher_warm(probe.diagnostics()) or not proc.alive(), timeout=120)
        assert running and proc.alive(), f"node did not become active with warm actors:\n{proc.log()[-3000:]}"
        yield proc, probe
    finally:
        probe.close()
        proc.stop()


def _publisher(probe: Probe, scene, encoding: str = "32FC1"):
    colour, depth, info = scene_messages(scene, Header(frame_id=FRAME_ID), encoding)
    stamps: list = []

    def tick() -> None:
        stamps.append(stamp_key(probe.publish_frame(colour, depth, info)))

    return tick, stamps


def _match_gt(scene, seg_msg, object_id: int) -> int:
    """Ground-truth object id under the segmented mask (majority vote of the rendered instance ids)."""
    obj = next(o for o in seg_msg.objects if o.id == object_id)
    mask = full_mask(obj, scene.intrinsics.width, scene.intrinsics.height)
    ids = scene.instance_ids[mask]
    ids = ids[ids > 0]
    return int(np.bincount(ids).argmax()) if len(ids) else 0


def test_segments_and_reconstructs_ycb_objects(node, scene) -> None:
    proc, probe = node
    tick, stamps = _publisher(probe, scene, "16UC1")

    def all_reconstructed():
        segs = probe.messages("segmentation")
        recs = probe.messages("reconstruction")
        return segs and segs[-1].objects and {o.id for o in segs[-1].objects} <= {r.object_id for r in recs}

    assert wait_for(all_reconstructed, timeout=60, period=0.2, tick=tick), (
        f"no complete set of reconstructions; diagnostics: {probe.diagnostics()}\n{proc.log()[-3000:]}"
    )
    segs, recs = probe.messages("segmentation"), probe.messages("reconstruction")
    seg = segs[-1]
    # Every output carries the header of an input frame.
    for msg in (*segs, *recs):
        assert msg.header.frame_id == FRAME_ID and stamp_key(msg.header.stamp) in stamps
    visible = [o for o in scene.objects if o.pixel_count > 200]
    assert len(seg.objects) == len(visible) == 3
    assert seg.has_plane and 0 < seg.camera_polar_deg < 90

    depth_m = conv.depth_to_metres(scene_messages(scene, Header(), "16UC1")[1])
    ious = {}
    for rec in recs:
        gt_id = _match_gt(scene, seg, rec.object_id)
        assert gt_id > 0, f"object {rec.object_id} does not cover any ground-truth object"
        assert rec.metric and rec.backend == "depth" and len(rec.timings) > 0
        vertices, faces = conv.msg_to_mesh(rec.mesh)
        cloud = conv.pointcloud2_to_points(rec.cloud).xyz
        assert rec.cloud.header.frame_id == FRAME_ID and len(cloud) > 100
        # Geometry is in metres in the camera frame: its points lie in front of the camera, near the object.
        assert cloud[:, 2].min() > 0.1 and np.ptp(cloud, axis=0).max() < 0.5
        world = transform_points(scene.T_world_from_cam, vertices)
        name = scene.object(gt_id).name
        ious[name] = volumetric_iou((world, faces), scene.object(gt_id).mesh_world, resolution=IOU_RESOLUTION)
        seg_obj = next(o for o in seg.objects if o.id == rec.object_id)
        mask = full_mask(seg_obj, scene.intrinsics.width, scene.intrinsics.height)
        inp = ReconstructionInput(
            scene.rgb, mask, scene.intrinsics, depth_m=depth_m, support_plane_cam=np.array(seg.plane)
        )
        library = reconstruct(inp, "depth")
        # Vertices against vertices: exact (0) for unsimplified meshes, about half a simplified edge otherwise.
        same = chamfer_distance(vertices, library.vertices)
        logging.getLogger(__name__).info(
            "%s: IoU vs ground truth %.3f; Chamfer vs reconstruct() here %.2f mm", name, ious[name], 1e3 * same
        )
        assert same < SAME_AS_LIBRARY_CHAMFER_M, (name, same)
    assert len(ious) == 3
    assert min(ious.values()) > IOU_FLOOR, ious

    # A static scene is reconstructed once per object, not once per frame.
    n_segs = len(probe.messages("segmentation"))
    assert wait_for(lambda: len(probe.messages("segmentation")) > n_segs + 3, timeout=20, period=0.2, tick=tick)
    time.sleep(1.0)
    recs = probe.messages("reconstruction")
    assert sorted(r.object_id for r in recs) == sorted({o.id for o in seg.objects}), "re-dispatched a static object"
    diag = probe.diagnostics()
    assert int(diag["count.jobs_submitted"]) == 3, diag
    assert float(diag["latency_s.frame_to_mesh.p50"]) > 0

    # Aggregated outputs for RViz: one cloud of every object, one mesh marker and one label per object.
    def full_aggregate():
        markers = probe.messages("markers")
        return markers and sum(m.type == Marker.TRIANGLE_LIST for m in markers[-1].markers) == 3

    assert wait_for(full_aggregate, timeout=5)
    assert sum(m.type == Marker.TEXT_VIEW_FACING for m in probe.messages("markers")[-1].markers) == 3
    agg = conv.pointcloud2_to_points(probe.messages("cloud")[-1])
    assert agg.rgb is not None and len(agg.xyz) >= sum(r.cloud.width for r in recs) * 0.99


def test_reconstruct_object_service(node, scene) -> None:
    proc, probe = node
    tick, _ = _publisher(probe, scene)
    tick()
    seg = probe.messages("segmentation")[-1]
    target = seg.objects[0]
    n_before = len(probe.messages("reconstruction"))

    request = probe.ReconstructObject.Request(object_id=int(target.id))
    response = probe.call(request)
    assert response.accepted, response.message
    missing = probe.call(probe.ReconstructObject.Request(object_id=9999))
    assert not missing.accepted and "9999" in missing.message
    roi_request = probe.ReconstructObject.Request(object_id=0)
    roi_request.roi = target.box
    roi = probe.call(roi_request)
    assert roi.accepted, roi.message
    outside = probe.ReconstructObject.Request(object_id=0)
    outside.roi.x_offset, outside.roi.width, outside.roi.height = 10_000, 5, 5
    assert not probe.call(outside).accepted

    # Run-time parameters: safe ones change, read-only ones (topics, backend) are refused, bad values too.
    ok, refused, out_of_range = probe.set_parameters(
        {"max_segmentation_rate_hz": 4.0, "backend": "hull", "change_distance_m": -1.0}
    )
    assert ok.successful and not refused.successful and not out_of_range.successful

    assert wait_for(lambda: len(probe.messages("reconstruction")) >= n_before + 2, timeout=60, period=0.2, tick=tick)
    new = probe.messages("reconstruction")[n_before:]
    assert int(target.id) in {r.object_id for r in new}
    assert any(r.object_id >= 100000 for r in new), "the roi request's result (fresh id) did not arrive"


def _bad_inputs(scene):
    """(expected drop reason, messages to publish as (colour, depth, info) with one fresh stamp)."""
    header = Header(frame_id=FRAME_ID)
    colour, depth, info = scene_messages(scene, header)

    yuv = Image(header=header, height=colour.height, width=colour.width, encoding="yuv422", step=colour.width * 2)
    yuv.data = bytes(colour.width * colour.height * 2)
    truncated = scene_messages(scene, header, "16UC1")[1]
    truncated.data = bytes(truncated.data)[: -truncated.step // 2]
    absurd = Image(header=header, height=100_000, width=100_000, encoding="rgb8", step=300_000)
    zero_focal = conv.intrinsics_to_camera_info(scene.intrinsics, header)
    zero_focal.k = [0.0] * 9
    huge_info = CameraInfo(header=header, width=100_000, height=100_000, k=info.k)
    nan_depth = conv.numpy_to_image(np.full(scene.depth_m.shape, np.nan, np.float32), "32FC1", header)
    zero_depth = conv.numpy_to_image(np.zeros(scene.depth_m.shape, np.uint16), "16UC1", header)
    small = conv.numpy_to_image(np.ascontiguousarray(scene.rgb[::2, ::2]), "rgb8", header)
    return [
        ("bad_colour_image", (yuv, depth, info)),
        ("bad_depth_image", (colour, truncated, info)),
        ("bad_colour_image", (absurd, depth, info)),
        ("bad_camera_info", (colour, depth, zero_focal)),
        ("bad_camera_info", (colour, depth, huge_info)),
        ("invalid_depth", (colour, nan_depth, info)),
        ("invalid_depth", (colour, zero_depth, info)),
        ("size_mismatch", (small, depth, info)),
    ]


def test_bad_inputs_are_counted_dropped_and_survived(node, scene) -> None:
    proc, probe = node

    def drops(reason: str) -> int:
        return int(probe.diagnostics().get(f"drop.{reason}", 0))

    for reason, (colour, depth, info) in _bad_inputs(scene):
        before = drops(reason)
        counted = wait_for(
            lambda r=reason, b=before: drops(r) > b,
            timeout=10,
            period=0.3,
            tick=lambda c=colour, d=depth, i=info: probe.publish_frame(c, d, i),
        )
        assert counted, f"{reason} not counted; diagnostics: {probe.diagnostics()}"
        assert proc.alive(), proc.log()[-3000:]

    # Frames that never synchronise: depth always 5 s behind colour and camera info.
    colour, depth, info = scene_messages(scene, Header(frame_id=FRAME_ID))
    before_sync = drops("unsynchronised")
    time.sleep(0.5)  # let frames already in the pipeline come out
    n_segs = len(probe.messages("segmentation"))

    def unsynchronised() -> None:
        stamp = probe.stamp()
        probe.publish_frame(colour, None, info, stamp)
        late = probe.stamp()
        late.sec -= 5
        depth.header.stamp = late
        probe.pub_depth.publish(depth)

    assert wait_for(lambda: drops("unsynchronised") > before_sync + 5, timeout=10, period=0.1, tick=unsynchronised)
    assert len(probe.messages("segmentation")) == n_segs, "an unsynchronised frame was processed"

    # Still alive and still serving good frames.
    assert proc.alive(), proc.log()[-3000:]
    tick, stamps = _publisher(probe, scene)
    assert wait_for(
        lambda: any(stamp_key(s.header.stamp) in stamps for s in probe.messages("segmentation")),
        timeout=20,
        period=0.2,
        tick=tick,
    ), f"no segmentation of a good frame after the bad ones; diagnostics: {probe.diagnostics()}"
    diag = probe.diagnostics()
    assert diag["state"] == "running" and diag["dispatch.state"] == "ready"
    for reason in (
        "bad_colour_image",
        "bad_depth_image",
        "bad_camera_info",
        "invalid_depth",
        "size_mismatch",
        "unsynchronised",
    ):
        assert int(diag[f"drop.{reason}"]) > 0, reason


def test_clean_shutdown(node) -> None:
    proc, _ = node
    assert proc.alive()
    code = proc.stop()
    log = proc.log_path.read_text(errors="replace")
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_yaml_keys_are_declared_parameters() -> None:
    """A misspelt key in a params file is silently ignored by ROS: check every key of the shipped YAML files."""
    from z123_ros.ros.config import NodeConfig
    from z123_ros.ros.params import build_config, parameter_specs
    from z123_ros.ros.sim_camera_node import SimCameraConfig

    for path, node_name, config in (
        (NODE_YAML, "z123_node", NodeConfig()),
        (NODE_YAML.parent / "sim_camera.yaml", "sim_camera", SimCameraConfig()),
    ):
        values = read_params(path, node_name)
        specs = parameter_specs(config)
        unknown = sorted(set(values) - {s.name for s in specs})
        assert not unknown, f"{path.name}: keys that are not parameters: {unknown}"
        build_config(config, specs, values)  # types and ranges


def test_launch_file_parses() -> None:
    import ast

    from _ros_helpers import REPO

    tree = ast.parse((REPO / "launch" / "z123.launch.py").read_text())
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)


@pytest.mark.slow
def test_novel_views_are_published(tmp_path, scene) -> None:
    """publish_novel_views: a novel-view job per new object on the dispatcher's novel_views pool (a tiny random-weight
    Zero-1-to-3 in the published layout), the views published side by side with the input header."""
    pytest.importorskip("torch")
    from z123_ros.novel_views.testing import save_tiny_zero123

    model = save_tiny_zero123(tmp_path / "tiny_zero123")
    params = write_params(
        tmp_path / "params.yaml",
        {
            "input_qos": "reliable",
            "publish_novel_views": True,
            "novel_view_azimuths_deg": [90.0, 270.0],
            "reconstruction.multiview.num_inference_steps": 2,
            "dispatch.num_cpus": 2,
            "dispatch.novel_views.num_actors": 1,
            "dispatch.novel_views.num_cpus": 0.5,
            "dispatch.novel_views.model_path": str(model),
            "dispatch.reconstruction.num_cpus": 0.5,
            "diagnostics_period_s": 0.2,
        },
    )
    proc = NodeProcess(params, tmp_path / "node.log")
    probe = Probe()
    from sensor_msgs.msg import Image as ImageMsg

    views: list = []
    probe.node.create_subscription(ImageMsg, "/z123_node/novel_views", views.append, 10)
    try:
        assert wait_for(lambda: dispatcher_warm(probe.diagnostics()) or not proc.alive(), timeout=180)
        assert proc.alive(), proc.log()[-3000:]
        tick, stamps = _publisher(probe, scene)
        assert wait_for(lambda: views, timeout=120, period=0.3, tick=tick), (
            f"no novel views; diagnostics {probe.diagnostics()}\n{proc.log()[-3000:]}"
        )
        strip = conv.image_to_rgb(views[0])
        assert views[0].header.frame_id == FRAME_ID and stamp_key(views[0].header.stamp) in stamps
        assert strip.shape[1] == 2 * strip.shape[0], "two square views side by side"
    finally:
        probe.close()
        proc.stop()
