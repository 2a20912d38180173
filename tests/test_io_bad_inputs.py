"""Bad input at the command line and in CameraInfo: one clear error line, never a traceback or a library's warning.

The CLI cases run ``python -m z123_ros.cli`` as a subprocess, because libpng and OpenCV write their warnings to the
process's stderr from C, where an in-process capture would not see them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import CameraError, InputError
from z123_ros.io import check_png, load_camera, save_depth_png, save_mask, save_rgb

REPO = Path(__file__).resolve().parents[1]


def _z123(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "z123_ros.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frame")
    h, w = 48, 64
    depth = np.full((h, w), 0.5, np.float32)
    mask = np.zeros((h, w), bool)
    mask[18:30, 26:38] = True
    depth[mask] = 0.47
    rgb = np.full((h, w, 3), 200, np.uint8)
    rgb[mask] = (180, 60, 40)
    save_rgb(folder / "rgb.png", rgb)
    save_mask(folder / "mask.png", mask)
    save_depth_png(folder / "depth.png", depth)
    K = CameraIntrinsics.from_fov(60.0, w, h).K
    (folder / "camera.json").write_text(json.dumps({"K": K.ravel().tolist(), "width": w, "height": h}))
    singular = K.copy()
    singular[2] = 0.0
    (folder / "singular.json").write_text(json.dumps({"K": singular.ravel().tolist(), "width": w, "height": h}))
    png = (folder / "rgb.png").read_bytes()
    (folder / "truncated.png").write_bytes(png[: len(png) // 2])
    corrupt = bytearray(png)
    corrupt[len(png) // 2] ^= 0xFF  # inside the image data: its chunk's checksum no longer matches
    (folder / "corrupt.png").write_bytes(bytes(corrupt))
    return folder


@pytest.mark.parametrize(
    ("row", "match"),
    [([0, 0, 0], "0, 0, 1"), ([0, 0, 2], "0, 0, 1"), ([1e-3, 0, 1], "0, 0, 1")],
    ids=["singular", "scaled", "projective"],
)
def test_k_whose_last_row_is_not_0_0_1_is_refused(row: list[float], match: str) -> None:
    K = np.array([[500.0, 0, 32], [0, 500, 24], row])
    with pytest.raises(CameraError, match=match):
        CameraIntrinsics.from_K(K, 64, 48)
    skewed = np.array([[500.0, 3.0, 32], [0, 500, 24], [0, 0, 1]])
    with pytest.raises(CameraError, match="skew"):
        CameraIntrinsics.from_K(skewed, 64, 48)


def test_singular_k_in_camera_json_names_the_file(frame: Path) -> None:
    with pytest.raises(CameraError, match="singular.json"):
        load_camera(frame / "singular.json")


def test_singular_k_in_camera_info_is_refused() -> None:
    pytest.importorskip("sensor_msgs")
    from sensor_msgs.msg import CameraInfo

    from z123_ros.ros.conversions import camera_info_to_intrinsics

    msg = CameraInfo(width=64, height=48, k=[500.0, 0.0, 32.0, 0.0, 500.0, 24.0, 0.0, 0.0, 0.0])
    with pytest.raises(CameraError, match="0, 0, 1"):
        camera_info_to_intrinsics(msg)


@pytest.mark.parametrize(("name", "match"), [("truncated.png", "truncated PNG"), ("corrupt.png", "corrupt PNG")])
def test_bad_png_is_one_input_error(frame: Path, name: str, match: str) -> None:
    with pytest.raises(InputError, match=match):
        check_png((frame / name).read_bytes(), frame / name)
    check_png((frame / "rgb.png").read_bytes(), frame / "rgb.png")  # a good one passes
    assert cv2.imread(str(frame / "rgb.png")) is not None


def test_segment_with_a_corrupt_png_prints_one_line(frame: Path, tmp_path: Path) -> None:
    # (libpng would print "libpng error: IDAT: CRC error" first; the truncated case is the same check, above)
    args = ["--rgb", str(frame / "corrupt.png"), "--camera", str(frame / "camera.json"), "--out", str(tmp_path)]
    done = _z123("segment", *args)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("z123 segment: error:"), done.stderr


def test_segment_with_a_singular_k_prints_one_line(frame: Path, tmp_path: Path) -> None:
    args = ["--rgb", str(frame / "rgb.png"), "--camera", str(frame / "singular.json"), "--out", str(tmp_path / "o")]
    done = _z123("segment", *args)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "0, 0, 1" in done.stderr, done.stderr


def test_reconstruct_into_an_unwritable_folder_prints_one_line(frame: Path, tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    inputs = ["--rgb", str(frame / "rgb.png"), "--mask", str(frame / "mask.png"), "--depth", str(frame / "depth.png")]
    # (root may write anywhere, so "unwritable" is a path under a file; a read-only folder fails the same way)
    out = tmp_path / "a_file" / "out"
    done = _z123("reconstruct", *inputs, "--camera", str(frame / "camera.json"), "--out", str(out))
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "cannot write the output folder" in done.stderr, done.stderr
