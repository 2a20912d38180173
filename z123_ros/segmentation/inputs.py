"""Validation of the segmenters' inputs: one clear InputError per malformed image, depth or roi."""

from __future__ import annotations

import numpy as np

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import InputError
from z123_ros.io import check_frame


def check_roi(roi: tuple | list | np.ndarray | None, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Validate an roi ``(x0, y0, x1, y1)`` (pixels, x1/y1 exclusive) and clip it to the image."""
    if roi is None:
        return None
    arr = np.asarray(roi, dtype=np.float64).ravel()
    if arr.size != 4 or not np.all(np.isfinite(arr)):
        raise InputError(f"roi must be 4 finite numbers (x0, y0, x1, y1), got {roi!r}")
    x0, y0 = int(max(0, np.floor(arr[0]))), int(max(0, np.floor(arr[1])))
    x1, y1 = int(min(width, np.ceil(arr[2]))), int(min(height, np.ceil(arr[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise InputError(f"roi {tuple(arr.tolist())} is empty or outside the {width}x{height} image")
    return x0, y0, x1, y1


def check_depth(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    if not isinstance(depth_m, np.ndarray):
        raise InputError(f"depth must be a numpy array, got {type(depth_m).__name__}")
    if not np.issubdtype(depth_m.dtype, np.floating):
        raise InputError(
            f"depth must be float metres, got {depth_m.dtype} (convert raw 16-bit millimetres with "
            "z123_ros.io.load_depth or depth.astype(np.float32) / 1000)"
        )
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        raise InputError(
            f"depth is {depth_m.shape[1] if depth_m.ndim > 1 else '?'}x{depth_m.shape[0]} but the camera says "
            f"{intrinsics.width}x{intrinsics.height}"
        )
    depth = depth_m.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    if not np.isfinite(depth).any():
        raise InputError("depth has no valid pixel (all NaN, zero or negative): is the depth stream running?")
    return depth


def check_rgb(rgb: np.ndarray, intrinsics: CameraIntrinsics) -> None:
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"RGB must be a numpy array, got {type(rgb).__name__}")
    check_frame(rgb, intrinsics)
