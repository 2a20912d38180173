"""A reconstruction backend added as one module (tests/_toy_backend.py, a test double) runs through a RUNNING
z123_node: the node process, its dispatch process and the Ray actors learn it only from Z123_BACKEND_MODULES in the
environment, and the node publishes its meshes. With tests/test_reconstruction_registry.py (reconstruct(), the CLI,
a dispatcher actor, the node's configuration check) this shows that adding a backend touches no other file."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("z123_interfaces")
pytest.importorskip("ray")
pytest.importorskip("pybullet")

from _ros_helpers import NodeProcess, Probe, dispatcher_warm, stamp_key, wait_for, write_params  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from z123_ros.ros import conversions as conv  # noqa: E402
from z123_ros.ros.sim_camera_node import scene_messages  # noqa: E402
from z123_ros.sim import SceneConfig, render_tabletop_scene  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.ray]

TOY_MODULE = "tests._toy_backend"
TOY = "toy_box"


def test_a_plugin_backend_runs_through_the_running_node(tmp_path, monkeypatch) -> None:
    scene = render_tabletop_scene(SceneConfig(seed=1, num_objects=2, width=320, height=240))
    monkeypatch.setenv("Z123_BACKEND_MODULES", TOY_MODULE)  # NodeProcess passes this process's environment on
    params = write_params(
        tmp_path / "params.yaml",
        {
            "backend": TOY,
            "input_qos": "reliable",
            "diagnostics_period_s": 0.2,
            "dispatch.object_store_memory_mb": 96,
        },
    )
    proc = NodeProcess(params, tmp_path / "node.log")
    probe = Probe()
    try:
        warm = wait_for(lambda: dispatcher_warm(probe.diagnostics()) or not proc.alive(), timeout=180)
        assert warm and proc.alive(), f"node with backend {TOY} did not start:\n{proc.log()[-3000:]}"
        colour, depth, info = scene_messages(scene, Header(frame_id="cam"), "32FC1")
        stamps: list = []

        def tick() -> None:
            stamps.append(stamp_key(probe.publish_frame(colour, depth, info)))

        assert wait_for(lambda: probe.messages("reconstruction"), timeout=120, period=0.2, tick=tick), (
            f"no reconstruction; diagnostics: {probe.diagnostics()}\n{proc.log()[-3000:]}"
        )
        rec = probe.messages("reconstruction")[0]
        assert rec.backend == TOY and stamp_key(rec.header.stamp) in stamps
        vertices, faces = conv.msg_to_mesh(rec.mesh)
        # The toy backend's answer is an axis-aligned box in the camera frame: 8 corners, 12 triangles, in front of
        # the camera and object-sized (a depth-backend mesh would have hundreds of faces).
        assert len(vertices) == 8 and len(faces) == 12, (len(vertices), len(faces))
        assert vertices[:, 2].min() > 0.1 and 0.005 < np.ptp(vertices, axis=0).max() < 0.5
    finally:
        probe.close()
        proc.stop()
