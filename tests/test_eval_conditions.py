"""The conditions benchmark (z123_ros.evaluation.conditions / conditions_report) and ``z123 eval --conditions``."""

from __future__ import annotations

import argparse
import json
import shutil

import numpy as np
import pytest
import trimesh
from _segmentation_helpers import box_scene

from z123_ros.camera import transform_points
from z123_ros.errors import ConfigError
from z123_ros.evaluation.cli import register
from z123_ros.evaluation.conditions import (
    Case,
    CaseObject,
    ConditionsConfig,
    ConditionsResult,
    ReconstructionRecord,
    bucket_names,
    reconstruct_case,
    resolve_spec,
    segment_case,
)
from z123_ros.evaluation.conditions_report import (
    bucket_summaries,
    confidence_tracking,
    plot_names,
    pooled_summaries,
    shell_ceiling,
    write_conditions_report,
)
from z123_ros.evaluation.real import DEFAULT_REAL_ROOT

FAST = dict(iou_resolution=16, num_points=500, max_objects=2)
BOXES = [((0.0, -0.1, 0.0), (0.06, 0.06, 0.08), (200, 30, 30)), ((0.0, 0.1, 0.0), (0.05, 0.08, 0.05), (30, 30, 200))]


def cli_main(argv: list[str]) -> int:
    """``z123 eval`` alone (the full CLI also imports the training stack, seconds on a busy machine)."""
    parser = argparse.ArgumentParser(prog="z123")
    register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def _box_case(bucket: str = "boxes") -> Case:
    """Two boxes on a table, ray-cast exactly, with their meshes as ground truth in the camera frame."""
    rgb, depth, ids, intr, T_cam_from_world = box_scene(BOXES)
    objects = []
    for k, (centre, size, _) in enumerate(BOXES, start=1):
        box = trimesh.creation.box(extents=size)
        box.apply_translation((centre[0], centre[1], centre[2] + size[2] / 2))
        mesh = trimesh.Trimesh(transform_points(T_cam_from_world, box.vertices), box.faces)
        objects.append(CaseObject(k, f"box{k}", mesh, 1.0, int((ids == k).sum()), 0.7, 45.0))
    return Case(bucket, f"{bucket}/0", rgb, depth, intr, ids, objects, "ideal", T_cam_from_world)


def test_specs_resolve_to_buckets_and_seeds():
    names = bucket_names()
    assert "clean" in names
    assert resolve_spec("clean", 2, seed=5) == [("clean", 5), ("clean", 6)]
    assert resolve_spec("random:3", 2) == [("random", 0), ("random", 1), ("random", 2)]
    everything = resolve_spec("all", 1)
    assert [b for b, _ in everything] == [n for n in names if n != "random"]
    assert resolve_spec("clean,clean", 1) == [("clean", 0)]
    with pytest.raises(ConfigError, match="no_such_bucket"):
        resolve_spec("clean,no_such_bucket", 1)
    with pytest.raises(ConfigError, match="random:N"):
        resolve_spec("random:many", 1)
    with pytest.raises(ConfigError, match="nothing to run"):
        ConditionsConfig(spec="").check()
    with pytest.raises(ConfigError, match="segmenter"):
        ConditionsConfig(segmenter="magic").check()


