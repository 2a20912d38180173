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
from scipy import ndimage
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from z123_ros.camera import CameraIntrinsics
from z123_ros.distortion import undistort_rgbd
from z123_ros.errors import FrameError, InputError
from z123_ros.ros import conversions as conv


@dataclass
class RawFrame:
    """A synchronised, not yet decoded camera frame."""

    header: Header
    """Header of the colour image: every output computed from this frame carries it."""
    colour: Image | CompressedImage
    """The colour image message (CompressedImage with colour_transport: compressed)."""
    depth: Image | CompressedImage | None
    """The registered depth image message; None for an RGB-only node."""
    info: CameraInfo
    """CameraInfo of the colour camera."""
    received: float
    """time.monotonic() when the colour image arrived: the start of every latency."""
    synced: float = 0.0
    """time.monotonic() when its last message arrived and the sync completed the frame."""
    taken: float = 0.0
    """time.monotonic() when the worker took it from the inbox."""
    stamp_age: float = 0.0
    """Seconds from the colour image's stamp to its arrival, on this node's ROS clock: camera driver, DDS,
    deserialisation and executor (meaningful only when the camera's clock is this node's)."""


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
    T_target_from_cam: np.ndarray | None = None
    """4x4 pose of the camera in the node's target_frame at the image stamp (from /tf); None = outputs stay in the
    camera frame."""


def check_message(stream: str, msg: Any) -> None:
    """Cheap checks of one incoming message (executor thread), before it waits for its partners in the sync."""
    try:
        if isinstance(msg, CompressedImage):
            conv.check_compressed(msg, stream)
        elif stream == "colour":
            conv.check_image(msg, conv.COLOUR_ENCODINGS, "colour")
        elif stream == "depth":
            conv.check_image(msg, conv.DEPTH_ENCODINGS, "depth")
        else:
            conv.camera_info_to_intrinsics(msg)
            conv.camera_info_distortion(msg)
    except InputError as exc:
        raise FrameError(str(exc), _STREAM_REASONS[stream]) from exc


_STREAM_REASONS = {"colour": "bad_colour_image", "depth": "bad_depth_image", "info": "bad_camera_info"}


def decode_frame(frame: RawFrame, max_image_pixels: int, min_valid_depth_fraction: float) -> DecodedFrame:
    """Decode and validate a synchronised frame; raise FrameError naming the first check it fails."""
    try:
        intrinsics = conv.camera_info_to_intrinsics(frame.info)
        distortion = conv.camera_info_distortion(frame.info)
    except InputError as exc:
        raise FrameError(str(exc), "bad_camera_info") from exc
    colour = frame.colour
    if isinstance(colour, CompressedImage):
        # The size of a compressed image is known only once decoded (the decoder bounds it by MAX_IMAGE_SIDE).
        rgb = _decode(conv.compressed_to_rgb, colour, "bad_colour_image")
        size = (rgb.shape[1], rgb.shape[0])
        _check_size(size, intrinsics, max_image_pixels)
    else:
        size = (colour.width, colour.height)
        _check_size(size, intrinsics, max_image_pixels)
        rgb = _decode(conv.image_to_rgb, colour, "bad_colour_image")
    depth_m = None if frame.depth is None else _decode_depth(frame.depth, size, min_valid_depth_fraction)
    # A driver's image_raw with its calibration's distortion: undone here, so everything downstream is pinhole.
    rgb, depth_m = undistort_rgbd(rgb, depth_m, intrinsics, distortion)
    marks = {
        "stamped": frame.received - frame.stamp_age,
        "received": frame.received,
        "synced": frame.synced,
        "taken": frame.taken,
        "decoded": time.monotonic(),
    }
    return DecodedFrame(frame.header, rgb, depth_m, intrinsics, frame.received, marks)


def _decode(fn: Any, msg: Any, reason: str) -> np.ndarray:
    try:
        return fn(msg)
    except InputError as exc:
        raise FrameError(str(exc), reason) from exc


def _check_size(size: tuple[int, int], intrinsics: CameraIntrinsics, max_image_pixels: int) -> None:
    width, height = size
    if width * height > max_image_pixels:
        raise FrameError(f"{width}x{height} > max_image_pixels {max_image_pixels}", "image_too_large")
    if (width, height) != (intrinsics.width, intrinsics.height):
        raise FrameError(
            f"colour {width}x{height} vs camera info {intrinsics.width}x{intrinsics.height}", "size_mismatch"
        )


def _decode_depth(depth: Image | CompressedImage, size: tuple[int, int], min_valid_fraction: float) -> np.ndarray:
    compressed = isinstance(depth, CompressedImage)
    decode = conv.compressed_depth_to_metres if compressed else conv.depth_to_metres
    if not compressed:
        _check_depth_size((depth.width, depth.height), size)
    depth_m = _decode(decode, depth, "bad_depth_image")
    if compressed:
        _check_depth_size((depth_m.shape[1], depth_m.shape[0]), size)
    valid = float(np.isfinite(depth_m).mean())
    if valid < min_valid_fraction:
        raise FrameError(
            f"only {100 * valid:.1f}% of depth pixels are valid (NaN, inf or 0 elsewhere); "
            f"min_valid_depth_fraction is {min_valid_fraction}",
            "invalid_depth",
        )
    return depth_m


def _check_depth_size(depth_size: tuple[int, int], colour_size: tuple[int, int]) -> None:
    if depth_size != colour_size:
        raise FrameError(
            f"depth {depth_size[0]}x{depth_size[1]} vs colour {colour_size[0]}x{colour_size[1]} "
            "(is depth registered to colour?)",
            "size_mismatch",
        )


#: Pixel stride of the change check: 1/16 of the pixels is plenty to see an object-sized change and costs < 1 ms.
_CHANGE_STRIDE = 4
#: A depth pixel changed when it moved by more than this (metres) or ...
_CHANGE_DEPTH_M = 0.015
#: ... this fraction of its depth, whichever is larger: about 5 standard deviations of structured-light / stereo
#: depth noise at 1 m, so sensor noise alone does not count as a change.
_CHANGE_DEPTH_REL = 0.03
#: A grey level changed by more than this (0..255), for colour-only frames.
_CHANGE_GREY = 30
#: Changed samples count only inside a 2 x 2 patch of changed samples (see frame_changed).
_CHANGE_PATCH = np.ones((2, 2), dtype=bool)


def frame_changed(previous: DecodedFrame, frame: DecodedFrame, min_changed_px: int) -> bool:
    """Whether ``frame`` may show something ``previous`` did not: at least ``min_changed_px`` pixels (counted at
    full resolution) whose depth (valid in both; the colour's grey level without depth) changed beyond noise, in
    patches at least two samples (8 px) wide. Cheap enough to run on every frame, so that the rate limit holds back
    only frames that bring nothing new.

    Only patches count: a real depth sensor's flying pixels, edge jitter and speckle change a few hundred scattered
    pixels or one-pixel lines in every frame of a static scene (the project's sensor models: 100-600 px per frame),
    which made every frame "changed" and defeated the rate limit; an object, even the smallest one the segmenter
    keeps, changes a solid patch. Thinner changes are still seen at the next rate-limited frame."""
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
    moved = ndimage.binary_opening(moved, structure=_CHANGE_PATCH)
    return int(np.count_nonzero(moved)) * s * s >= min_changed_px
