"""From a robot's camera view to the input Zero-1-to-3 was trained on.

Training inputs were renders of one object on white, cropped to the object and scaled so its longer side is 200 px on
a 256x256 canvas (the object fills ~78% of the frame). :func:`preprocess_for_zero123` does the same with an RGB image
and the object's mask, keeps the 2D similarity transform back to the original pixels, and, when the camera pose
relative to the support plane is known, computes the input view's polar angle (which the model cannot estimate and
users otherwise had to supply by hand).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from z123_ros.camera import (
    CameraIntrinsics,
    check_rigid,
    invert,
    polar_from_extrinsics,
    polar_over_plane,
    transform_points,
)
from z123_ros.errors import CameraError, InputError

logger = logging.getLogger(__name__)


@dataclass
class Zero123Input:
    """The model's input view and how it maps back to the original image."""

    #: (size, size, 3) uint8 RGB: the object centred on white.
    image: np.ndarray
    #: (size, size) bool: where the object is in ``image``.
    mask: np.ndarray
    #: Object bounding box in the original image, (x0, y0, x1, y1) pixel indices, inclusive.
    box_xyxy: tuple[int, int, int, int]
    #: 3x3 map from original pixel coordinates (u, v, 1) to ``image`` pixel coordinates (pixel centres).
    T_input_from_original: np.ndarray
    #: Absolute polar angle (deg) of the camera over the object (0 = from above, 90 = level); None when unknown.
    input_polar_deg: float | None = None
    #: Intrinsics of ``image`` seen as a (cropped, scaled) camera; None when the original intrinsics were not given.
    intrinsics: CameraIntrinsics | None = None

    @property
    def T_original_from_input(self) -> np.ndarray:
        return np.linalg.inv(self.T_input_from_original)

    def to_original(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates in ``image`` -> (N, 2) coordinates in the original image."""
        return _apply(self.T_original_from_input, uv)

    def to_input(self, uv: np.ndarray) -> np.ndarray:
        """(N, 2) pixel coordinates in the original image -> (N, 2) coordinates in ``image``."""
        return _apply(self.T_input_from_original, uv)


def _apply(T: np.ndarray, uv: np.ndarray) -> np.ndarray:
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    return uv @ T[:2, :2].T + T[:2, 2]


def _ray_plane_point(intrinsics: CameraIntrinsics, uv: np.ndarray, plane_cam: np.ndarray) -> np.ndarray | None:
    """Where the camera ray through pixel ``uv`` meets the plane ``n . p + d = 0`` (camera frame), or None."""
    ray = np.array([(uv[0] - intrinsics.cx) / intrinsics.fx, (uv[1] - intrinsics.cy) / intrinsics.fy, 1.0])
    n, d = plane_cam[:3], plane_cam[3]
    denom = float(n @ ray)
    if abs(denom) < 1e-9:
        return None
    s = -d / denom
    return ray * s if s > 0 else None


def input_polar_deg(
    mask: np.ndarray,
    intrinsics: CameraIntrinsics,
    *,
    depth_m: np.ndarray | None = None,
    plane_cam: np.ndarray | None = None,
    T_cam_from_world: np.ndarray | None = None,
) -> float | None:
    """Polar angle (deg) of the camera over the masked object, from the support plane or the extrinsics.

    The object point is the median of the masked depth points when ``depth_m`` is given, else where the ray through
    the mask's centroid meets the support plane (``plane_cam``; or the world plane z = 0 for ``T_cam_from_world``,
    the table frame's convention). Returns None when neither the plane nor the extrinsics are given.
    """
    mask = np.asarray(mask, dtype=bool)
    if plane_cam is None and T_cam_from_world is None:
        return None
    point_cam = None
    if depth_m is not None:
        points, _ = intrinsics.backproject(depth_m, mask)
        if len(points) > 0:
            point_cam = np.median(points, axis=0)
    if plane_cam is not None:
        plane = np.asarray(plane_cam, dtype=np.float64).reshape(4)
        if not np.all(np.isfinite(plane)) or np.linalg.norm(plane[:3]) < 1e-9:
            raise CameraError(f"support plane must be 4 finite numbers with a non-zero normal, got {plane}")
        if point_cam is None:
            v, u = np.nonzero(mask)
            point_cam = _ray_plane_point(intrinsics, np.array([u.mean(), v.mean()]), plane)
            if point_cam is None:
                raise CameraError("the object's viewing ray does not meet the support plane in front of the camera")
        return polar_over_plane(plane, point_cam)
    T = check_rigid(T_cam_from_world, "T_cam_from_world")
    if point_cam is None:
        T_world_from_cam = invert(T)
        v, u = np.nonzero(mask)
        # The world plane z = 0 expressed in the camera frame: n_cam = R^T-rotated +z, d from the camera centre.
        n_cam = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
        d_cam = -float(n_cam @ T[:3, 3])
        point_cam = _ray_plane_point(intrinsics, np.array([u.mean(), v.mean()]), np.append(n_cam, d_cam))
        if point_cam is None:
            raise CameraError("the object's viewing ray does not meet the world plane z = 0 in front of the camera")
        point_world = transform_points(T_world_from_cam, point_cam[None])[0]
    else:
        point_world = transform_points(invert(T), point_cam[None])[0]
    return polar_from_extrinsics(T, point_world)


def _check_inputs(
    rgb: np.ndarray, mask: np.ndarray, size: int, object_size: int, intrinsics: CameraIntrinsics | None
) -> tuple[np.ndarray, np.ndarray]:
    """(rgb, mask as bool) after the checks of preprocess_for_zero123; InputError / CameraError with one line."""
    rgb = np.asarray(rgb)
    mask = np.asarray(mask)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"rgb must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if mask.shape != rgb.shape[:2]:
        raise InputError(f"mask shape {mask.shape} does not match image {rgb.shape[:2]}")
    if not 0 < object_size <= size:
        raise InputError(f"object_size must be in (0, size={size}], got {object_size}")
    mask = mask.astype(bool)
    if not mask.any():
        raise InputError("mask is empty: no object to crop")
    if intrinsics is not None and (intrinsics.width, intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
        raise CameraError(
            f"intrinsics are for {intrinsics.width}x{intrinsics.height}, image is {rgb.shape[1]}x{rgb.shape[0]}"
        )
    return rgb, mask


def _input_intrinsics(intrinsics: CameraIntrinsics, T: np.ndarray, size: int) -> CameraIntrinsics:
    """The intrinsics of the ``size``-square input image, given the pixel map ``T`` original -> input."""
    return CameraIntrinsics(
        fx=intrinsics.fx * T[0, 0],
        fy=intrinsics.fy * T[1, 1],
        cx=T[0, 0] * intrinsics.cx + T[0, 2],
        cy=T[1, 1] * intrinsics.cy + T[1, 2],
        width=size,
        height=size,
    )


def preprocess_for_zero123(
    rgb: np.ndarray,
    mask: np.ndarray,
    *,
    size: int = 256,
    object_size: int = 200,
    intrinsics: CameraIntrinsics | None = None,
    depth_m: np.ndarray | None = None,
    plane_cam: np.ndarray | None = None,
    T_cam_from_world: np.ndarray | None = None,
) -> Zero123Input:
    """Crop the masked object, scale its longer side to ``object_size`` px and centre it on a white square.

    Args:
        rgb: (H, W, 3) uint8 RGB image.
        mask: (H, W) object mask (non-zero = object).
        size: side of the output canvas (256 for the published models).
        object_size: longer side of the object in the output (200 as in training).
        intrinsics: camera intrinsics of ``rgb``; needed for the input polar angle and for ``Zero123Input.intrinsics``.
        depth_m: optional metric depth, to locate the object in 3D for the polar angle.
        plane_cam: support plane ``n . p + d = 0`` in the camera frame (e.g. from segmentation).
        T_cam_from_world: camera extrinsics with world +z up and the support plane at z = 0 (used when no plane).

    Edges are antialiased: colour and mask are resized premultiplied, then composited over white.
    """
    rgb, mask = _check_inputs(rgb, mask, size, object_size, intrinsics)

    # 1. Crop to the mask's bounding box.
    v, u = np.nonzero(mask)
    x0, x1, y0, y1 = int(u.min()), int(u.max()), int(v.min()), int(v.max())
    crop_w, crop_h = x1 - x0 + 1, y1 - y0 + 1
    alpha = mask[y0 : y1 + 1, x0 : x1 + 1].astype(np.float32)
    colour = rgb[y0 : y1 + 1, x0 : x1 + 1].astype(np.float32) / 255.0

    # 2. Scale so the longer side is object_size (area filter when shrinking, cubic when enlarging).
    scale = object_size / max(crop_w, crop_h)
    new_w, new_h = max(1, round(crop_w * scale)), max(1, round(crop_h * scale))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_CUBIC
    premult = cv2.resize(colour * alpha[..., None], (new_w, new_h), interpolation=interp)
    alpha_small = np.clip(cv2.resize(alpha, (new_w, new_h), interpolation=interp), 0.0, 1.0)
    premult = np.clip(premult, 0.0, alpha_small[..., None])

    # 3. Composite over white, centred.
    ox, oy = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.ones((size, size, 3), dtype=np.float32)
    canvas[oy : oy + new_h, ox : ox + new_w] = premult + (1.0 - alpha_small[..., None])
    out_mask = np.zeros((size, size), dtype=bool)
    out_mask[oy : oy + new_h, ox : ox + new_w] = alpha_small >= 0.5
    image = (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

    # 4. The pixel-centre map original -> input: u' = sx * (u - x0 + 0.5) - 0.5 + ox (as CameraIntrinsics.scaled).
    sx, sy = new_w / crop_w, new_h / crop_h
    T = np.array(
        [[sx, 0.0, sx * (0.5 - x0) - 0.5 + ox], [0.0, sy, sy * (0.5 - y0) - 0.5 + oy], [0.0, 0.0, 1.0]],
    )

    # 5. The input polar angle and the intrinsics of the input image (when the camera is known).
    polar = None
    crop_intrinsics = None
    if intrinsics is not None:
        polar = input_polar_deg(
            mask, intrinsics, depth_m=depth_m, plane_cam=plane_cam, T_cam_from_world=T_cam_from_world
        )
        crop_intrinsics = _input_intrinsics(intrinsics, T, size)
    elif plane_cam is not None or T_cam_from_world is not None:
        raise CameraError("computing the input polar angle needs the camera intrinsics")
    return Zero123Input(
        image=image,
        mask=out_mask,
        box_xyxy=(x0, y0, x1, y1),
        T_input_from_original=T,
        input_polar_deg=polar,
        intrinsics=crop_intrinsics,
    )
