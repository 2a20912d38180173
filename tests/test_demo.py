"""The main job, short: `z123 demo` with 2 objects -> sim camera process -> node process -> local Ray -> meshes."""

import json

import pytest

pytestmark = [pytest.mark.ros, pytest.mark.ray]


def test_short_demo_writes_sane_outputs(tmp_path):
    from z123_ros.demo import DemoConfig, run_demo

    out = tmp_path / "demo"
    scores, missing = run_demo(DemoConfig(out=out, seed=3, num_objects=2, timeout_s=240))
    assert missing == []
    assert len(scores) == 2
    names = {s.gt_name for s in scores}
    assert len(names) == 2, f"two reconstructions matched the same ground-truth object: {names}"
    for s in scores:
        # The depth backend on clean simulated depth: far above the convex-hull baseline floor (IoU ~0.45).
        assert s.iou > 0.4, s
        assert s.chamfer_mm < 15, s
        assert (out / f"object_{s.object_id}_mesh.ply").stat().st_size > 1000
        assert (out / f"object_{s.object_id}_points.ply").stat().st_size > 1000
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["objects"]) == 2 and summary["missing"] == []
    assert (out / "overview.png").stat().st_size > 10_000
    assert "| mean |" in (out / "summary.md").read_text()
    assert not list(tmp_path.glob(".z123_demo_*")), "the temporary work folder was left behind"
