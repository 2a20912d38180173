"""Compressed image transport: CompressedImage colour (jpeg/png) and compressedDepth (16UC1/32FC1 png) decoding."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import CompressedImage  # noqa: E402

from z123_ros.errors import InputError  # noqa: E402
from z123_ros.ros import conversions as conv  # noqa: E402

pytestmark = pytest.mark.ros


def _colour(h: int = 48, w: int = 64) -> np.ndarray:
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[..., 0] = np.linspace(0, 255, w)[None, :]
    rgb[..., 1] = np.linspace(255, 0, h)[:, None]
    rgb[..., 2] = 90
    rgb[10:30, 20:40] = (200, 30, 60)  # an object-like patch with a distinct colour
    return rgb


def _depth(h: int = 48, w: int = 64) -> np.ndarray:
    depth = np.linspace(0.4, 1.2, h * w, dtype=np.float32).reshape(h, w)
    depth[0, :5] = np.nan  # no reading
    return depth


def test_png_colour_round_trip_is_exact_and_channel_order_is_rgb() -> None:
    rgb = _colour()
    msg = conv.rgb_to_compressed(rgb, "png")
    assert msg.format == "rgb8; png compressed bgr8"
    np.testing.assert_array_equal(conv.compressed_to_rgb(msg), rgb)
    # The payload is a plain PNG of BGR pixels, as compressed_image_transport writes it.
    bgr = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(bgr[..., ::-1], rgb)


def test_jpeg_colour_is_close() -> None:
    rgb = _colour()
    out = conv.compressed_to_rgb(conv.rgb_to_compressed(rgb, "jpeg", jpeg_quality=95))
    assert out.shape == rgb.shape and out.dtype == np.uint8
    err = np.abs(out.astype(int) - rgb.astype(int))
    assert err.mean() < 4.0 and np.abs(out[15:25, 25:35].astype(int) - (200, 30, 60)).max() < 20


def test_legacy_and_rgb_formats() -> None:
    rgb = _colour()
    _, png_bgr = cv2.imencode(".png", rgb[..., ::-1])
    np.testing.assert_array_equal(conv.compressed_to_rgb(CompressedImage(format="png", data=png_bgr.tobytes())), rgb)
    _, png_rgb = cv2.imencode(".png", rgb)  # written in RGB order: the format says so
    msg = CompressedImage(format="rgb8; png compressed rgb8", data=png_rgb.tobytes())
    np.testing.assert_array_equal(conv.compressed_to_rgb(msg), rgb)
    _, mono = cv2.imencode(".png", rgb[..., 0])
    out = conv.compressed_to_rgb(CompressedImage(format="mono8; png compressed mono8", data=mono.tobytes()))
    np.testing.assert_array_equal(out, np.repeat(rgb[..., :1], 3, axis=2))


def test_compressed_depth_16uc1_has_the_plugin_layout_and_round_trips_to_the_millimetre() -> None:
    depth = _depth()
    msg = conv.depth_to_compressed_depth(depth)
    data = bytes(msg.data)
    assert msg.format == "16UC1; compressedDepth png"
    assert struct.unpack("<iff", data[:12]) == (0, 0.0, 0.0) and data[12:20] == b"\x89PNG\r\n\x1a\n"
    out = conv.compressed_depth_to_metres(msg)
    valid = np.isfinite(depth)
    assert np.array_equal(np.isfinite(out), valid)
    assert np.abs(out[valid] - depth[valid]).max() <= 0.0005 + 1e-6


def test_compressed_depth_32fc1_inverse_depth() -> None:
    """32FC1 inputs are quantised inverse depth with the plugin's parameters (depth_max 10 m, quantisation 100)."""
    depth = _depth()
    quant_a = 100.0 * (100.0 + 1.0)
    quant_b = 1.0 - quant_a / 10.0
    inv = np.where(np.isfinite(depth), quant_a / np.nan_to_num(depth, nan=1.0) + quant_b, 0).astype(np.uint16)
    _, png = cv2.imencode(".png", inv)
    msg = CompressedImage(
        format="32FC1; compressedDepth png", data=struct.pack("<iff", 0, quant_a, quant_b) + png.tobytes()
    )
    out = conv.compressed_depth_to_metres(msg)
    valid = np.isfinite(depth)
    assert np.array_equal(np.isfinite(out), valid)
    # Inverse-depth quantisation: relative error grows with depth; below 1 mm per metre at these ranges.
    assert (np.abs(out[valid] - depth[valid]) / depth[valid]).max() < 1e-3


@pytest.mark.parametrize(
    ("fmt", "data", "match"),
    [
        ("rgb8; jpeg compressed bgr8", b"", "0 bytes"),
        ("rgb8; jpeg compressed bgr8", b"not an image at all", "not a decodable"),
        ("rgb8; tiff compressed bgr8", b"II*\x00", "neither jpeg nor png"),
        ("16UC1; compressedDepth png", b"x" * 12, "compressedDepth"),
    ],
)
def test_bad_colour_payloads_raise_input_error(fmt: str, data: bytes, match: str) -> None:
    with pytest.raises(InputError, match=match):
        conv.compressed_to_rgb(CompressedImage(format=fmt, data=data))


