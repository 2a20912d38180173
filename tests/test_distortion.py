"""Lens distortion (z123_ros/distortion.py): a distorted image is brought back to the pinhole image the rest of the
project assumes; depth is never blended across an edge; rectified cameras are untouched; unsupported models are
refused with one line."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from z123_ros.camera import CameraIntrinsics
from z123_ros.distortion import Distortion, undistort_rgbd
from z123_ros.errors import CameraError

CAM = CameraIntrinsics(525.0, 525.0, 319.5, 239.5, 640, 480)
#: A consumer RGB-D colour camera's calibration (Kinect v1 magnitude: about 6 px of radial error in the corners).
PLUMB_BOB = Distortion("plumb_bob", (0.25, -0.75, 0.001, -0.002, 0.8))
FISHEYE = Distortion("equidistant", (-0.02, 0.01, -0.004, 0.001))


def _pattern(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """A smooth colour pattern over pinhole pixel coordinates (values 0..255)."""
    x, y = (u - CAM.cx) / CAM.fx, (v - CAM.cy) / CAM.fy
    r = 127.5 + 120 * np.sin(14 * x) * np.cos(11 * y)
    g = 127.5 + 120 * np.cos(9 * x + 5 * y)
    return np.stack([r, g, np.full_like(r, 60.0)], axis=-1)


def _distorted_view(distortion: Distortion) -> tuple[np.ndarray, np.ndarray]:
    """What the lens records: at each distorted pixel, the pattern at the pinhole pixel of the same ray; and where
    that ray falls in the pinhole image (for the test's reference)."""
    v, u = np.mgrid[0 : CAM.height, 0 : CAM.width].astype(np.float64)
    pts = np.stack([u.ravel(), v.ravel()], axis=-1)[:, None, :]
    D = np.asarray(distortion.coeffs)
    if distortion.model == "equidistant":
        ideal = cv2.fisheye.undistortPoints(pts, CAM.K, D.reshape(4, 1), P=CAM.K)
    else:
        ideal = cv2.undistortPoints(pts, CAM.K, D, P=CAM.K)
    ideal = ideal.reshape(CAM.height, CAM.width, 2)
    return _pattern(ideal[..., 0], ideal[..., 1]).round().astype(np.uint8), ideal


@pytest.mark.parametrize("distortion", [PLUMB_BOB, FISHEYE], ids=["plumb_bob", "equidistant"])
def test_undistorting_recovers_the_pinhole_image(distortion: Distortion) -> None:
    distorted, _ = _distorted_view(distortion)
    v, u = np.mgrid[0 : CAM.height, 0 : CAM.width].astype(np.float64)
    truth = _pattern(u, v)
    rgb, _ = undistort_rgbd(distorted, None, CAM, distortion)
    inner = (slice(40, -40), slice(40, -40))  # the lens's image covers the pinhole image there
    err_after = np.abs(rgb[inner].astype(float) - truth[inner]).mean()
    err_before = np.abs(distorted[inner].astype(float) - truth[inner]).mean()
    assert err_after < 3.0, err_after  # bilinear resampling of a smooth pattern: a grey level or two
    assert err_before > 5 * err_after, (err_before, err_after)


def test_depth_is_resampled_without_inventing_values_across_edges() -> None:
    depth = np.full((CAM.height, CAM.width), 1.2, np.float32)
    depth[150:330, 200:440] = 0.7  # a box in front of the wall: any blending would create 0.7..1.2 values
    depth[0:10] = np.nan
    rgb = np.zeros((CAM.height, CAM.width, 3), np.uint8)
    _, out = undistort_rgbd(rgb, depth, CAM, PLUMB_BOB)
    values = set(np.unique(out[np.isfinite(out)]).tolist())
    assert values <= {np.float32(0.7).item(), np.float32(1.2).item()}
    assert np.isnan(out).any()  # the invalid rows stay invalid (and the lens's missing corners are NaN)
    # The box moved: the lens's barrel pulled its corner pixels inwards; undistortion pushes them back out.
    assert not np.array_equal(np.isclose(out, 0.7), np.isclose(depth, 0.7))


def test_a_rectified_camera_is_left_untouched() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (CAM.height, CAM.width, 3), dtype=np.uint8)
    depth = np.full((CAM.height, CAM.width), 0.9, np.float32)
    for zero in (Distortion("plumb_bob", (0.0,) * 5), Distortion("", ()), Distortion("unknown_model", (0.0,) * 3)):
        out_rgb, out_depth = undistort_rgbd(rgb, depth, CAM, zero)
        assert out_rgb is rgb and out_depth is depth


@pytest.mark.parametrize(
    "bad, words",
    [
        (Distortion("kannala_brandt_x", (0.1, 0.0, 0.0, 0.0)), "not supported"),
        (Distortion("plumb_bob", (0.1, 0.2)), "needs 5"),
        (Distortion("plumb_bob", (float("nan"), 0.0, 0.0, 0.0, 0.0)), "finite"),
    ],
)
def test_unsupported_distortion_is_one_clear_error(bad: Distortion, words: str) -> None:
    with pytest.raises(CameraError, match=words):
        undistort_rgbd(np.zeros((CAM.height, CAM.width, 3), np.uint8), None, CAM, bad)
