"""``z123 reconstruct``: files written atomically, result.json contents, one-line errors and no partial output."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import trimesh

from tests._reconstruction_helpers import render_object_view
from z123_ros.io import CameraModel, save_camera, save_depth_png, save_mask, save_rgb
from z123_ros.reconstruction.cli import OUTPUT_FILES, register


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="z123")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["reconstruct", *argv])
    return args.func(args)


@pytest.fixture(scope="module")
def frame_files(tmp_path_factory):
    view = render_object_view("005_tomato_soup_can", width=240, height=180)
    folder = tmp_path_factory.mktemp("frame")
    save_rgb(folder / "rgb.png", view.inp.rgb)
    save_mask(folder / "mask.png", view.inp.mask)
    save_depth_png(folder / "depth.png", view.inp.depth_m)
    np.save(folder / "depth.npy", np.asarray(view.inp.depth_m, dtype=np.float32))
    save_camera(folder / "camera.json", CameraModel(view.inp.intrinsics, view.T_cam_from_world, "mm"))
    return folder


def args_for(folder, out, depth="depth.png", backend="depth"):
    argv = [
        "--rgb",
        str(folder / "rgb.png"),
        "--mask",
        str(folder / "mask.png"),
        "--camera",
        str(folder / "camera.json"),
    ]
    if depth:
        argv += ["--depth", str(folder / depth)]
    return [*argv, "--backend", backend, "--out", str(out)]


@pytest.mark.parametrize("depth", ["depth.png", "depth.npy"])
def test_depth_backend_writes_all_outputs(frame_files, tmp_path, depth, capsys):
    out = tmp_path / "out"
    assert run_cli(args_for(frame_files, out, depth)) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES)
    result = json.loads((out / "result.json").read_text())
    assert result["frame"] == "camera" and result["units"] == "m" and result["backend"] == "depth"
    assert result["watertight"] is True
    assert 0.05 < max(result["extent"]) < 0.15  # a soup can, in metres
    assert list(result["timings"])[0] == "validate"
    mesh = trimesh.load(out / "mesh.ply", process=False)
    assert len(mesh.faces) == result["num_faces"] and mesh.is_watertight
    points = trimesh.load(out / "points.ply")
    assert len(points.vertices) == result["num_points"]
    import cv2

    preview = cv2.imread(str(out / "preview.png"))
    assert preview.shape == (256, 5 * 256, 3)
    assert preview[:, 2 * 256 :].min() < 200  # the renders show a shaded mesh, not a blank canvas
    assert "watertight=True" in capsys.readouterr().out


def test_rerun_replaces_outputs_in_an_existing_folder(frame_files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert run_cli(args_for(frame_files, out, backend="hull")) == 0
    assert json.loads((out / "result.json").read_text())["backend"] == "hull"
    assert (out / "keep.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]  # no temp folder left behind


def expect_error(argv, capsys, out, pattern):
    assert run_cli(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and pattern in err, err
    assert not out.exists()


def test_empty_mask_fails_cleanly(frame_files, tmp_path, capsys):
    save_mask(tmp_path / "mask.png", np.zeros((180, 240), bool))
    argv = args_for(frame_files, tmp_path / "out")
    argv[argv.index("--mask") + 1] = str(tmp_path / "mask.png")
    expect_error(argv, capsys, tmp_path / "out", "mask is empty")


def test_mask_of_another_size_fails_cleanly(frame_files, tmp_path, capsys):
    save_mask(tmp_path / "mask.png", np.ones((360, 480), bool))
    argv = args_for(frame_files, tmp_path / "out")
    argv[argv.index("--mask") + 1] = str(tmp_path / "mask.png")
    expect_error(argv, capsys, tmp_path / "out", "mask is 480x360")


def test_all_invalid_depth_fails_cleanly(frame_files, tmp_path, capsys):
    save_depth_png(tmp_path / "depth.png", np.full((180, 240), np.nan))
    argv = args_for(frame_files, tmp_path / "out")
    argv[argv.index("--depth") + 1] = str(tmp_path / "depth.png")
    expect_error(argv, capsys, tmp_path / "out", "no valid")


def test_singular_camera_fails_cleanly(frame_files, tmp_path, capsys):
    (tmp_path / "camera.json").write_text(json.dumps({"K": [0, 0, 0, 0, 0, 0, 0, 0, 1], "width": 240, "height": 180}))
    argv = args_for(frame_files, tmp_path / "out")
    argv[argv.index("--camera") + 1] = str(tmp_path / "camera.json")
    expect_error(argv, capsys, tmp_path / "out", "focal lengths must be positive")


def test_unknown_backend_fails_cleanly(frame_files, tmp_path, capsys):
    expect_error(args_for(frame_files, tmp_path / "out", backend="nerf"), capsys, tmp_path / "out", "unknown backend")


def test_missing_model_folder_fails_cleanly(frame_files, tmp_path, capsys):
    argv = [*args_for(frame_files, tmp_path / "out", backend="multiview"), "--model", str(tmp_path / "no_model")]
    expect_error(argv, capsys, tmp_path / "out", "does not exist")


def test_depth_backend_without_depth_fails_cleanly(frame_files, tmp_path, capsys):
    expect_error(args_for(frame_files, tmp_path / "out", depth=None), capsys, tmp_path / "out", "needs metric depth")


def test_multiview_with_a_tiny_model(frame_files, tmp_path):
    from z123_ros.novel_views.testing import save_tiny_zero123

    model = save_tiny_zero123(tmp_path / "model", layout="diffusers")
    out = tmp_path / "out"
    argv = [
        *args_for(frame_files, out, backend="multiview"),
        "--model",
        str(model),
        "--preset",
        "quick",
        "--steps",
        "2",
    ]
    assert run_cli(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["backend"] == "multiview" and result["frame"] == "camera" and result["info"]["fit_steps"] == 2


def test_a_mask_over_the_whole_image_is_one_error_line_with_the_hull(frame_files, tmp_path, capsys):
    from z123_ros.io import load_mask

    folder = tmp_path / "frame"
    folder.mkdir()
    for name in ("rgb.png", "depth.png", "camera.json"):
        (folder / name).write_bytes((frame_files / name).read_bytes())
    save_mask(folder / "mask.png", np.ones_like(load_mask(frame_files / "mask.png")))
    assert run_cli(args_for(folder, tmp_path / "out", backend="hull")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "covers 100% of the image" in err[0], err
    assert not (tmp_path / "out").exists()