def test_bad_depth_payloads_raise_input_error() -> None:
    good = conv.depth_to_compressed_depth(_depth())
    header, png = bytes(good.data)[:12], bytes(good.data)[12:]
    cases = [
        (CompressedImage(format="16UC1; compressedDepth png", data=header), "no room"),
        (CompressedImage(format="16UC1; compressedDepth png", data=header + png[: len(png) // 3]), "decod"),
        (CompressedImage(format="16UC1; compressedDepth rvl", data=bytes(good.data)), "not supported"),
        (CompressedImage(format="rgb8; compressedDepth png", data=bytes(good.data)), "encoding 'rgb8'"),
        (
            CompressedImage(format="32FC1; compressedDepth png", data=struct.pack("<iff", 0, 0.0, 0.0) + png),
            "quantisation",
        ),
    ]
    _, png8 = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    cases.append((CompressedImage(format="16UC1; compressedDepth png", data=header + png8.tobytes()), "16-bit"))
    for msg, match in cases:
        with pytest.raises(InputError, match=match):
            conv.compressed_depth_to_metres(msg)


def test_compressed_input_gives_the_raw_segmentation() -> None:
    """Segmentation of a rendered scene from decoded png/compressedDepth equals raw; from jpeg (quality 90) every
    object is still found with mask IoU >= 0.9 against the raw masks (stated tolerance of lossy colour)."""
    pytest.importorskip("pybullet")
    from z123_ros.segmentation import SegmentationConfig, TabletopSegmenter
    from z123_ros.sim import SceneConfig, render_tabletop_scene

    scene = render_tabletop_scene(SceneConfig(width=160, height=120, seed=3, compute_visible_fraction=False))
    segmenter = TabletopSegmenter(SegmentationConfig())
    depth_raw = conv.depth_to_metres(
        conv.numpy_to_image(
            np.where(np.isfinite(scene.depth_m), np.round(scene.depth_m * 1000), 0).astype(np.uint16), "16UC1"
        )
    )
    raw = segmenter.segment(scene.rgb, scene.intrinsics, depth_m=depth_raw)
    depth_c = conv.compressed_depth_to_metres(conv.depth_to_compressed_depth(scene.depth_m))
    np.testing.assert_array_equal(depth_c, depth_raw)
    png = segmenter.segment(
        conv.compressed_to_rgb(conv.rgb_to_compressed(scene.rgb, "png")), scene.intrinsics, depth_m=depth_c
    )
    assert len(raw.objects) >= 2 and len(png.objects) == len(raw.objects)
    for a, b in zip(raw.objects, png.objects, strict=True):
        np.testing.assert_array_equal(a.mask, b.mask)
    jpeg_rgb = conv.compressed_to_rgb(conv.rgb_to_compressed(scene.rgb, "jpeg", jpeg_quality=90))
    jpeg = segmenter.segment(jpeg_rgb, scene.intrinsics, depth_m=depth_c)
    assert len(jpeg.objects) == len(raw.objects)
    for a in raw.objects:
        best = max((a.mask & b.mask).sum() / (a.mask | b.mask).sum() for b in jpeg.objects)
        assert best >= 0.9, best


def _raw_frame(colour, depth, info):
    from std_msgs.msg import Header

    from z123_ros.ros.frames import RawFrame

    return RawFrame(header=Header(frame_id="cam"), colour=colour, depth=depth, info=info, received=0.0)


def test_node_decodes_compressed_frames_like_raw_ones() -> None:
    """The node's frame decoding (z123_ros.ros.frames) on compressed colour + compressedDepth: png gives the raw
    arrays exactly; bad payloads are dropped with the colour / depth reason."""
    from z123_ros.camera import CameraIntrinsics
    from z123_ros.errors import FrameError
    from z123_ros.ros.config import NodeConfig
    from z123_ros.ros.frames import check_message, decode_frame
    from z123_ros.ros.node import Z123Node

    rgb, depth = _colour(), _depth()
    info = conv.intrinsics_to_camera_info(CameraIntrinsics.from_fov(60.0, rgb.shape[1], rgb.shape[0]))
    mm = np.where(np.isfinite(depth), np.round(depth * 1000), 0).astype(np.uint16)
    raw = decode_frame(_raw_frame(conv.numpy_to_image(rgb, "rgb8"), conv.numpy_to_image(mm, "16UC1"), info), 10**8, 0.1)
    colour_c, depth_c = conv.rgb_to_compressed(rgb, "png"), conv.depth_to_compressed_depth(depth)
    check_message("colour", colour_c)
    check_message("depth", depth_c)
    decoded = decode_frame(_raw_frame(colour_c, depth_c, info), 10**8, 0.1)
    np.testing.assert_array_equal(decoded.rgb, raw.rgb)
    np.testing.assert_array_equal(decoded.depth_m, raw.depth_m)
    bad = CompressedImage(format="rgb8; jpeg compressed bgr8", data=b"\xff\xd8 truncated")
    with pytest.raises(FrameError) as err:
        decode_frame(_raw_frame(bad, depth_c, info), 10**8, 0.1)
    assert err.value.reason == "bad_colour_image"
    with pytest.raises(FrameError) as err:
        check_message("depth", CompressedImage(format="16UC1; png", data=b"x"))
    assert err.value.reason == "bad_depth_image"
    small = conv.depth_to_compressed_depth(depth[:24, :32])
    with pytest.raises(FrameError) as err:
        decode_frame(_raw_frame(colour_c, small, info), 10**8, 0.1)
    assert err.value.reason == "size_mismatch"
    # Topics: image_transport's names under the configured base topics.
    streams = Z123Node._input_streams(NodeConfig(colour_transport="compressed", depth_transport="compressed"))
    topics = {stream: (kind.__name__, topic) for stream, kind, topic in streams}
    assert topics["colour"] == ("CompressedImage", "camera/color/image_raw/compressed")
    assert topics["depth"] == ("CompressedImage", "camera/aligned_depth_to_color/image_raw/compressedDepth")
    assert topics["info"] == ("CameraInfo", "camera/color/camera_info")
