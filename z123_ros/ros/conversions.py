"""ROS message <-> numpy conversions: the only module that knows message layouts.

cv_bridge and sensor_msgs_py have no working pip wheels (the project runs on the ROS 2 pip wheels), so images, point
clouds, meshes and markers are converted with small numpy code. Every ``*_to_numpy``/``*_from_msg`` function validates
the message and raises :class:`z123_ros.errors.InputError` (or ``CameraError``) with a message that names the problem;
the node turns those into counted, dropped frames.

Supported image encodings: rgb8, bgr8, rgba8, bgra8, mono8, 16UC1 (alias mono16), 32FC1. Row padding (``step`` larger
than ``width * bytes_per_pixel``) and big-endian data (``is_bigendian``) are handled on input; outputs are written
little-endian, unpadded unless asked. Compressed inputs (sensor_msgs/CompressedImage, as image_transport's
``compressed`` and ``compressedDepth`` plugins publish them) are decoded at the end of this module.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from geometry_msgs.msg import Point, Pose, Vector3
from rclpy.serialization import serialize_message
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2, PointField, RegionOfInterest
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from z123_ros.camera import CameraIntrinsics
from z123_ros.distortion import Distortion
from z123_ros.errors import CameraError, InputError

logger = logging.getLogger(__name__)

#: encoding -> (numpy dtype of one channel, channels)
IMAGE_ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("16UC1", "mono16", "32FC1")

#: Largest image side accepted (pixels). Larger values are corrupt headers, not cameras.
MAX_IMAGE_SIDE = 16384

# PointField datatype -> numpy dtype (sensor_msgs/PointField constants).
_POINTFIELD_DTYPES = {
    PointField.INT8: np.dtype(np.int8),
    PointField.UINT8: np.dtype(np.uint8),
    PointField.INT16: np.dtype(np.int16),
    PointField.UINT16: np.dtype(np.uint16),
    PointField.INT32: np.dtype(np.int32),
    PointField.UINT32: np.dtype(np.uint32),
    PointField.FLOAT32: np.dtype(np.float32),
    PointField.FLOAT64: np.dtype(np.float64),
}


# --------------------------------------------------------------------------------------------------- images


def check_image(
    msg: Image, allowed: Sequence[str] = tuple(IMAGE_ENCODINGS), what: str = "input"
) -> tuple[np.dtype, int]:
    """Validate an Image's header against its data without decoding (O(1)); return (channel dtype, channels)."""
    if msg.encoding not in allowed:
        raise InputError(f"{what} image encoding {msg.encoding!r} is not supported; use one of {', '.join(allowed)}")
    dtype, channels = IMAGE_ENCODINGS[msg.encoding]
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise InputError(f"{what} image size {width}x{height} is outside 1..{MAX_IMAGE_SIDE} pixels")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise InputError(f"{what} image step {step} is smaller than width * bytes per pixel = {row_bytes}")
    if len(msg.data) != step * height:
        raise InputError(
            f"{what} image data has {len(msg.data)} bytes but step * height = {step} * {height} = {step * height}"
        )
    return dtype, channels


def image_to_numpy(msg: Image, allowed: Sequence[str] = tuple(IMAGE_ENCODINGS)) -> np.ndarray:
    """Decode an Image to a native-endian, contiguous array: (H, W) for one channel, (H, W, C) otherwise.

    The array is a copy: it stays valid after the message is gone.
    """
    dtype, channels = check_image(msg, allowed, "input")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, step)
    row_bytes = width * channels * dtype.itemsize
    wire_dtype = dtype.newbyteorder(">" if msg.is_bigendian else "<") if dtype.itemsize > 1 else dtype
    # Slicing away the padding then viewing needs a contiguous buffer of whole rows.
    pixels = np.ascontiguousarray(raw[:, :row_bytes]).view(wire_dtype)
    pixels = pixels.astype(dtype.newbyteorder("="), copy=True)
    return pixels.reshape(height, width) if channels == 1 else pixels.reshape(height, width, channels)


def image_to_rgb(msg: Image) -> np.ndarray:
    """Any supported colour encoding -> (H, W, 3) uint8 RGB."""
    img = image_to_numpy(msg, COLOUR_ENCODINGS)
    enc = msg.encoding
    if enc == "mono8":
        return np.repeat(img[:, :, None], 3, axis=2)
    if enc in ("bgr8", "bgra8"):
        img = img[:, :, 2::-1]
    return np.ascontiguousarray(img[:, :, :3])