def test_a_case_is_segmented_and_reconstructed_by_both_methods_and_summarised(tmp_path):
    pytest.importorskip("open3d")
    from z123_ros.evaluation.conditions import _Segmenters

    config = ConditionsConfig(spec="clean", **FAST)
    case = _box_case()
    seg = segment_case(case, config.segmenters(), _Segmenters(config.segmenters()))
    rec = reconstruct_case(case, config)
    assert [r.method for r in seg] == ["tabletop", "open3d"]
    for record in seg:  # two boxes standing apart on a plain table: both methods find both
        assert record.score.found == 2 and record.score.false_positives == 0, record.method
    assert sorted((r.object, r.backend) for r in rec) == [
        ("box1", "depth"), ("box1", "hull"), ("box2", "depth"), ("box2", "hull"),
    ]  # fmt: skip
    assert all(r.ok and 0.3 < r.iou <= 1.0 and r.chamfer_mm < 20 and r.components >= 1 for r in rec)

    result = ConditionsResult(config, seg, rec, cases=[case.name])
    summary = bucket_summaries(result)["boxes"]
    depth_ious = sorted(r.iou for r in rec if r.backend == "depth")
    assert summary["reconstruction"]["depth"]["iou_median"] == pytest.approx(np.median(depth_ious))
    assert summary["reconstruction"]["depth"]["objects"] == 2
    assert summary["segmentation"]["tabletop"]["found"] == 2
    assert 0.0 <= summary["win_rate"] <= 1.0

    paths = write_conditions_report(result, tmp_path, command="z123 eval --conditions clean", name="demo")
    text = paths["markdown"].read_text()
    assert "| boxes | 2 |" in text and "open3d IoU mean" in text and "beats hull" in text
    assert "## Pooled over objects" in text and "rank corr." in text
    data = json.loads(paths["json"].read_text())
    assert data["buckets"]["boxes"]["reconstruction"]["hull"]["objects"] == 2
    for name in plot_names("demo"):
        assert (tmp_path / name).stat().st_size > 1000, name


