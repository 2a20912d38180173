"""From a robot's view to the Zero-1-to-3 input: crop, 200 px object on a 256 white canvas, transform, input polar."""

from __future__ import annotations

import numpy as np
import pytest

from z123_ros.camera import CameraIntrinsics, invert, look_at, orbit_pose, transform_points
from z123_ros.errors import CameraError, InputError
from z123_ros.novel_views import input_polar_deg, preprocess_for_zero123


def _scene(h=240, w=320, box=(100, 60, 180, 200), colour=(200, 30, 40)):
    rgb = np.full((h, w, 3), 60, np.uint8)  # grey background that must disappear
    mask = np.zeros((h, w), bool)
    x0, y0, x1, y1 = box
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    rgb[mask] = colour
    return rgb, mask


def test_object_longer_side_200_centred_on_white():
    rgb, mask = _scene(box=(100, 60, 180, 200))  # 81 x 141 px, taller than wide
    inp = preprocess_for_zero123(rgb, mask)
    assert inp.image.shape == (256, 256, 3) and inp.image.dtype == np.uint8
    v, u = np.nonzero(inp.mask)
    assert v.max() - v.min() + 1 == 200  # longer side
    assert abs((u.max() - u.min() + 1) - round(81 * 200 / 141)) <= 1
    assert abs((v.min() + v.max()) / 2 - 127.5) <= 1 and abs((u.min() + u.max()) / 2 - 127.5) <= 1
    assert (inp.image[~inp.mask] >= 250).all() or np.mean(inp.image[~inp.mask] == 255) > 0.98  # white, not grey
    assert np.all(inp.image[128, 128] == (200, 30, 40))
    assert inp.box_xyxy == (100, 60, 180, 200)


def test_transform_maps_original_pixels_and_back():
    rgb, mask = _scene(box=(100, 60, 180, 200))
    inp = preprocess_for_zero123(rgb, mask)
    # The box's outer pixel edges land on the object's edges in the canvas (pixel-centre convention).
    corners = inp.to_input(np.array([[99.5, 59.5], [180.5, 200.5]]))
    v, u = np.nonzero(inp.mask)
    np.testing.assert_allclose(corners[0], [u.min() - 0.5, v.min() - 0.5], atol=0.6)
    np.testing.assert_allclose(corners[1], [u.max() + 0.5, v.max() + 0.5], atol=0.6)
    pts = np.array([[120.0, 80.0], [150.3, 190.7]])
    np.testing.assert_allclose(inp.to_original(inp.to_input(pts)), pts, atol=1e-9)


def test_crop_intrinsics_project_like_the_original_camera_then_the_transform():
    intr = CameraIntrinsics.from_fov(60.0, 320, 240)
    rgb, mask = _scene()
    inp = preprocess_for_zero123(rgb, mask, intrinsics=intr)
    points = np.array([[0.01, -0.02, 0.5], [-0.03, 0.04, 0.7]])
    np.testing.assert_allclose(inp.intrinsics.project(points), inp.to_input(intr.project(points)), atol=1e-9)


def test_upscaling_small_objects_and_object_size_option():
    rgb, mask = _scene(box=(10, 10, 29, 19))  # 20 x 10 px
    inp = preprocess_for_zero123(rgb, mask, size=128, object_size=100)
    v, u = np.nonzero(inp.mask)
    assert u.max() - u.min() + 1 == 100 and v.max() - v.min() + 1 == 50


def _camera_over_table(polar_deg, h=240, w=320):
    """A camera at ``polar_deg`` over a 10 cm box on the table (world z = 0), with its mask, depth and plane."""
    intr = CameraIntrinsics.from_fov(60.0, w, h)
    T_world_from_cam = orbit_pose(polar_deg, 30.0, 0.8, target=(0.0, 0.0, 0.05))
    T_cam_from_world = invert(T_world_from_cam)
    # Sample the box surface, project to get a mask and a depth image.
    g = np.linspace(-0.05, 0.05, 41)
    xx, yy, zz = np.meshgrid(g, g, g + 0.05, indexing="ij")
    pts_cam = transform_points(T_cam_from_world, np.stack([xx, yy, zz], -1).reshape(-1, 3))
    uv = np.round(intr.project(pts_cam)).astype(int)
    mask = np.zeros((h, w), bool)
    depth = np.full((h, w), np.nan, np.float32)
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    for (u, v), z in zip(uv[ok], pts_cam[ok, 2], strict=True):
        mask[v, u] = True
        depth[v, u] = z if np.isnan(depth[v, u]) else min(depth[v, u], z)
    n_cam = T_cam_from_world[:3, :3] @ np.array([0.0, 0.0, 1.0])
    plane = np.append(n_cam, -n_cam @ T_cam_from_world[:3, 3])
    return intr, T_cam_from_world, mask, depth, plane