def depth_to_metres(msg: Image) -> np.ndarray:
    """16UC1 (millimetres) or 32FC1 (metres) depth -> (H, W) float32 metres; no reading (0, NaN, inf) -> NaN."""
    depth = image_to_numpy(msg, DEPTH_ENCODINGS)
    if depth.dtype == np.uint16:
        out = depth.astype(np.float32) * np.float32(1e-3)
    else:
        out = depth.astype(np.float32, copy=False)
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def numpy_to_image(
    array: np.ndarray,
    encoding: str,
    header: Header | None = None,
    *,
    row_padding: int = 0,
    bigendian: bool = False,
) -> Image:
    """Encode an array as an Image. ``row_padding`` extra bytes per row and ``bigendian`` exist to test decoders."""
    if encoding not in IMAGE_ENCODINGS:
        raise InputError(f"encoding {encoding!r} is not supported; use one of {', '.join(IMAGE_ENCODINGS)}")
    dtype, channels = IMAGE_ENCODINGS[encoding]
    array = np.asarray(array)
    expected_ndim = 2 if channels == 1 else 3
    if array.ndim != expected_ndim or (channels > 1 and array.shape[2] != channels):
        raise InputError(f"array of shape {array.shape} cannot be encoded as {encoding} ({channels} channels)")
    if array.dtype != dtype:
        raise InputError(f"array dtype {array.dtype} does not match {encoding} (needs {dtype})")
    if row_padding < 0:
        raise InputError(f"row_padding must be >= 0, got {row_padding}")
    height, width = array.shape[:2]
    wire = array.astype(dtype.newbyteorder(">" if bigendian else "<"), copy=False)
    rows = np.ascontiguousarray(wire).view(np.uint8).reshape(height, -1)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, row_padding), np.uint8)], axis=1)
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(height), int(width)
    msg.encoding = encoding
    msg.is_bigendian = int(bool(bigendian and dtype.itemsize > 1))
    msg.step = int(rows.shape[1])
    msg.data = rows.tobytes()
    return msg


def mask_to_image(mask: np.ndarray, header: Header | None = None) -> Image:
    """(H, W) bool mask -> mono8 Image (255 = object)."""
    return numpy_to_image(np.asarray(mask, dtype=bool).astype(np.uint8) * 255, "mono8", header)


# --------------------------------------------------------------------------------------------------- camera info


def camera_info_to_intrinsics(msg: CameraInfo) -> CameraIntrinsics:
    """CameraInfo -> CameraIntrinsics from ``k`` (``d`` is read by camera_info_distortion and undone by the frame
    decoder, so these are the intrinsics of the undistorted image).

    Raises CameraError for a zero/negative/NaN focal length or an absurd image size.
    """
    width, height = int(msg.width), int(msg.height)
    if not (0 < width <= MAX_IMAGE_SIDE and 0 < height <= MAX_IMAGE_SIDE):
        raise CameraError(f"CameraInfo size {width}x{height} is outside 1..{MAX_IMAGE_SIDE} pixels")
    K = np.asarray(msg.k, dtype=np.float64)
    if K.size != 9:
        raise CameraError(f"CameraInfo.k must have 9 entries, got {K.size}")
    if msg.binning_x > 1 or msg.binning_y > 1:
        K = K.reshape(3, 3).copy()
        K[0] /= max(int(msg.binning_x), 1)
        K[1] /= max(int(msg.binning_y), 1)
        width //= max(int(msg.binning_x), 1)
        height //= max(int(msg.binning_y), 1)
    return CameraIntrinsics.from_K(K, width, height)


def camera_info_distortion(msg: CameraInfo) -> Distortion:
    """The lens distortion of a CameraInfo (``distortion_model``, ``d``); raises CameraError when it has non-zero
    coefficients of a model that cannot be undistorted."""
    distortion = Distortion(str(msg.distortion_model), tuple(float(c) for c in msg.d))
    distortion.check()
    return distortion


def intrinsics_to_camera_info(intrinsics: CameraIntrinsics, header: Header | None = None) -> CameraInfo:
    """CameraIntrinsics -> CameraInfo of a rectified pinhole camera (plumb_bob, zero distortion)."""
    msg = CameraInfo()
    if header is not None:
        msg.header = header
    msg.width, msg.height = int(intrinsics.width), int(intrinsics.height)
    msg.distortion_model = "plumb_bob"
    msg.d = [0.0] * 5
    msg.k = intrinsics.K.ravel().tolist()
    msg.r = np.eye(3).ravel().tolist()
    P = np.zeros((3, 4))
    P[:3, :3] = intrinsics.K
    msg.p = P.ravel().tolist()
    return msg


# --------------------------------------------------------------------------------------------------- point clouds


