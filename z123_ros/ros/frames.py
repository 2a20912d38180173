"""Camera frames on their way into the node: per-message checks, the synchronised raw frame and its decoding.

Every check raises :class:`z123_ros.errors.FrameError` whose ``reason`` is the drop counter key in /diagnostics
(bad_colour_image, bad_depth_image, bad_camera_info, image_too_large, size_mismatch, invalid_depth); the node
counts the drop, warns (throttled) and keeps running.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import FrameError, InputError
from z123_ros.ros import conversions as conv


@dataclass
class RawFrame:
    """A synchronised, not yet decoded camera frame."""

    header: Header
    """Header of the colour image: every output computed from this frame carries it."""
    colour: Image
    """The colour image message."""
    depth: Image | None
    """The registered depth image message; None for an RGB-only node."""
    info: CameraInfo
    """CameraInfo of the colour camera."""
    received: float
    """time.monotonic() when the colour image arrived: the start of every latency."""


@dataclass
class DecodedFrame:
    """A validated frame as arrays."""

    header: Header
    """Header of the colour image."""
    rgb: np.ndarray
    """(H, W, 3) uint8 colour image."""
    depth_m: np.ndarray | None
    """(H, W) float32 depth in metres, NaN where invalid; None without depth."""
    intrinsics: CameraIntrinsics
    """Pinhole intrinsics from the CameraInfo."""
    received: float
    """time.monotonic() when the colour image arrived."""


def check_message(stream: str, msg: Any) -> None:
    """Cheap checks of one incoming message (executor thread), before it waits for its partners in the sync."""
    try:
        if stream == "colour":
            conv.check_image(msg, conv.COLOUR_ENCODINGS, "colour")
        elif stream == "depth":
            conv.check_image(msg, conv.DEPTH_ENCODINGS, "depth")
        else:
            conv.camera_info_to_intrinsics(msg)
    except InputError as exc:
        raise FrameError(str(exc), _STREAM_REASONS[stream]) from exc


_STREAM_REASONS = {"colour": "bad_colour_image", "depth": "bad_depth_image", "info": "bad_camera_info"}


def decode_frame(frame: RawFrame, max_image_pixels: int, min_valid_depth_fraction: float) -> DecodedFrame:
    """Decode and validate a synchronised frame; raise FrameError naming the first check it fails."""
    try:
        intrinsics = conv.camera_info_to_intrinsics(frame.info)
    except InputError as exc:
        raise FrameError(str(exc), "bad_camera_info") from exc
    colour = frame.colour
    if colour.width * colour.height > max_image_pixels:
        raise FrameError(f"{colour.width}x{colour.height} > max_image_pixels {max_image_pixels}", "image_too_large")
    if (colour.width, colour.height) != (intrinsics.width, intrinsics.height):
        raise FrameError(
            f"colour {colour.width}x{colour.height} vs camera info {intrinsics.width}x{intrinsics.height}",
            "size_mismatch",
        )
    try:
        rgb = conv.image_to_rgb(colour)
    except InputError as exc:
        raise FrameError(str(exc), "bad_colour_image") from exc
    depth_m = None if frame.depth is None else _decode_depth(frame.depth, colour, min_valid_depth_fraction)
    return DecodedFrame(header=frame.header, rgb=rgb, depth_m=depth_m, intrinsics=intrinsics, received=frame.received)


def _decode_depth(depth: Image, colour: Image, min_valid_fraction: float) -> np.ndarray:
    if (depth.width, depth.height) != (colour.width, colour.height):
        raise FrameError(
            f"depth {depth.width}x{depth.height} vs colour {colour.width}x{colour.height} "
            "(is depth registered to colour?)",
            "size_mismatch",
        )
    try:
        depth_m = conv.depth_to_metres(depth)
    except InputError as exc:
        raise FrameError(str(exc), "bad_depth_image") from exc
    valid = float(np.isfinite(depth_m).mean())
    if valid < min_valid_fraction:
        raise FrameError(
            f"only {100 * valid:.1f}% of depth pixels are valid (NaN, inf or 0 elsewhere); "
            f"min_valid_depth_fraction is {min_valid_fraction}",
            "invalid_depth",
        )
    return depth_m
