"""Camera frames on their way into the node: per-message checks, the synchronised raw frame and its decoding.

Every check raises :class:`z123_ros.errors.FrameError` whose ``reason`` is the drop counter key in /diagnostics
(bad_colour_image, bad_depth_image, bad_camera_info, image_too_large, size_mismatch, invalid_depth); the node
counts the drop, warns (throttled) and keeps running.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
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
    synced: float = 0.0
    """time.monotonic() when its last message arrived and the sync completed the frame."""
    taken: float = 0.0
    """time.monotonic() when the worker took it from the inbox."""


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
    marks: dict[str, float] = field(default_factory=dict)
    """Pipeline event -> time.monotonic() (received, synced, taken, decoded, then the pipeline's own): the
    per-stage latency breakdown of every result computed from this frame."""


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
    marks = {"received": frame.received, "synced": frame.synced, "taken": frame.taken, "decoded": time.monotonic()}
    return DecodedFrame(frame.header, rgb, depth_m, intrinsics, frame.received, marks)


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


#: Pixel stride of the change check: 1/16 of the pixels is plenty to see an object-sized change and costs < 1 ms.
_CHANGE_STRIDE = 4
#: A depth pixel changed when it moved by more than this (metres) or ...
_CHANGE_DEPTH_M = 0.015
#: ... this fraction of its depth, whichever is larger: about 5 standard deviations of structured-light / stereo
#: depth noise at 1 m, so sensor noise alone does not count as a change.
_CHANGE_DEPTH_REL = 0.03
#: A grey level changed by more than this (0..255), for colour-only frames.
_CHANGE_GREY = 30


def frame_changed(previous: DecodedFrame, frame: DecodedFrame, min_changed_px: int) -> bool:
    """Whether ``frame`` may show something ``previous`` did not: at least ``min_changed_px`` pixels (counted at
    full resolution) whose depth (valid in both; the colour's grey level without depth) changed beyond noise.
    Cheap enough to run on every frame, so that the rate limit holds back only frames that bring nothing new."""
    if previous.rgb.shape != frame.rgb.shape:
        return True
    s = _CHANGE_STRIDE
    if frame.depth_m is not None and previous.depth_m is not None:
        a, b = previous.depth_m[::s, ::s], frame.depth_m[::s, ::s]
        with np.errstate(invalid="ignore"):
            moved = np.abs(a - b) > np.maximum(_CHANGE_DEPTH_M, _CHANGE_DEPTH_REL * np.fmin(a, b))
    else:
        a = previous.rgb[::s, ::s].astype(np.int16).sum(axis=2) // 3
        b = frame.rgb[::s, ::s].astype(np.int16).sum(axis=2) // 3
        moved = np.abs(a - b) > _CHANGE_GREY
    return int(np.count_nonzero(moved)) * s * s >= min_changed_px