def _pack_rgb(colours: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 -> (N,) float32 holding 0x00RRGGBB, the PCL/RViz ``rgb`` field convention."""
    c = colours.astype(np.uint32)
    return ((c[:, 0] << 16) | (c[:, 1] << 8) | c[:, 2]).view(np.float32)


def points_to_pointcloud2(
    points: np.ndarray, header: Header | None = None, colours: np.ndarray | None = None
) -> PointCloud2:
    """(N, 3) xyz (+ optional (N, 3) uint8 colours) -> an unorganised, dense PointCloud2 (float32 x, y, z[, rgb])."""
    pts = np.asarray(points, dtype=np.float32)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise InputError(f"points must be (N, 3), got shape {pts.shape}")
    fields = [
        PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
        PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
        PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
    ]
    columns = [pts]
    if colours is not None:
        colours = np.asarray(colours)
        if colours.shape != pts.shape:
            raise InputError(f"colours must have the points' shape {pts.shape}, got {colours.shape}")
        fields.append(PointField(name="rgb", offset=12, datatype=PointField.FLOAT32, count=1))
        columns.append(_pack_rgb(np.clip(colours, 0, 255).astype(np.uint8))[:, None])
    data = np.ascontiguousarray(np.concatenate(columns, axis=1).astype("<f4", copy=False))
    msg = PointCloud2()
    if header is not None:
        msg.header = header
    msg.height, msg.width = 1, len(pts)
    msg.fields = fields
    msg.is_bigendian = False
    msg.point_step = 4 * len(fields)
    msg.row_step = msg.point_step * len(pts)
    msg.is_dense = bool(np.all(np.isfinite(pts)))
    msg.data = data.tobytes()
    return msg


@dataclass
class CloudArrays:
    """A decoded point cloud."""

    #: (N, 3) float32 x, y, z in the message's frame.
    xyz: np.ndarray
    #: (N, 3) uint8 RGB, or None when the cloud has no rgb/rgba field.
    rgb: np.ndarray | None


def pointcloud2_to_points(msg: PointCloud2, skip_nans: bool = True) -> CloudArrays:
    """PointCloud2 -> xyz (+ rgb). Handles any field order/offsets, padding, organised clouds and byte order."""
    height, width = int(msg.height), int(msg.width)
    point_step, row_step = int(msg.point_step), int(msg.row_step)
    if height < 0 or width < 0 or height * width > MAX_IMAGE_SIDE * MAX_IMAGE_SIDE:
        raise InputError(f"PointCloud2 size {width}x{height} is absurd")
    if len(msg.data) != row_step * height:
        raise InputError(f"PointCloud2 data has {len(msg.data)} bytes but row_step * height = {row_step * height}")
    if height * width and row_step < point_step * width:
        raise InputError(f"PointCloud2 row_step {row_step} < point_step * width = {point_step * width}")
    fields = {f.name: f for f in msg.fields}
    for name in ("x", "y", "z"):
        if name not in fields:
            raise InputError(f"PointCloud2 has no {name!r} field (fields: {sorted(fields)})")
    order = ">" if msg.is_bigendian else "<"
    names, formats, offsets = [], [], []
    for name in ("x", "y", "z", "rgb" if "rgb" in fields else "rgba"):
        if name not in fields:
            continue
        f = fields[name]
        if f.datatype not in _POINTFIELD_DTYPES:
            raise InputError(f"PointCloud2 field {name!r} has unknown datatype {f.datatype}")
        dt = _POINTFIELD_DTYPES[f.datatype]
        if f.offset + dt.itemsize > point_step:
            raise InputError(f"PointCloud2 field {name!r} at offset {f.offset} overruns point_step {point_step}")
        names.append(name)
        formats.append(dt.newbyteorder(order))
        offsets.append(int(f.offset))
    record = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})
    raw = np.frombuffer(msg.data, dtype=np.uint8).reshape(height, row_step) if height else np.zeros((0, 0), np.uint8)
    rows = np.ascontiguousarray(raw[:, : point_step * width]).reshape(-1).view(record)
    xyz = np.stack([rows["x"], rows["y"], rows["z"]], axis=1).astype(np.float32)
    rgb = None
    if len(names) == 4:
        packed = rows[names[3]]
        packed = packed.astype(packed.dtype.newbyteorder("="))
        # Float32 "rgb" holds the bits of a uint32 0x00RRGGBB; view, do not cast.
        bits = packed.view(np.uint32) if packed.dtype.itemsize == 4 else packed.astype(np.uint32)
        rgb = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.uint8)
    if skip_nans:
        keep = np.all(np.isfinite(xyz), axis=1)
        xyz = xyz[keep]
        rgb = rgb[keep] if rgb is not None else None
    return CloudArrays(xyz=xyz, rgb=rgb)


# --------------------------------------------------------------------------------------------------- meshes


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"mesh vertices must be (V, 3), got shape {v.shape}")
    if f.size == 0:
        f = f.reshape(0, 3)
    if f.ndim != 2 or f.shape[1] != 3:
        raise InputError(f"mesh faces must be (F, 3), got shape {f.shape}")
    if not np.all(np.isfinite(v)):
        raise InputError("mesh vertices contain NaN or inf")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"mesh face indices must lie in 0..{len(v) - 1}, got {f.min()}..{f.max()}")
    return v, f.astype(np.int64)


def _points(xyz: np.ndarray) -> list[Point]:
    """(N, 3) -> list of geometry_msgs/Point, 2x faster than the keyword constructor.

    Meshes have tens of thousands of vertices and the generated constructor type-checks every field; the values here
    are already validated floats, so the generated slots are filled directly (rosidl_generator_py's layout: one
    ``_<field>`` slot per field).
    """
    new = Point.__new__
    out = []
    for x, y, z in np.asarray(xyz, dtype=np.float64).tolist():
        p = new(Point)
        p._check_fields = False
        p._x, p._y, p._z = x, y, z
        out.append(p)
    return out


def _triangles(faces: np.ndarray) -> list[MeshTriangle]:
    new = MeshTriangle.__new__
    out = []
    for row in np.ascontiguousarray(faces, dtype=np.uint32):
        t = new(MeshTriangle)
        t._check_fields = False
        t._vertex_indices = row
        out.append(t)
    return out


def mesh_to_msg(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    """(V, 3) vertices, (F, 3) faces -> shape_msgs/Mesh."""
    v, f = _check_mesh(vertices, faces)
    msg = Mesh()
    msg.vertices = _points(v)
    msg.triangles = _triangles(f)
    return msg


def _align(offset: int, n: int) -> int:
    return -(-offset // n) * n


def _mesh_cdr(vertices: np.ndarray, faces: np.ndarray, start: int) -> bytes:
    """A shape_msgs/Mesh in little-endian CDR whose first byte lies at payload offset ``start`` (4-aligned):
    triangles (uint32 count, 3 uint32 each), vertices (uint32 count, padding to 8, 3 float64 each)."""
    parts = [struct.pack("<I", len(faces)), np.ascontiguousarray(faces, dtype="<u4").tobytes()]
    at = start + 8 + 12 * len(faces)  # after the vertex count
    parts.append(struct.pack("<I", len(vertices)))
    if len(vertices):
        parts += [bytes(_align(at, 8) - at), np.ascontiguousarray(vertices, dtype="<f8").tobytes()]
    return b"".join(parts)


def reconstruction_to_cdr(msg, vertices: np.ndarray, faces: np.ndarray) -> bytes:
    """``msg`` (z123_interfaces/ObjectReconstruction) serialised with ``mesh`` = (vertices, faces), ready for
    ``publisher.publish(bytes)``; equal to ``serialize_message`` of the message carrying that mesh.

    The mesh is written with numpy instead of one geometry_msgs/Point object per vertex (building and converting
    those cost 40 ms per 10 k-vertex mesh, more than the rest of the message). The message is serialised once with
    a stand-in mesh of one vertex and as many triangles as the real one modulo 2, so every field after the mesh
    keeps its 8-byte alignment, and the real mesh's bytes replace the stand-in's. The mesh follows the header and
    ``object_id``, whose layout is fixed; should the stand-in not be where expected, the message is serialised the
    ordinary way.
    """
    v, f = _check_mesh(vertices, faces)
    original = msg.mesh
    stand_in = (np.zeros((1 if len(v) else 0, 3)), np.zeros((2 - len(f) % 2 if len(f) else 0, 3), np.int64))
    try:
        msg.mesh = mesh_to_msg(*stand_in)
        data = serialize_message(msg)
        # Payload offsets (after the 4-byte encapsulation header): stamp (8), frame_id (4 + bytes + NUL), object_id.
        start = _align(12 + len(msg.header.frame_id.encode()) + 1, 4) + 4
        template = _mesh_cdr(*stand_in, start)
        head = 4 + start
        # The stand-in's triangle and vertex counts must be where the layout puts them.
        counts = ((head, len(stand_in[1])), (head + 4 + 12 * len(stand_in[1]), len(stand_in[0])))
        if any(data[at : at + 4] != struct.pack("<I", n) for at, n in counts):
            logger.warning("ObjectReconstruction layout not as expected: serialising the mesh the slow way")
            msg.mesh = mesh_to_msg(v, f)
            return serialize_message(msg)
        return data[:head] + _mesh_cdr(v, f, start) + data[head + len(template) :]
    finally:
        msg.mesh = original


def simplify_mesh(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Quadric edge-collapse decimation to at most ``max_faces`` triangles (unchanged when already small enough).

    Messages of 100 k-face meshes cost seconds to build and megabytes to send; a grasp planner needs a few thousand
    faces, and one watertight piece per object. :func:`z123_ros.reconstruction.simplify.decimate_checked` keeps a
    thin wall's two faces apart and a watertight, one-piece mesh so (vertex clustering merged a 1-2 mm wall's faces
    and could pinch the surface); a result that still broke the topology is published and logged.
    """
    # Lazy: scipy (loaded by the simplification) must load only after the node's main() applied its lean imports.
    from z123_ros.reconstruction.simplify import decimate_checked

    v, f = _check_mesh(vertices, faces)
    if len(f) <= max_faces or len(f) == 0:
        return v, f
    sv, sf, kept = decimate_checked(v, f, max_faces)
    if len(sf) > max_faces:
        raise InputError(f"could not simplify a {len(f)}-face mesh to {max_faces} faces")
    if not kept:
        logger.warning("simplifying a %d-face mesh to %d faces broke its watertightness or split it", len(f), len(sf))
    return sv, sf


def cluster_mesh(vertices: np.ndarray, faces: np.ndarray, max_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Vertex-clustering simplification to at most ``max_faces`` triangles (unchanged when already small enough).

    For RViz markers: a few times cheaper than :func:`simplify_mesh`, but it merges a thin wall's two faces once
    the cell outgrows the wall and can make a watertight mesh non-manifold, which a display does not mind. Vertices
    are merged per cubic cell (cell size grown until the face count fits), degenerate and duplicate faces removed;
    the shape moves by at most one cell.
    """
    v, f = _check_mesh(vertices, faces)
    if len(f) <= max_faces or len(f) == 0:
        return v, f
    extent = float(np.ptp(v, axis=0).max()) or 1.0
    # Faces scale with 1 / cell^2 on a surface: start from that estimate, grow 25 % per miss.
    edge = float(np.linalg.norm(v[f[:, 0]] - v[f[:, 1]], axis=1).mean())
    cell = max(edge * np.sqrt(len(f) / max_faces), extent * 1e-4)
    for _ in range(20):
        keys = np.floor((v - v.min(axis=0)) / cell).astype(np.int64)
        # One int64 per cell (2^21 cells per axis is far beyond any message-sized mesh) keeps np.unique 1-D and fast.
        flat = (keys[:, 0] << 42) | (keys[:, 1] << 21) | keys[:, 2]
        _, cluster, counts = np.unique(flat, return_inverse=True, return_counts=True)
        cluster = cluster.reshape(-1)
        centres = np.zeros((len(counts), 3))
        np.add.at(centres, cluster, v)
        centres /= counts[:, None]
        g = cluster[f]
        keep = (g[:, 0] != g[:, 1]) & (g[:, 1] != g[:, 2]) & (g[:, 0] != g[:, 2])
        g = g[keep]
        s = np.sort(g, axis=1)
        _, unique_rows = np.unique((s[:, 0] << 42) | (s[:, 1] << 21) | s[:, 2], return_index=True)
        g = g[np.sort(unique_rows)]
        if len(g) <= max_faces:
            used, remap = np.unique(g, return_inverse=True)
            return centres[used], remap.reshape(-1, 3)
        cell *= 1.25
    raise InputError(f"could not simplify a {len(f)}-face mesh to {max_faces} faces")


def msg_to_mesh(msg: Mesh) -> tuple[np.ndarray, np.ndarray]:
    """shape_msgs/Mesh -> ((V, 3) float64 vertices, (F, 3) int64 faces), validated."""
    v = np.array([(p.x, p.y, p.z) for p in msg.vertices], dtype=np.float64).reshape(-1, 3)
    f = np.array([t.vertex_indices for t in msg.triangles], dtype=np.int64).reshape(-1, 3)
    return _check_mesh(v, f)


# --------------------------------------------------------------------------------------------------- markers


#: Distinct colours for object ids (tab10), RGB 0..1.
_PALETTE = np.array(
    [
        [0.12, 0.47, 0.71],
        [1.00, 0.50, 0.05],
        [0.17, 0.63, 0.17],
        [0.84, 0.15, 0.16],
        [0.58, 0.40, 0.74],
        [0.55, 0.34, 0.29],
        [0.89, 0.47, 0.76],
        [0.50, 0.50, 0.50],
        [0.74, 0.74, 0.13],
        [0.09, 0.75, 0.81],
    ]
)


def id_colour(object_id: int) -> tuple[float, float, float]:
    """A stable RGB colour (0..1) for an object id."""
    r, g, b = _PALETTE[int(object_id) % len(_PALETTE)]
    return float(r), float(g), float(b)


@dataclass
class MarkerObject:
    """One object to draw: its mesh and a text label, in the header frame."""

    object_id: int
    #: (V, 3) vertices, metres.
    vertices: np.ndarray
    #: (F, 3) faces.
    faces: np.ndarray
    label: str
    #: The mesh's TRIANGLE_LIST points (:func:`marker_points`) when already built: an object whose mesh did not
    #: change is not converted again each time the marker array is rebuilt.
    points: np.ndarray | None = None


def marker_points(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """A mesh's TRIANGLE_LIST marker points, three per face: (3 F, 3) float64."""
    v, f = _check_mesh(vertices, faces)
    return np.ascontiguousarray(v[f.reshape(-1)])


def mesh_marker_array(
    objects: Sequence[MarkerObject], header: Header, namespace: str = "z123", alpha: float = 0.8
) -> MarkerArray:
    """A MarkerArray for RViz: DELETEALL first (so vanished objects disappear), then per object a TRIANGLE_LIST mesh
    (id = 2 * object_id) and a TEXT_VIEW_FACING label above it (id = 2 * object_id + 1)."""
    out = MarkerArray()
    clear = Marker()
    clear.header = header
    clear.ns = namespace
    clear.action = Marker.DELETEALL
    out.markers.append(clear)
    for obj in objects:
        v, f = _check_mesh(obj.vertices, obj.faces)
        r, g, b = id_colour(obj.object_id)
        mesh = Marker()
        mesh.header = header
        mesh.ns = namespace
        mesh.id = 2 * int(obj.object_id)
        mesh.type = Marker.TRIANGLE_LIST
        mesh.action = Marker.ADD
        mesh.pose.orientation.w = 1.0
        mesh.scale = Vector3(x=1.0, y=1.0, z=1.0)
        mesh.color = ColorRGBA(r=r, g=g, b=b, a=float(alpha))
        mesh.points = _points(obj.points if obj.points is not None else v[f.reshape(-1)])
        out.markers.append(mesh)
        text = Marker()
        text.header = header
        text.ns = namespace
        text.id = 2 * int(obj.object_id) + 1
        text.type = Marker.TEXT_VIEW_FACING
        text.action = Marker.ADD
        top = v.min(axis=0) if len(v) else np.zeros(3)
        centre = v.mean(axis=0) if len(v) else np.zeros(3)
        # Camera frame: y points down, so "above the object" is the smallest y.
        text.pose.position = Point(x=float(centre[0]), y=float(top[1]) - 0.02, z=float(centre[2]))
        text.pose.orientation.w = 1.0
        text.scale.z = 0.03
        text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        text.text = obj.label
        out.markers.append(text)
    return out


#: Stand-in TRIANGLE_LIST length of :func:`mesh_marker_array_cdr` (its count, right before the points, is checked).
_STAND_IN_POINTS = 7


def mesh_marker_array_cdr(objects: Sequence[MarkerObject], header: Header, namespace: str = "z123") -> bytes:
    """:func:`mesh_marker_array` serialised, ready for ``publisher.publish(bytes)``; decodes to the same message.

    RViz's TRIANGLE_LIST wants one geometry_msgs/Point per corner: 15 k Python objects per 5 k-face object, built and
    converted again for every marker array (tens of ms each, plus the garbage collections they trigger, on the cores
    the reconstructions run on). Here each mesh marker is serialised with a stand-in of ``_STAND_IN_POINTS`` points,
    the first a sentinel unique to the marker, and the real points' bytes (numpy) replace the stand-in's. The count
    lies right before the points with no padding: ``pose`` aligns the marker to 8 bytes and every field from there
    to ``frame_locked`` is a multiple of 8 bytes long. Points are 24 bytes, so every later field keeps its
    alignment. Should a sentinel not be where that layout puts it, or an object have no faces, the array is
    serialised the ordinary way.
    """
    points = [o.points if o.points is not None else marker_points(o.vertices, o.faces) for o in objects]
    if any(len(p) == 0 for p in points):
        return serialize_message(mesh_marker_array(objects, header, namespace))
    stand_ins = [np.zeros((_STAND_IN_POINTS, 3)) for _ in objects]
    for k, stand_in in enumerate(stand_ins):
        stand_in[0] = (-1.2345678901234567e-300, float(k), 7.654321e-301)  # not a coordinate anyone publishes
    msg = mesh_marker_array(
        [dataclasses.replace(o, points=p) for o, p in zip(objects, stand_ins, strict=True)], header, namespace
    )
    data = serialize_message(msg)
    count = struct.pack("<I", _STAND_IN_POINTS)
    parts, done = [], 0
    for stand_in, real in zip(stand_ins, points, strict=True):
        at = data.find(stand_in[0].astype("<f8").tobytes(), done)
        if at < 0 or (at - 4) % 8 or data[at - 4 : at] != count:
            logger.warning("MarkerArray layout not as expected: serialising the marker points the slow way")
            return serialize_message(mesh_marker_array(objects, header, namespace))
        parts += [data[done : at - 4], struct.pack("<I", len(real)), np.ascontiguousarray(real, dtype="<f8").tobytes()]
        done = at + 24 * _STAND_IN_POINTS
    parts.append(data[done:])
    return b"".join(parts)


# --------------------------------------------------------------------------------------------------- project messages


def _roi(box_xyxy: Sequence[int], width: int, height: int) -> RegionOfInterest:
    x0, y0, x1, y1 = (int(round(float(c))) for c in box_xyxy)
    x0, y0 = max(0, min(x0, width)), max(0, min(y0, height))
    x1, y1 = max(x0, min(x1, width)), max(y0, min(y1, height))
    return RegionOfInterest(x_offset=x0, y_offset=y0, width=x1 - x0, height=y1 - y0, do_rectify=False)


def roi_to_box(roi: RegionOfInterest, width: int, height: int) -> tuple[int, int, int, int]:
    """RegionOfInterest -> (x0, y0, x1, y1), validated against the image size."""
    x0, y0 = int(roi.x_offset), int(roi.y_offset)
    x1, y1 = x0 + int(roi.width), y0 + int(roi.height)
    if roi.width == 0 or roi.height == 0 or x1 > width or y1 > height:
        raise InputError(
            f"roi x={x0} y={y0} w={roi.width} h={roi.height} is empty or outside the {width}x{height} image"
        )
    return x0, y0, x1, y1


def segmentation_to_msg(frame, header: Header):
    """FrameSegmentation (z123_ros.segmentation) -> z123_interfaces/ObjectSegmentation. Masks are box-sized crops."""
    from z123_interfaces.msg import ObjectSegmentation, SegmentedObject

    msg = ObjectSegmentation()
    msg.header = header
    for obj in frame.objects:
        mask = np.asarray(obj.mask, dtype=bool)
        height, width = mask.shape
        out = SegmentedObject()
        out.id = int(obj.id)
        out.box = _roi(obj.box_xyxy, width, height)
        x0, y0 = out.box.x_offset, out.box.y_offset
        crop = mask[y0 : y0 + out.box.height, x0 : x0 + out.box.width]
        out.mask = mask_to_image(crop, header)
        out.has_3d = obj.centroid_cam is not None and obj.extent_m is not None
        if out.has_3d:
            c, e = np.asarray(obj.centroid_cam, dtype=float), np.asarray(obj.extent_m, dtype=float)
            out.centroid = Point(x=float(c[0]), y=float(c[1]), z=float(c[2]))
            out.extent = Vector3(x=float(e[0]), y=float(e[1]), z=float(e[2]))
        out.score = float(obj.score)
        out.method = str(obj.method)
        msg.objects.append(out)
    msg.has_plane = frame.plane_cam is not None
    if msg.has_plane:
        msg.plane = [float(x) for x in np.asarray(frame.plane_cam, dtype=float).ravel()[:4]]
    polar = frame.camera_polar_deg
    msg.camera_polar_deg = float(polar) if polar is not None and math.isfinite(polar) else float("nan")
    return msg


def reconstruction_to_msg(
    result,
    object_id: int,
    header: Header,
    max_cloud_points: int = 20000,
    mesh: tuple[np.ndarray, np.ndarray] | None = None,
):
    """ReconstructionResult (z123_ros.reconstruction) -> z123_interfaces/ObjectReconstruction.

    Geometry is copied as the backend produced it (camera frame and metres when ``result.metric``); ``mesh``
    replaces the result's mesh (e.g. a simplified one). The cloud is subsampled to at most ``max_cloud_points``
    with a fixed stride so repeated calls give the same message.
    """
    from z123_interfaces.msg import ObjectReconstruction, StageTiming

    msg = ObjectReconstruction()
    msg.header = header
    msg.object_id = int(object_id)
    msg.mesh = mesh_to_msg(*(mesh if mesh is not None else (result.vertices, result.faces)))
    points = np.asarray(result.points, dtype=np.float32).reshape(-1, 3)
    if len(points) > max_cloud_points:
        points = points[:: int(math.ceil(len(points) / max_cloud_points))]
    msg.cloud = points_to_pointcloud2(points, header)
    centre = np.asarray(getattr(result, "centre", np.zeros(3)), dtype=float).ravel()
    extent = np.asarray(getattr(result, "extent_m", np.zeros(3)), dtype=float).ravel()
    msg.pose = Pose()
    msg.pose.position = Point(x=float(centre[0]), y=float(centre[1]), z=float(centre[2]))
    msg.pose.orientation.w = 1.0
    msg.extent = Vector3(x=float(extent[0]), y=float(extent[1]), z=float(extent[2]))
    msg.metric = bool(result.metric)
    msg.confidence = float(np.clip(result.confidence, 0.0, 1.0))
    msg.backend = str(result.backend)
    msg.timings = [StageTiming(stage=str(k), seconds=float(v)) for k, v in dict(result.timings).items()]
    return msg


def header_stamp_s(header: Header) -> float:
    """A header's stamp in seconds (float)."""
    return float(header.stamp.sec) + 1e-9 * float(header.stamp.nanosec)


# ------------------------------------------------------------------------------------- compressed images
# sensor_msgs/CompressedImage as image_transport's plugins write it (robots stream colour and depth this way over
# Wi-Fi). Colour ("compressed" transport): format "<raw encoding>; <jpeg|png> compressed <bgr8|rgb8|mono8>", older
# publishers just "jpeg" / "png"; the payload is a plain JPEG/PNG file. Depth ("compressedDepth" transport): format
# "<16UC1|32FC1>; compressedDepth png", payload = a 12-byte ConfigHeader (int32 format, float32 depthParam[2],
# little-endian) then a 16-bit PNG: millimetres for 16UC1, quantised inverse depth for 32FC1
# (depth_m = depthParam[0] / (value - depthParam[1]), 0 = no reading).

#: The ConfigHeader of compressed_depth_image_transport (format enum INV_DEPTH = 0, two quantisation floats).
COMPRESSED_DEPTH_HEADER = struct.Struct("<iff")
#: Largest compressed payload accepted, bytes: far above any real camera frame, below a memory-exhausting one.
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024


def check_compressed(msg: CompressedImage, what: str = "input") -> None:
    """Cheap checks of a CompressedImage before it is queued (O(1): the payload is decoded later)."""
    if not 0 < len(msg.data) <= MAX_COMPRESSED_BYTES:
        raise InputError(f"{what} compressed payload has {len(msg.data)} bytes (must be 1..{MAX_COMPRESSED_BYTES})")
    fmt = msg.format.lower()
    if what == "depth" and "compresseddepth" not in fmt:
        raise InputError(f"depth compressed format {msg.format!r} is not compressedDepth")
    if what != "depth" and not any(codec in fmt for codec in ("jpeg", "jpg", "png")):
        raise InputError(f"{what} compressed format {msg.format!r} is neither jpeg nor png")


def _decode_payload(data: bytes, flags: int, what: str) -> np.ndarray:
    if not 0 < len(data) <= MAX_COMPRESSED_BYTES:
        raise InputError(f"{what} compressed payload has {len(data)} bytes (must be 1..{MAX_COMPRESSED_BYTES})")
    try:
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as exc:
        raise InputError(f"{what} compressed payload could not be decoded: {exc}") from exc
    if image is None or image.size == 0:
        raise InputError(f"{what} compressed payload is not a decodable JPEG/PNG image")
    height, width = image.shape[:2]
    if not (height <= MAX_IMAGE_SIDE and width <= MAX_IMAGE_SIDE):
        raise InputError(f"{what} compressed image size {width}x{height} is above {MAX_IMAGE_SIDE} pixels")
    return image


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """A ``compressed``-transport colour image (JPEG or PNG) -> (H, W, 3) uint8 RGB."""
    fmt = msg.format.lower()
    if "compresseddepth" in fmt:
        raise InputError(f"colour input has a compressedDepth format {msg.format!r}; use it as depth input")
    if "jpeg" not in fmt and "jpg" not in fmt and "png" not in fmt:
        raise InputError(f"colour compressed format {msg.format!r} is neither jpeg nor png")
    image = _decode_payload(bytes(msg.data), cv2.IMREAD_UNCHANGED, "colour")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2).astype(np.uint8, copy=False)
    if image.dtype != np.uint8 or image.shape[2] not in (3, 4):
        raise InputError(f"colour compressed image has {image.shape[2]} channels of {image.dtype}; need 8-bit colour")
    # cv2 returns the channels in the order they were written: the plugin writes bgr8 unless the format says rgb8.
    if "compressed rgb" in fmt:
        return np.ascontiguousarray(image[:, :, :3])
    return np.ascontiguousarray(image[:, :, 2::-1])


def rgb_to_compressed(
    rgb: np.ndarray, fmt: str = "jpeg", header: Header | None = None, jpeg_quality: int = 95
) -> CompressedImage:
    """(H, W, 3) uint8 RGB -> a CompressedImage as compressed_image_transport publishes it (bgr8 payload)."""
    if fmt not in ("jpeg", "png"):
        raise InputError(f"compressed colour format {fmt!r} is not supported; use jpeg or png")
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"colour to compress must be (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    params = [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)] if fmt == "jpeg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, payload = cv2.imencode(f".{fmt}", np.ascontiguousarray(rgb[:, :, ::-1]), params)
    if not ok:
        raise InputError(f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} image as {fmt}")
    msg = CompressedImage(format=f"rgb8; {fmt} compressed bgr8", data=payload.tobytes())
    if header is not None:
        msg.header = header
    return msg


def compressed_depth_to_metres(msg: CompressedImage) -> np.ndarray:
    """A ``compressedDepth``-transport image (16UC1 or 32FC1, png) -> (H, W) float32 metres, NaN = no reading."""
    encoding, _, codec = msg.format.partition(";")
    encoding, codec = encoding.strip(), codec.strip()
    if codec and codec not in ("compressedDepth", "compressedDepth png"):
        raise InputError(f"depth compressed format {msg.format!r} is not supported; need '16UC1; compressedDepth png'")
    if encoding not in ("16UC1", "mono16", "32FC1"):
        raise InputError(f"compressedDepth encoding {encoding!r} is not supported; use 16UC1 or 32FC1")
    data = bytes(msg.data)
    if len(data) <= COMPRESSED_DEPTH_HEADER.size:
        raise InputError(f"compressedDepth payload has {len(data)} bytes, no room for the 12-byte header and a PNG")
    _, quant_a, quant_b = COMPRESSED_DEPTH_HEADER.unpack_from(data)
    raw = _decode_payload(data[COMPRESSED_DEPTH_HEADER.size :], cv2.IMREAD_UNCHANGED, "depth")
    if raw.ndim != 2 or raw.dtype != np.uint16:
        raise InputError(f"compressedDepth PNG must be one 16-bit channel, got shape {raw.shape} {raw.dtype}")
    if encoding == "32FC1":
        if not (math.isfinite(quant_a) and math.isfinite(quant_b) and quant_a > 0):
            raise InputError(f"compressedDepth header has bad quantisation parameters ({quant_a}, {quant_b})")
        with np.errstate(divide="ignore", invalid="ignore"):
            depth = (quant_a / (raw.astype(np.float32) - np.float32(quant_b))).astype(np.float32)
    else:
        depth = raw.astype(np.float32) * np.float32(1e-3)
    depth[(raw == 0) | ~np.isfinite(depth) | (depth <= 0)] = np.nan
    return depth


def depth_to_compressed_depth(depth_m: np.ndarray, header: Header | None = None) -> CompressedImage:
    """(H, W) metres (NaN = no reading) -> '16UC1; compressedDepth png' (millimetres), as the plugin publishes it."""
    depth_m = np.asarray(depth_m, dtype=np.float32)
    if depth_m.ndim != 2:
        raise InputError(f"depth to compress must be (H, W), got {depth_m.shape}")
    mm = np.where(np.isfinite(depth_m) & (depth_m > 0), np.round(depth_m * 1000.0), 0.0)
    ok, payload = cv2.imencode(".png", np.clip(mm, 0, 65535).astype(np.uint16), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise InputError("OpenCV could not encode the depth image as a 16-bit PNG")
    msg = CompressedImage(
        format="16UC1; compressedDepth png", data=COMPRESSED_DEPTH_HEADER.pack(0, 0.0, 0.0) + payload.tobytes()
    )
    if header is not None:
        msg.header = header
    return msg