@pytest.mark.parametrize("polar", [35.0, 60.0, 80.0])
def test_input_polar_from_plane_extrinsics_and_depth(polar):
    intr, T_cam_from_world, mask, depth, plane = _camera_over_table(polar)
    # With depth: the object centre is located in 3D; the camera looks at it, so the polar is exact up to sampling.
    assert input_polar_deg(mask, intr, depth_m=depth, plane_cam=plane) == pytest.approx(polar, abs=2.0)
    assert input_polar_deg(mask, intr, depth_m=depth, T_cam_from_world=T_cam_from_world) == pytest.approx(
        polar, abs=2.0
    )
    # Without depth the mask centroid's ray meets the table behind the object: a few degrees more grazing.
    from_plane = input_polar_deg(mask, intr, plane_cam=plane)
    assert from_plane == pytest.approx(input_polar_deg(mask, intr, T_cam_from_world=T_cam_from_world), abs=1e-6)
    assert polar - 1.0 <= from_plane <= polar + 8.0
    # The sign of the plane equation does not matter.
    assert input_polar_deg(mask, intr, plane_cam=-plane) == pytest.approx(from_plane, abs=1e-9)
    rgb = np.full(mask.shape + (3,), 128, np.uint8)
    assert preprocess_for_zero123(rgb, mask, intrinsics=intr, plane_cam=plane).input_polar_deg == pytest.approx(
        from_plane
    )


def test_polar_is_none_without_pose_and_errors_are_named():
    rgb, mask = _scene()
    assert preprocess_for_zero123(rgb, mask).input_polar_deg is None
    with pytest.raises(InputError, match="empty"):
        preprocess_for_zero123(rgb, np.zeros_like(mask))
    with pytest.raises(InputError, match="mask shape"):
        preprocess_for_zero123(rgb, mask[:-1])
    with pytest.raises(InputError, match="uint8"):
        preprocess_for_zero123(rgb.astype(np.float32), mask)
    with pytest.raises(CameraError, match="intrinsics"):
        preprocess_for_zero123(rgb, mask, plane_cam=np.array([0, -1, 0, 1.0]))
    intr = CameraIntrinsics.from_fov(60.0, 320, 240)
    with pytest.raises(CameraError, match="plane"):
        preprocess_for_zero123(rgb, mask, intrinsics=intr, plane_cam=np.array([0, 0, 0, 1.0]))
    T = look_at(np.array([0, 0, 1.0]), np.zeros(3))  # camera above, looking down; the ray hits z = 0
    assert input_polar_deg(mask, intr, T_cam_from_world=invert(T)) < 20.0


def test_rendered_tabletop_object_gives_the_camera_polar():
    """A YCB object rendered on the table (z123_ros.sim): the input polar from depth + extrinsics, or from the table
    plane alone, matches the polar of the camera over the object's true centre."""
    sim = pytest.importorskip("z123_ros.sim", reason="the sim package is not available")
    from z123_ros.camera import polar_from_extrinsics

    scene = sim.render_tabletop_scene(
        sim.SceneConfig(seed=3, num_objects=1, width=320, height=240, camera_height_m=0.45, camera_distance_m=0.5)
    )
    obj = scene.objects[0]
    mask = scene.instance_ids == obj.id
    truth = polar_from_extrinsics(scene.T_cam_from_world, obj.mesh_world.bounds.mean(axis=0))
    inp = preprocess_for_zero123(
        scene.rgb, mask, intrinsics=scene.intrinsics, depth_m=scene.depth_m, T_cam_from_world=scene.T_cam_from_world
    )
    # The median visible surface point lies on the camera's side of the centre: a few degrees of bias at most.
    assert inp.input_polar_deg == pytest.approx(truth, abs=4.0)
    T = scene.T_cam_from_world
    n_cam = T[:3, :3] @ np.array([0.0, 0.0, 1.0])
    plane = np.append(n_cam, -n_cam @ T[:3, 3])
    from_plane = preprocess_for_zero123(scene.rgb, mask, intrinsics=scene.intrinsics, plane_cam=plane).input_polar_deg
    assert from_plane == pytest.approx(truth, abs=8.0)
    v, u = np.nonzero(inp.mask)
    assert max(v.max() - v.min(), u.max() - u.min()) + 1 == 200