def test_bad_specs_get_one_error_line_and_nothing_written(tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli_main(["eval", "--conditions", "clean,nowhere", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "nowhere" in err[0]
    rc = cli_main(["eval", "--real", str(tmp_path / "no_frames"), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no_frames" in err[0]
    assert not out.exists()


@pytest.mark.skipif(not (DEFAULT_REAL_ROOT / "ycbv-dev").is_dir(), reason="../shared/data/real is absent")
def test_cli_scores_real_frames_without_a_camera_pose_and_shows_unlabelled_ones(tmp_path, capsys):
    real = tmp_path / "real"
    shutil.copytree(DEFAULT_REAL_ROOT / "ycbv-dev" / "0000_000001", real / "ycbv-dev" / "0000_000001")
    shutil.copytree(DEFAULT_REAL_ROOT / "unlabelled-ycbv-style" / "000001", real / "unlabelled" / "000001")
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("the paper-style report, written by another command")
    argv = ["eval", "--real", str(real), "--out", str(out), "--max-objects", "1", "--iou-resolution", "16"]
    rc = cli_main([*argv, "--seg-baseline", "none"])
    assert rc == 2 and "--overwrite" in capsys.readouterr().err
    rc = cli_main([*argv, "--seg-baseline", "none", "--overwrite"])
    assert rc == 0, capsys.readouterr().err
    assert (out / "report.md").read_text().startswith("the paper-style report")  # other reports stay
    data = json.loads((out / "conditions.json").read_text())
    assert list(data["buckets"]) == ["real:ycbv-dev"]
    assert data["buckets"]["real:ycbv-dev"]["segmentation"]["tabletop"]["objects"] >= 1
    (record,) = [r for r in data["reconstruction"] if r["backend"] == "depth"]
    assert record["sensor"] == "real" and record["ok"], record
    assert 0.5 < record["range_m"] < 1.5 and 0 < record["elevation_deg"] < 90
    (unlabelled,) = data["unlabelled"]
    assert unlabelled["case"] == "unlabelled:unlabelled/000001" and unlabelled["objects"]["tabletop"] >= 1
    assert "| unlabelled:unlabelled/000001 |" in (out / "conditions.md").read_text()
    assert (out / "conditions_unlabelled.png").stat().st_size > 1000


def test_mesh_metrics_follow_evaluate_mesh_also_on_the_convex_shortcut():
    from z123_ros.evaluation.conditions import mesh_metrics
    from z123_ros.reconstruction.metrics import evaluate_mesh

    config = ConditionsConfig(iou_resolution=16, num_points=500)
    gt = trimesh.creation.annulus(r_min=0.02, r_max=0.04, height=0.05)  # not convex: winding numbers
    for pred in (trimesh.creation.box((0.07, 0.08, 0.05)), trimesh.creation.icosphere(2, 0.045)):
        pred.apply_translation((0.004, 0.0, 0.002))
        assert pred.is_convex
        ours = mesh_metrics(pred, gt, config)
        reference = evaluate_mesh(pred, gt, 500, config.f_threshold_m, False, 16)
        assert ours == pytest.approx(reference, abs=1e-9)
        assert 0.0 < ours["iou"] < 1.0


def _record(bucket: str, name: str, iou: float, confidence: float, ok: bool = True) -> ReconstructionRecord:
    return ReconstructionRecord(
        bucket, f"{bucket}/0", name, "depth", "ideal", 0.5, 45.0, 1.0, ok=ok, iou=iou, chamfer_mm=2.0,
        f_score=0.9, seconds=0.1, components=1, confidence=confidence,
    )  # fmt: skip


def test_confidence_tracking_ranks_and_splits_at_the_trust_line():
    records = [_record("clean", "a", 0.9, 0.9), _record("clean", "b", 0.7, 0.6), _record("clean", "c", 0.2, 0.3)]
    tracked = confidence_tracking(records)
    assert tracked["spearman"] == pytest.approx(1.0)
    assert (tracked["trusted"], tracked["untrusted"]) == (2, 1)
    assert tracked["trusted_iou_mean"] == pytest.approx(0.8) and tracked["untrusted_iou_mean"] == pytest.approx(0.2)
    # A confident failure counts as IoU 0 at confidence 0, and a confidence that ranks the worst first is negative.
    flipped = [_record("clean", "a", 0.9, 0.3), _record("clean", "b", 0.2, 0.9), _record("clean", "c", 0.5, 0.6)]
    assert confidence_tracking(flipped)["spearman"] == pytest.approx(-1.0)
    failed = confidence_tracking([*records, _record("clean", "d", float("nan"), 0.95, ok=False)])
    assert failed["untrusted"] == 2 and failed["untrusted_iou_mean"] == pytest.approx(0.1)


def test_pooled_summaries_weigh_objects_and_set_the_thin_shells_apart():
    records = [
        _record("clean", "004_sugar_box", 0.9, 0.9),
        _record("clean", "024_bowl", 0.2, 0.5),
        _record("hollow", "065-a_cups", 0.3, 0.5),
        _record("real:ycbv-dev", "025_mug", 0.4, 0.5),
    ]
    result = ConditionsResult(ConditionsConfig(baseline="none", segmentation=False), reconstruction=records)
    pooled = pooled_summaries(result)["depth"]
    assert pooled["sim"]["objects"] == 3 and pooled["sim"]["iou_mean"] == pytest.approx(1.4 / 3)
    assert pooled["sim_solid"]["objects"] == 1 and pooled["sim_solid"]["iou_mean"] == pytest.approx(0.9)
    assert pooled["thin_sim"]["iou_median"] == pytest.approx(0.25) and pooled["thin_all"]["objects"] == 3
    assert pooled["real"]["objects"] == 1


def _open_cylinder(wall_m: float) -> trimesh.Trimesh:
    """A cup of radius 4 cm and height 6 cm, wall and floor ``wall_m`` thick: its cross-section revolved."""
    r, h = 0.04, 0.06
    profile = [(0.0, 0.0), (r, 0.0), (r, h), (r - wall_m, h), (r - wall_m, wall_m), (0.0, wall_m)]
    return trimesh.creation.revolve(np.array(profile), sections=32)


def test_shell_ceiling_shows_how_far_a_thin_walls_iou_falls_with_a_millimetre_of_error():
    """What the report's ceiling table claims: the same 1 mm shift costs a 1 mm wall most of its IoU on the
    benchmark's grid and a 6 mm wall little, and the wall thickness is measured from the mesh."""
    config = ConditionsConfig(iou_resolution=32, num_points=500)
    thin, thick = shell_ceiling(_open_cylinder(0.001), config), shell_ceiling(_open_cylinder(0.006), config)
    assert thin["wall_mm"] == pytest.approx(1.0, abs=0.2) and thick["wall_mm"] == pytest.approx(6.0, abs=0.8)
    assert thin["iou_shift_1mm"] < 0.6 < 0.8 < thick["iou_shift_1mm"]
    assert thin["iou_shift_2mm"] < thin["iou_shift_0.5mm"] and thin["iou_scale_1pct"] < thick["iou_scale_1pct"]
