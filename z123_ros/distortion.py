"""Lens distortion: undistort a camera's colour image and its registered depth, so that everything downstream can
use the pinhole model of ``CameraIntrinsics``.

Many robot drivers publish ``image_raw`` with the calibration's distortion coefficients in ``CameraInfo.d`` (Kinect
v1 / Xtion colour cameras, most USB cameras, fisheye wrist cameras) instead of a rectified ``image_rect``. Treating
such an image as pinhole bends every back-projected point by the lens's radial error: a few pixels at the image edge
of a consumer RGB-D camera, which is several millimetres at 1 m and tilts the support plane. The undistorted image
keeps the same K (pixels whose ray leaves the original image become black / NaN), so intrinsics, masks and outputs
keep their meaning.

Depth is resampled with nearest neighbour: interpolating across an object's silhouette would invent flying pixels
between the object and the table. Registered depth is assumed to lie in the colour camera's distorted image plane
(what OpenNI / RealSense "registered" or "aligned" depth is), so both images get the same map.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import CameraError

#: CameraInfo distortion models (sensor_msgs/distortion_models) and how many coefficients OpenCV takes for each.
PINHOLE_MODELS = {"plumb_bob": 5, "rational_polynomial": 8}
FISHEYE_MODELS = {"equidistant": 4}
#: Coefficients below this are calibration noise of a rectified camera (drivers publish 1e-12-ish zeros).
_ZERO = 1e-9


@dataclass(frozen=True)
class Distortion:
    """A camera's lens distortion as published in ``CameraInfo`` (``distortion_model``, ``d``)."""

    model: str
    """sensor_msgs distortion model name: plumb_bob, rational_polynomial or equidistant ("" when none is given)."""
    coeffs: tuple[float, ...]
    """The coefficients in the model's order (plumb_bob: k1 k2 p1 p2 k3; equidistant: k1 k2 k3 k4)."""

    @property
    def is_zero(self) -> bool:
        """True when applying it would change nothing (no coefficients, or all of them zero)."""
        return all(abs(c) <= _ZERO for c in self.coeffs)  # NaN is not zero: check() refuses it

    def check(self) -> None:
        """Raise CameraError unless this distortion can be undistorted here."""
        if self.is_zero:
            return
        if not all(np.isfinite(self.coeffs)):
            raise CameraError(f"distortion coefficients must be finite, got {list(self.coeffs)}")
        expected = {**PINHOLE_MODELS, **FISHEYE_MODELS}.get(self.model)
        if expected is None:
            raise CameraError(
                f"distortion model {self.model!r} with non-zero coefficients is not supported "
                f"(supported: {', '.join(sorted({**PINHOLE_MODELS, **FISHEYE_MODELS}))}); publish rectified images "
                "(image_proc's image_rect) instead"
            )
        if len(self.coeffs) < expected:
            raise CameraError(f"{self.model} needs {expected} distortion coefficients, got {len(self.coeffs)}")


def undistort_rgbd(
    rgb: np.ndarray, depth_m: np.ndarray | None, intrinsics: CameraIntrinsics, distortion: Distortion
) -> tuple[np.ndarray, np.ndarray | None]:
    """Undistorted (rgb, depth_m) seen by the pinhole camera ``intrinsics``; the inputs themselves when
    ``distortion`` is zero. Colour: bilinear, black outside the lens's image; depth: nearest, NaN outside.

    rgb: (H, W, 3) uint8; depth_m: (H, W) float32 metres (NaN invalid) or None. Raises CameraError for a model that
    cannot be undistorted (see ``Distortion.check``)."""
    distortion.check()
    if distortion.is_zero:
        return rgb, depth_m
    map_x, map_y = _maps(
        tuple(intrinsics.K.ravel()), intrinsics.width, intrinsics.height, distortion.model, distortion.coeffs
    )
    rgb_out = cv2.remap(rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    depth_out = None
    if depth_m is not None:
        depth_out = cv2.remap(
            depth_m.astype(np.float32, copy=False),
            map_x,
            map_y,
            cv2.INTER_NEAREST,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=float("nan"),
        )
    return rgb_out, depth_out


@functools.lru_cache(maxsize=4)
def _maps(
    K_flat: tuple[float, ...], width: int, height: int, model: str, coeffs: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(map_x, map_y) float32 maps: undistorted pixel -> where it lies in the distorted image. Built once per
    camera (about 10 ms for VGA), then each frame is one remap."""
    K = np.asarray(K_flat, dtype=np.float64).reshape(3, 3)
    size = (width, height)
    if model in FISHEYE_MODELS:
        D = np.asarray(coeffs[: FISHEYE_MODELS[model]], dtype=np.float64).reshape(4, 1)
        return cv2.fisheye.initUndistortRectifyMap(K, D, np.eye(3), K, size, cv2.CV_32FC1)
    D = np.asarray(coeffs, dtype=np.float64)
    return cv2.initUndistortRectifyMap(K, D, np.eye(3), K, size, cv2.CV_32FC1)
