"""File conventions of the z123 commands (z123_ros.io): round trips and clear errors on bad files."""

import json

import numpy as np
import pytest

from z123_ros import io
from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import CameraError, InputError


def test_rgb_mask_depth_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    mask = np.zeros((24, 32), bool)
    mask[5:10, 3:9] = True
    depth = rng.uniform(0.3, 2.0, (24, 32)).astype(np.float32)
    depth[0, 0] = np.nan
    io.save_rgb(tmp_path / "rgb.png", rgb)
    io.save_mask(tmp_path / "mask.png", mask)
    io.save_depth_png(tmp_path / "depth.png", depth)
    np.save(tmp_path / "depth.npy", depth)
    np.testing.assert_array_equal(io.load_rgb(tmp_path / "rgb.png"), rgb)
    np.testing.assert_array_equal(io.load_mask(tmp_path / "mask.png"), mask)
    d_png = io.load_depth(tmp_path / "depth.png")
    assert np.isnan(d_png[0, 0]) and np.nanmax(np.abs(d_png - depth)) <= 0.0005 + 1e-6
    d_npy = io.load_depth(tmp_path / "depth.npy")
    np.testing.assert_array_equal(np.isnan(d_npy), np.isnan(depth))


def test_camera_json_round_trip(tmp_path):
    K = CameraIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    T = np.eye(4)
    T[:3, 3] = [0.1, 0.2, 0.9]
    io.save_camera(tmp_path / "cam.json", io.CameraModel(K, T, "mm"))
    cam = io.load_camera(tmp_path / "cam.json")
    assert cam.intrinsics == K
    np.testing.assert_allclose(cam.T_cam_from_world, T)


@pytest.mark.parametrize(
    "content,exc,match",
    [
        ("{not json", InputError, "not valid JSON"),
        (json.dumps({"K": [1, 0, 0, 0, 1, 0, 0, 0, 1]}), InputError, "lacks width, height"),
        (json.dumps({"K": [0, 0, 5, 0, 0, 5, 0, 0, 1], "width": 10, "height": 10}), CameraError, "positive"),
        (json.dumps({"K": [1, 2, 3], "width": 10, "height": 10}), CameraError, "9 entries"),
        (
            json.dumps({"K": [1, 0, 0, 0, 1, 0, 0, 0, 1], "width": 10, "height": 10, "depth_unit": "inch"}),
            InputError,
            "depth_unit",
        ),
    ],
)
def test_bad_camera_json(tmp_path, content, exc, match):
    path = tmp_path / "cam.json"
    path.write_text(content)
    with pytest.raises(exc, match=match):
        io.load_camera(path)


def test_bad_images_name_the_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(InputError, match="broken.png"):
        io.load_rgb(tmp_path / "broken.png")
    with pytest.raises(InputError, match="not found"):
        io.load_mask(tmp_path / "missing.png")
    io.save_rgb(tmp_path / "rgb.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(InputError, match="16-bit"):
        io.load_depth(tmp_path / "rgb.png")
    np.save(tmp_path / "d.npy", np.zeros((4, 4), np.int32))
    with pytest.raises(InputError, match="float"):
        io.load_depth(tmp_path / "d.npy")


def test_check_frame_size_mismatch():
    K = CameraIntrinsics(50.0, 50.0, 15.5, 11.5, 32, 24)
    io.check_frame(np.zeros((24, 32, 3), np.uint8), K, np.ones((24, 32), np.float32))
    with pytest.raises(InputError, match="camera says"):
        io.check_frame(np.zeros((24, 31, 3), np.uint8), K)
    with pytest.raises(InputError, match="depth"):
        io.check_frame(np.zeros((24, 32, 3), np.uint8), K, np.ones((20, 32), np.float32))
