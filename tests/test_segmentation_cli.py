"""``z123 segment``: files in, masks / objects.json / overlay out; bad input exits 2 and writes nothing."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from _segmentation_helpers import sim_scene

from z123_ros.io import load_mask, load_rgb, save_camera, save_depth_png, save_rgb
from z123_ros.segmentation import score_masks
from z123_ros.segmentation.cli import register


def _z123(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="z123")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def frame_files(tmp_path_factory) -> tuple[Path, object]:
    scene = sim_scene(1, 3, True, 0.45)
    folder = tmp_path_factory.mktemp("frame")
    save_rgb(folder / "rgb.png", scene.rgb)
    save_depth_png(folder / "depth.png", scene.depth_m)
    np.save(folder / "depth.npy", scene.depth_m)
    save_camera(folder / "camera.json", scene.camera_model())
    return folder, scene


def test_segment_writes_masks_objects_and_overlay(frame_files, tmp_path: Path) -> None:
    folder, scene = frame_files
    out = tmp_path / "out"
    code = _z123(
        ["segment", "--rgb", str(folder / "rgb.png"), "--depth", str(folder / "depth.png"),
         "--camera", str(folder / "camera.json"), "--out", str(out)]
    )  # fmt: skip
    assert code == 0
    meta = json.loads((out / "objects.json").read_text())
    assert len(meta["objects"]) == 3 and meta["plane_cam"] is not None
    assert 0 < meta["camera_polar_deg"] < 90
    masks = [load_mask(out / o["mask"]) for o in meta["objects"]]
    assert score_masks(masks, scene.instance_ids).mean_iou > 0.9
    for o, m in zip(meta["objects"], masks, strict=True):
        assert o["method"] == "rgbd_tabletop" and o["area_px"] == int(m.sum())
        assert len(o["centroid_cam"]) == 3 and len(o["box_xyxy"]) == 4
    overlay = load_rgb(out / "overlay.png")
    assert overlay.shape == scene.rgb.shape and not np.array_equal(overlay, scene.rgb)
    # Re-running into the same folder (here RGB-only with an roi) replaces the earlier masks.
    ys, xs = np.nonzero(scene.mask(1))
    roi = [str(v) for v in (xs.min() - 8, ys.min() - 8, xs.max() + 9, ys.max() + 9)]
    code = _z123(["segment", "--rgb", str(folder / "rgb.png"), "--camera", str(folder / "camera.json"),
                  "--out", str(out), "--roi", *roi])  # fmt: skip
    assert code == 0
    meta = json.loads((out / "objects.json").read_text())
    assert [o["method"] for o in meta["objects"]] == ["rgb_grabcut"]
    assert sorted(p.name for p in out.glob("mask_*.png")) == ["mask_01.png"]


def test_segment_accepts_npy_depth(frame_files, tmp_path: Path) -> None:
    folder, _ = frame_files
    out = tmp_path / "npy"
    argv = ["segment", "--rgb", str(folder / "rgb.png"), "--depth", str(folder / "depth.npy")]
    assert _z123([*argv, "--camera", str(folder / "camera.json"), "--out", str(out)]) == 0
    assert len(json.loads((out / "objects.json").read_text())["objects"]) == 3


def test_bad_input_exits_2_without_output(frame_files, tmp_path: Path, capsys) -> None:
    folder, scene = frame_files
    wrong_camera = tmp_path / "camera_small.json"
    cam = scene.camera_model()
    cam.intrinsics = cam.intrinsics.scaled(0.5)
    save_camera(wrong_camera, cam)
    nan_depth = tmp_path / "nan.npy"
    np.save(nan_depth, np.full(scene.depth_m.shape, np.nan, dtype=np.float32))
    cases = [
        (["--rgb", str(tmp_path / "missing.png"), "--camera", str(folder / "camera.json")], "not found"),
        (["--rgb", str(folder / "rgb.png"), "--camera", str(wrong_camera)], "camera says"),
        (["--rgb", str(folder / "rgb.png"), "--depth", str(nan_depth), "--camera", str(folder / "camera.json")],
         "no valid pixel"),
        (["--rgb", str(folder / "rgb.png"), "--camera", str(folder / "camera.json"), "--stride", "0"], "stride"),
        (["--rgb", str(folder / "camera.json"), "--camera", str(folder / "camera.json")], "cannot decode"),
    ]  # fmt: skip
    for i, (argv, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        assert _z123(["segment", *argv, "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and message in err, err
        assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_segment_takes_several_frames_in_one_process(frame_files, tmp_path: Path, capsys, monkeypatch) -> None:
    folder, scene = frame_files
    # A set of two frame folders (one with 16-bit PNG depth, one with .npy) plus one frame folder given directly.
    frames = tmp_path / "set"
    for name, depth in (("a", "depth.png"), ("b", "depth.npy")):
        (frames / name).mkdir(parents=True)
        for f in ("rgb.png", "camera.json", depth):
            (frames / name / f).write_bytes((folder / f).read_bytes())
    out = tmp_path / "many"
    assert _z123(["segment", "--frames", str(frames), str(frames / "a"), "--out", str(out)]) == 2
    assert "same name" in capsys.readouterr().err and not out.exists()
    single = tmp_path / "c"
    single.mkdir()
    for f in ("rgb.png", "camera.json", "depth.npy"):
        (single / f).write_bytes((folder / f).read_bytes())
    assert _z123(["segment", "--frames", str(frames), str(single), "--out", str(out), "--method", "tabletop"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a", "b", "c"]
    for name in ("a", "b", "c"):
        meta = json.loads((out / name / "objects.json").read_text())
        masks = [load_mask(out / name / o["mask"]) for o in meta["objects"]]
        assert score_masks(masks, scene.instance_ids).mean_iou > 0.9
    # One bad frame among good ones: exit 2 and nothing written for any of them.
    (frames / "b" / "camera.json").write_text("{not json")
    out2 = tmp_path / "bad"
    assert _z123(["segment", "--frames", str(frames), "--out", str(out2)]) == 2
    assert "not valid JSON" in capsys.readouterr().err and not out2.exists()
    monkeypatch.setenv("Z123_LEARNED_SEG_WEIGHTS", str(tmp_path / "missing.safetensors"))
    assert _z123(["segment", "--frames", str(single), "--out", str(out2), "--method", "learned"]) == 2
    assert "weights not found" in capsys.readouterr().err and not out2.exists()
