"""Message <-> numpy conversions: every encoding, row padding, byte order, round trips, and the errors."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from visualization_msgs.msg import Marker  # noqa: E402

from z123_ros.camera import CameraIntrinsics  # noqa: E402
from z123_ros.errors import CameraError, InputError  # noqa: E402
from z123_ros.ros import conversions as conv  # noqa: E402

pytestmark = pytest.mark.ros

RNG = np.random.default_rng(0)


def _sample(encoding: str, h: int = 5, w: int = 7) -> np.ndarray:
    dtype, channels = conv.IMAGE_ENCODINGS[encoding]
    shape = (h, w) if channels == 1 else (h, w, channels)
    if dtype == np.float32:
        return RNG.uniform(0.1, 5.0, shape).astype(np.float32)
    return RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)


@pytest.mark.parametrize("encoding", list(conv.IMAGE_ENCODINGS))
@pytest.mark.parametrize("padding", [0, 3])
@pytest.mark.parametrize("bigendian", [False, True])
def test_image_round_trip_every_encoding(encoding: str, padding: int, bigendian: bool) -> None:
    array = _sample(encoding)
    msg = conv.numpy_to_image(array, encoding, row_padding=padding, bigendian=bigendian)
    itemsize = array.dtype.itemsize
    assert msg.step == array.shape[1] * (array.shape[2] if array.ndim == 3 else 1) * itemsize + padding
    assert msg.is_bigendian == (bigendian and itemsize > 1)
    out = conv.image_to_numpy(msg)
    assert out.dtype == array.dtype and out.dtype.isnative
    np.testing.assert_array_equal(out, array)


def test_big_endian_bytes_are_really_swapped() -> None:
    depth = np.array([[1, 258]], dtype=np.uint16)  # 258 = 0x0102
    msg = conv.numpy_to_image(depth, "16UC1", bigendian=True)
    assert bytes(msg.data) == b"\x00\x01\x01\x02"
    little = conv.numpy_to_image(depth, "16UC1")
    assert bytes(little.data) == b"\x01\x00\x02\x01"
    np.testing.assert_array_equal(conv.image_to_numpy(msg), depth)


def test_hand_built_padded_image_decodes() -> None:
    # A 2x2 rgb8 image with 2 junk bytes per row, as some drivers align rows.
    msg = Image(height=2, width=2, encoding="rgb8", step=8, is_bigendian=0)
    msg.data = bytes([1, 2, 3, 4, 5, 6, 99, 99, 7, 8, 9, 10, 11, 12, 99, 99])
    np.testing.assert_array_equal(conv.image_to_numpy(msg).reshape(-1), np.arange(1, 13))


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_image_to_rgb_channel_order(encoding: str) -> None:
    rgb = RNG.integers(0, 255, (4, 6, 3), endpoint=True).astype(np.uint8)
    if encoding == "mono8":
        rgb[:] = rgb[:, :, :1]
        src = rgb[:, :, 0]
    elif encoding == "rgb8":
        src = rgb
    elif encoding == "bgr8":
        src = rgb[:, :, ::-1]
    else:
        alpha = np.full(rgb.shape[:2] + (1,), 7, np.uint8)
        src = np.concatenate([rgb if encoding == "rgba8" else rgb[:, :, ::-1], alpha], axis=2)
    out = conv.image_to_rgb(conv.numpy_to_image(np.ascontiguousarray(src), encoding))
    assert out.shape == (4, 6, 3) and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


def test_depth_units_and_invalid_readings() -> None:
    mm = np.array([[0, 1000, 1500]], dtype=np.uint16)
    np.testing.assert_allclose(conv.depth_to_metres(conv.numpy_to_image(mm, "16UC1")), [[np.nan, 1.0, 1.5]])
    m = np.array([[np.nan, 0.0, -1.0, np.inf, 0.75]], dtype=np.float32)
    np.testing.assert_allclose(conv.depth_to_metres(conv.numpy_to_image(m, "32FC1")), [[np.nan] * 4 + [0.75]])


def test_image_errors_name_the_problem() -> None:
    good = conv.numpy_to_image(_sample("rgb8"), "rgb8")
    bad = conv.numpy_to_image(_sample("rgb8"), "rgb8")
    bad.encoding = "yuv422"
    with pytest.raises(InputError, match="yuv422"):
        conv.image_to_rgb(bad)
    with pytest.raises(InputError, match="not supported"):
        conv.depth_to_metres(good)  # a colour image on the depth topic
    short = conv.numpy_to_image(_sample("rgb8"), "rgb8")
    short.data = bytes(short.data)[:-1]
    with pytest.raises(InputError, match="bytes but step"):
        conv.image_to_numpy(short)
    small_step = conv.numpy_to_image(_sample("rgb8"), "rgb8")
    small_step.step = 3
    with pytest.raises(InputError, match="step 3"):
        conv.image_to_numpy(small_step)
    absurd = Image(height=100000, width=100000, encoding="mono8", step=100000)
    with pytest.raises(InputError, match="outside"):
        conv.image_to_numpy(absurd)
    with pytest.raises(InputError, match="outside"):
        conv.image_to_numpy(Image(height=0, width=4, encoding="mono8", step=4))
    with pytest.raises(InputError, match="dtype"):
        conv.numpy_to_image(np.zeros((2, 2), np.float64), "32FC1")


def test_camera_info_round_trip_and_bad_focal() -> None:
    intr = CameraIntrinsics(500.0, 510.0, 319.5, 239.5, 640, 480)
    msg = conv.intrinsics_to_camera_info(intr)
    assert conv.camera_info_to_intrinsics(msg) == intr
    assert msg.distortion_model == "plumb_bob" and list(msg.d) == [0.0] * 5
    zero = conv.intrinsics_to_camera_info(intr)
    zero.k = [0.0] * 9
    with pytest.raises(CameraError, match="focal"):
        conv.camera_info_to_intrinsics(zero)
    with pytest.raises(CameraError, match="size"):
        conv.camera_info_to_intrinsics(CameraInfo(width=0, height=480, k=msg.k))
    binned = conv.intrinsics_to_camera_info(intr)
    binned.binning_x = binned.binning_y = 2
    half = conv.camera_info_to_intrinsics(binned)
    assert (half.width, half.height, half.fx) == (320, 240, 250.0)


def test_pointcloud_round_trip_with_colour() -> None:
    pts = RNG.normal(size=(50, 3)).astype(np.float32)
    rgb = RNG.integers(0, 255, (50, 3), endpoint=True).astype(np.uint8)
    header = Header(frame_id="cam")
    msg = conv.points_to_pointcloud2(pts, header, rgb)
    assert msg.header.frame_id == "cam" and msg.point_step == 16 and msg.width == 50
    out = conv.pointcloud2_to_points(msg)
    np.testing.assert_array_equal(out.xyz, pts)
    np.testing.assert_array_equal(out.rgb, rgb)
    plain = conv.pointcloud2_to_points(conv.points_to_pointcloud2(pts))
    assert plain.rgb is None
    np.testing.assert_array_equal(plain.xyz, pts)


def test_pointcloud_foreign_layout_big_endian_organised_with_nans() -> None:
    # A driver-style organised cloud: padding, fields out of order, big-endian float64, NaN holes.
    h, w = 2, 3
    rec = np.dtype({"names": ["z", "x", "y"], "formats": [">f8", ">f8", ">f8"], "offsets": [0, 8, 16], "itemsize": 32})
    data = np.zeros((h, w), dtype=rec)
    xyz = RNG.normal(size=(h, w, 3))
    xyz[0, 1] = np.nan
    data["x"], data["y"], data["z"] = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    row_padding = 4
    rows = np.concatenate([data.view(np.uint8).reshape(h, -1), np.zeros((h, row_padding), np.uint8)], axis=1)
    msg = PointCloud2(height=h, width=w, is_bigendian=True, point_step=32, row_step=w * 32 + row_padding)
    msg.fields = [
        PointField(name="z", offset=0, datatype=PointField.FLOAT64, count=1),
        PointField(name="x", offset=8, datatype=PointField.FLOAT64, count=1),
        PointField(name="y", offset=16, datatype=PointField.FLOAT64, count=1),
    ]
    msg.data = rows.tobytes()
    out = conv.pointcloud2_to_points(msg)
    expected = xyz.reshape(-1, 3)
    expected = expected[np.all(np.isfinite(expected), axis=1)]
    np.testing.assert_allclose(out.xyz, expected.astype(np.float32))
    assert len(conv.pointcloud2_to_points(msg, skip_nans=False).xyz) == h * w
    msg.fields = msg.fields[:2]
    with pytest.raises(InputError, match="'y'"):
        conv.pointcloud2_to_points(msg)


def test_mesh_round_trip_and_validation() -> None:
    v = RNG.normal(size=(4, 3))
    f = np.array([[0, 1, 2], [0, 2, 3]])
    v2, f2 = conv.msg_to_mesh(conv.mesh_to_msg(v, f))
    np.testing.assert_allclose(v2, v)
    np.testing.assert_array_equal(f2, f)
    with pytest.raises(InputError, match="indices"):
        conv.mesh_to_msg(v, np.array([[0, 1, 4]]))
    with pytest.raises(InputError, match="NaN"):
        conv.mesh_to_msg(np.full((3, 3), np.nan), np.array([[0, 1, 2]]))


@pytest.mark.parametrize("frame_id", ["", "cam", "camera_color_optical_frame", "wörld"])
def test_reconstruction_cdr_equals_the_message_serialised_by_rclpy(frame_id: str) -> None:
    """The numpy-written mesh (reconstruction_to_cdr) gives the message rclpy serialises from Point objects, for odd
    and even face counts (the alignment of every later field depends on them) and for empty meshes."""
    pytest.importorskip("z123_interfaces")
    from rclpy.serialization import deserialize_message, serialize_message
    from z123_interfaces.msg import ObjectReconstruction, StageTiming

    from z123_ros.reconstruction import ReconstructionResult

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = 17, 5
    for n_vertices, n_faces in [(0, 0), (3, 0), (3, 1), (4, 2), (50, 97), (3000, 6001)]:
        v = RNG.normal(size=(n_vertices, 3))
        f = RNG.integers(0, max(n_vertices, 1), (n_faces, 3))
        points = RNG.normal(size=(40, 3)).astype(np.float32)
        result = ReconstructionResult(
            vertices=v,
            faces=f,
            points=points,
            metric=True,
            frame="camera",
            backend="depth",
            confidence=0.6,
            timings={"mesh": 0.5},
            centre=np.zeros(3),
            extent_m=np.ones(3),
        )
        msg = conv.reconstruction_to_msg(result, 7, header, mesh=(np.zeros((0, 3)), np.zeros((0, 3), int)))
        msg.timings = [StageTiming(stage="pipeline.x", seconds=0.25)]
        fast = conv.reconstruction_to_cdr(msg, v, f)
        assert len(msg.mesh.vertices) == 0  # the message itself is left as it was
        reference = conv.reconstruction_to_msg(result, 7, header)
        reference.timings = msg.timings
        expected = serialize_message(reference)
        # Byte for byte but for CDR padding, whose content is unspecified: compare the decoded messages.
        assert len(fast) == len(expected)
        decoded = deserialize_message(fast, ObjectReconstruction)
        assert decoded == deserialize_message(expected, ObjectReconstruction), (n_vertices, n_faces)
        v2, f2 = conv.msg_to_mesh(decoded.mesh)
        np.testing.assert_array_equal(v2, v)
        np.testing.assert_array_equal(f2, f)


def test_prebuilt_marker_points_equal_the_converted_mesh() -> None:
    v = RNG.normal(size=(10, 3))
    f = RNG.integers(0, 10, (7, 3))
    header = Header(frame_id="cam")
    built = conv.mesh_marker_array([conv.MarkerObject(1, v, f, "a")], header)
    cached = conv.mesh_marker_array([conv.MarkerObject(1, v, f, "a", points=conv.marker_points(v, f))], header)
    assert built == cached and len(built.markers[1].points) == 21


@pytest.mark.parametrize("frame_id", ["", "c", "cam", "camera_color_optical_frame"])
def test_marker_array_cdr_decodes_to_the_message_built_point_by_point(frame_id: str) -> None:
    """The numpy-written marker points land where rclpy puts them, for any frame_id and label length and mesh size
    (they move every later field): decoded, the bytes equal the MarkerArray built point by point."""
    from rclpy.serialization import deserialize_message, serialize_message
    from visualization_msgs.msg import MarkerArray

    header = Header(frame_id=frame_id)
    objects = []
    for k, n_faces in enumerate([1, 2, 3, 40, 501]):
        v = RNG.normal(size=(n_faces + 2, 3))
        f = RNG.integers(0, len(v), (n_faces, 3))
        points = conv.marker_points(v, f) if k % 2 else None  # prebuilt or not
        objects.append(conv.MarkerObject(k + 3, v, f, "x" * k, points=points))
    for subset in (objects, objects[:1], objects[3:], []):
        fast = deserialize_message(conv.mesh_marker_array_cdr(subset, header), MarkerArray)
        # Compared decoded (the colours are float32 on the wire), and not byte for byte (CDR padding is unspecified).
        assert fast == deserialize_message(serialize_message(conv.mesh_marker_array(subset, header)), MarkerArray)
        meshes = [m for m in fast.markers if m.type == Marker.TRIANGLE_LIST]
        for obj, marker in zip(subset, meshes, strict=True):
            got = np.array([(p.x, p.y, p.z) for p in marker.points])
            np.testing.assert_array_equal(got, obj.vertices[obj.faces.reshape(-1)])


def test_marker_array_cdr_of_an_empty_mesh_is_the_ordinary_serialisation() -> None:
    from rclpy.serialization import serialize_message

    header = Header(frame_id="cam")
    objects = [conv.MarkerObject(1, np.zeros((0, 3)), np.zeros((0, 3), int), "empty")]
    assert conv.mesh_marker_array_cdr(objects, header) == serialize_message(conv.mesh_marker_array(objects, header))


def test_marker_array_triangles_and_labels() -> None:
    v = np.array([[0, 0, 1], [0.1, 0, 1], [0, 0.1, 1], [0.1, 0.1, 1.0]])
    f = np.array([[0, 1, 2], [1, 3, 2]])
    header = Header(frame_id="cam")
    arr = conv.mesh_marker_array([conv.MarkerObject(3, v, f, "mug")], header)
    kinds = [m.type for m in arr.markers]
    assert arr.markers[0].action == Marker.DELETEALL
    assert Marker.TRIANGLE_LIST in kinds and Marker.TEXT_VIEW_FACING in kinds
    tri = arr.markers[kinds.index(Marker.TRIANGLE_LIST)]
    assert len(tri.points) == 6 and tri.header.frame_id == "cam" and tri.id == 6
    np.testing.assert_allclose([tri.points[4].x, tri.points[4].y, tri.points[4].z], v[3])
    assert arr.markers[kinds.index(Marker.TEXT_VIEW_FACING)].text == "mug"


def test_segmentation_and_reconstruction_messages() -> None:
    pytest.importorskip("z123_interfaces")
    from z123_ros.reconstruction import ReconstructionResult
    from z123_ros.segmentation.types import FrameSegmentation, SegmentedObject

    mask = np.zeros((20, 30), bool)
    mask[5:9, 10:16] = True
    obj = SegmentedObject(
        id=4,
        mask=mask,
        box_xyxy=(10, 5, 16, 9),
        centroid_cam=np.array([0.1, 0.0, 0.5]),
        extent_m=np.array([0.05, 0.04, 0.03]),
        score=0.9,
        method="rgbd_tabletop",
    )
    frame = FrameSegmentation(objects=[obj], plane_cam=np.array([0, -0.7, -0.7, 0.4]), camera_polar_deg=45.0)
    header = Header(frame_id="cam")
    msg = conv.segmentation_to_msg(frame, header)
    seg = msg.objects[0]
    assert msg.has_plane and msg.header.frame_id == "cam" and msg.camera_polar_deg == 45.0
    assert (seg.id, seg.box.x_offset, seg.box.y_offset, seg.box.width, seg.box.height) == (4, 10, 5, 6, 4)
    assert seg.has_3d and abs(seg.centroid.z - 0.5) < 1e-9
    assert (conv.image_to_numpy(seg.mask) == 255).all()

    v = np.array([[0, 0, 0.5], [0.1, 0, 0.5], [0, 0.1, 0.5]], np.float32)
    result = ReconstructionResult(
        vertices=v,
        faces=np.array([[0, 1, 2]], np.int32),
        points=v,
        metric=True,
        frame="camera",
        backend="depth",
        confidence=0.7,
        timings={"complete": 0.1, "mesh": 0.02},
        centre=v.mean(0),
        extent_m=np.ptp(v, axis=0),
    )
    rec = conv.reconstruction_to_msg(result, 4, header)
    assert rec.object_id == 4 and rec.metric and rec.backend == "depth"
    assert [t.stage for t in rec.timings] == ["complete", "mesh"]
    np.testing.assert_allclose(conv.pointcloud2_to_points(rec.cloud).xyz, v)
    np.testing.assert_allclose(conv.msg_to_mesh(rec.mesh)[0], v, atol=1e-7)


def test_simplify_mesh_caps_faces_and_keeps_shape() -> None:
    import trimesh

    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.05)
    v, f = conv.simplify_mesh(sphere.vertices, sphere.faces, 2000)
    assert 1500 < len(f) <= 2000 and f.max() < len(v)
    radii = np.linalg.norm(v, axis=1)
    # Quadric collapses keep the vertices on the surface: the shape stays a 5 cm sphere.
    assert np.abs(radii - 0.05).max() < 0.001
    assert abs(trimesh.Trimesh(v, f).area / sphere.area - 1) < 0.02
    same_v, same_f = conv.simplify_mesh(sphere.vertices, sphere.faces, len(sphere.faces))
    np.testing.assert_array_equal(same_f, sphere.faces)
    # The markers' cheaper clustering caps faces too.
    v, f = conv.cluster_mesh(sphere.vertices, sphere.faces, 2000)
    assert 500 < len(f) <= 2000 and np.abs(np.linalg.norm(v, axis=1) - 0.05).max() < 0.005


def test_simplify_mesh_publishes_a_thin_wall_whole() -> None:
    from tests.test_simplify import thin_bowl
    from z123_ros.reconstruction.mesh import watertight
    from z123_ros.reconstruction.simplify import pieces

    bowl = thin_bowl()
    v, f = conv.simplify_mesh(bowl.vertices, bowl.faces, 3000)
    # Vertex clustering (the node's simplification before) merged the 1.5 mm wall's two faces here: not watertight.
    assert len(f) <= 3000 and watertight(f) == (True, True) and pieces(f) == 1


def test_simplify_mesh_rejects_bad_meshes() -> None:
    v = np.zeros((3, 3))
    for fn in (conv.simplify_mesh, conv.cluster_mesh):
        with pytest.raises(InputError, match="indices"):
            fn(v, np.array([[0, 1, 3]]), 100)
        with pytest.raises(InputError, match="NaN"):
            fn(np.full((3, 3), np.nan), np.array([[0, 1, 2]]), 100)
        with pytest.raises(InputError, match="faces must be"):
            fn(v, np.array([[0, 1]]), 100)
