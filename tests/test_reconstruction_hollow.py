"""Open containers in the ``depth`` backend (reconstruction/hollow.py): thin walls placed on the right side.

The seeded cases failed on the code before the thin wall (issue 15, item 2): walls came out 5-8 mm thick around
1.2-2 mm YCB shells (the bowl from above lost to the hull on F@5mm: 0.758 vs 0.821). ``2 V / A`` of a closed thin
shell is its mean thickness (volume over half its surface area).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from tests._reconstruction_helpers import (
    condition_object_view,
    evaluate_in_world,
    mesh_pieces,
    render_condition_view,
    single_shell_view,
)
from z123_ros.evaluation.conditions import ConditionsConfig, mesh_metrics
from z123_ros.reconstruction import ReconstructionInput, hollow, reconstruct
from z123_ros.reconstruction.base import DepthBackendConfig
from z123_ros.reconstruction.depth_backend import _Grid, _handle, _unseen_wall, apply_transform, complete_from_depth
from z123_ros.reconstruction.hollow import (
    fit_container,
    inward_normals,
    may_be_within,
    register_mirror,
    revolution_agrees,
    rim_thickness,
    wall_field,
    within_rim,
)
from z123_ros.reconstruction.mesh import extract_mesh
from z123_ros.reconstruction.metrics import occupancy


def _ring(radius: float, width: float, height: float, step: float) -> np.ndarray:
    """Points on the top of a ring (a rim) of the given width, sampled every ``step`` metres."""
    xs = np.arange(-radius - width, radius + width, step)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    r = np.hypot(x, y)
    keep = (r >= radius) & (r <= radius + width)
    return np.stack([x[keep], y[keep], np.full(keep.sum(), height)], axis=1)


def test_rim_thickness_measures_the_band_across_the_rim() -> None:
    # Bands up to three pixels wide are measured (wider ones read low: the 12 neighbours no longer span them).
    for width in (0.0015, 0.002, 0.003):
        rim = _ring(0.05, width, 0.06, 0.001)  # a pixel's footprint at 0.6 m
        below = rim[::3] * [1.0, 1.0, 0.0] + [0.0, 0.0, 0.03]  # wall points far below the rim: not in the band
        measured = rim_thickness(np.concatenate([rim, below]), band_m=0.002)
        assert measured == pytest.approx(width, rel=0.15)


def test_wall_field_is_a_slab_behind_the_seen_surface() -> None:
    # A seen plane z = 0 whose material lies below it (normals -z): the field is above 0.5 for 0 < -z < t only.
    xs = np.arange(-0.02, 0.02, 0.001)
    x, y = np.meshgrid(xs, xs, indexing="ij")
    seen = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)
    normals = np.tile([0.0, 0.0, -1.0], (len(seen), 1))
    z = np.arange(-0.006, 0.002, 0.0005)
    probes = np.stack([np.zeros_like(z), np.zeros_like(z), z], axis=1)
    field = wall_field(probes, 0.001, seen, normals, None, None, thickness=0.003)
    inside = z[field > 0.5]
    assert inside.min() == pytest.approx(-0.003, abs=0.0006) and inside.max() == pytest.approx(0.0, abs=0.0006)


def test_register_mirror_moves_the_image_one_thickness_beyond_the_seen_face() -> None:
    # The seen inside of a far wall at x = 0 (material towards +x) and the mirrored outside of the same wall at
    # x = 0.001 facing -x: with a 3 mm wall the image belongs at x = 0.003, a 2 mm shift along +x.
    ys, zs = np.meshgrid(np.arange(0, 0.03, 0.001), np.arange(0, 0.03, 0.001), indexing="ij")
    seen = np.stack([np.zeros(ys.size), ys.ravel(), zs.ravel()], axis=1)
    seen_n = np.tile([1.0, 0.0, 0.0], (len(seen), 1))
    mirrored = seen + [0.001, 0.0, 0.0]
    shift = register_mirror(seen, seen_n, mirrored, -seen_n, thickness=0.003, voxel=0.001)
    assert shift == pytest.approx([0.002, 0.0, 0.0], abs=1e-4)


def test_within_rim_separates_a_handle_from_the_wall() -> None:
    rim = _ring(0.04, 0.002, 0.08, 0.001)
    xy = np.array([[0.0, 0.0], [0.041, 0.0], [0.06, 0.0]])  # centre, on the wall, a handle 2 cm outside
    assert within_rim(rim, 0.002, xy, margin_m=0.004).tolist() == [True, True, False]


def _thin_shell_case(name: str, range_m: float, elevation_deg: float):
    view = render_condition_view(name, range_m, elevation_deg, seed=3)
    depth, hull = reconstruct(view.inp, "depth"), reconstruct(view.inp, "hull")
    m_depth, m_hull = evaluate_in_world(depth, view, 5000), evaluate_in_world(hull, view, 5000)
    mesh = trimesh.Trimesh(depth.vertices, depth.faces)
    assert "hollow" in depth.info["prior"]
    assert mesh_pieces(depth) == 1 and depth.watertight
    assert m_depth["iou"] > m_hull["iou"] and m_depth["chamfer"] < m_hull["chamfer"]
    assert m_depth["f_score"] > m_hull["f_score"]
    return depth, mesh, view


def test_bowl_seen_from_above_is_a_thin_wall() -> None:
    # 0.6 m, 70 deg: before, a 7.7 mm wall (truth 1.2 mm) and F@5mm 0.758, below the hull's 0.821.
    _, mesh, _ = _thin_shell_case("024_bowl", 0.6, 70.0)
    assert 2.0 * mesh.volume / mesh.area < 0.006


def test_cup_from_low_elevation_is_a_thin_wall() -> None:
    # 0.5 m, 20 deg: the far wall comes from the near wall's mirror image. Before: 5.3 mm walls (truth 1.8 mm).
    _, mesh, _ = _thin_shell_case("065-a_cups", 0.5, 20.0)
    assert 2.0 * mesh.volume / mesh.area < 0.0046


def test_mug_from_45_deg_is_a_thin_wall_with_its_handle() -> None:
    # 0.6 m, 45 deg. Before: 5.5 mm walls (truth 1-1.5 mm above its foot). As a thin skin of its visible side the
    # handle came off as a fragment; it is completed as a solid beside the opening. The wall is measured along 16
    # radii from the scan's axis above its inner shelf (40 mm up; below it the scan is solid inside, and so is the
    # wall: test_the_wall_reaches_in_to_the_cavity_seen_above_it): 3.4 mm (the grid's voxel 1.1 mm, the IoU probe's
    # 0.2 mm steps).
    depth, mesh, view = _thin_shell_case("025_mug", 0.6, 45.0)
    assert mesh.extents.max() > 0.95 * view.gt_mesh_world.extents.max()  # the handle is kept
    world = trimesh.Trimesh(apply_transform(np.linalg.inv(view.T_cam_from_world), depth.vertices), depth.faces)
    gt = view.gt_mesh_world
    axis = gt.vertices[gt.vertices[:, 2] > gt.bounds[1, 2] - 0.005, :2].mean(axis=0)
    radius, step = np.arange(0.02, 0.06, 0.0002), 0.0002
    for height in (0.05, 0.065):
        walls = []
        for phi in np.arange(0.0, 2 * np.pi, np.pi / 8):
            ray = axis + radius[:, None] * [np.cos(phi), np.sin(phi)]
            probes = np.column_stack([ray, np.full(len(radius), gt.bounds[0, 2] + height)])
            walls.append(np.count_nonzero(occupancy(world, probes)) * step)
        assert np.median(walls) < 0.0045


def test_the_wall_fields_lookups_skip_only_centres_out_of_reach() -> None:
    """wall_field looks up only the centres may_be_within keeps: every centre within reach of a point is kept (so
    the field is the one of looking up every centre), including ones exactly ``reach`` away along an axis or a
    diagonal, and most far ones are skipped."""
    rng = np.random.default_rng(11)
    points = rng.normal(0.0, 0.03, (2000, 3))
    reach = 0.0056
    queries = np.concatenate(
        [
            rng.uniform(-0.15, 0.15, (200_000, 3)),
            points[:300] + reach * np.array([1.0, 0.0, 0.0]),
            points[300:600] - reach * np.array([0.0, 0.0, 1.0]),
            points[600:900] + reach * np.ones(3) / np.sqrt(3.0),
        ]
    )
    kept = may_be_within(points, queries, reach)
    dist, _ = cKDTree(points).query(queries, distance_upper_bound=reach * (1 + 1e-9))
    within = np.isfinite(dist)
    assert within[-900:].all() and kept[within].all()
    assert kept.mean() < 0.5  # far centres are skipped (else it would save nothing)


def test_the_rim_test_per_column_equals_the_test_per_voxel() -> None:
    """_thin_wall asks within_rim once per column of the container grid and repeats the answer up the column: the
    same as asking for every voxel centre (C order over the grid: the column index varies slowest)."""
    rim = _ring(0.04, 0.003, 0.1, 0.002)
    nx, ny, nz = 40, 30, 12
    idx = np.stack(np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij"), axis=-1).reshape(-1, 3)
    centres = idx * 0.0031 + np.array([-0.06, -0.05, 0.0])
    columns = centres.reshape(nx, ny, nz, 3)[:, :, 0, :2].reshape(-1, 2)
    per_voxel = within_rim(rim, 0.004, centres[:, :2], 0.005)
    assert np.array_equal(np.repeat(within_rim(rim, 0.004, columns, 0.005), nz), per_voxel)
    assert 0 < per_voxel.mean() < 1


def _seen_cup(centre, radius, wall, height, camera, step=0.001, oval=1.0):
    """Points of an open cylindrical cup (plane frame) as a camera above it sees them: the near wall's outside, the
    far wall's inside down to where the near rim hides it, the rim's top. ``oval`` stretches it along y."""
    cam = np.asarray(camera, dtype=float)
    out = []
    for r, face in ((radius + wall / 2, 1.0), (radius - wall / 2, -1.0)):
        phi = np.arange(0.0, 2 * np.pi, step / r)
        z = np.arange(0.0, height, step)
        phi, z = (a.ravel() for a in np.meshgrid(phi, z, indexing="ij"))
        p = np.stack([centre[0] + r * np.cos(phi), centre[1] + oval * r * np.sin(phi), z], axis=1)
        facing = face * np.einsum("ni,ni->n", np.stack([np.cos(phi), np.sin(phi)], 1), cam[:2] - p[:, :2]) > 0
        if face < 0:  # the far inside shows through the opening, down to the line of sight over the near rim
            slope = (cam[2] - height) / np.linalg.norm(cam[:2] - centre)
            facing &= p[:, 2] > height - 2 * r * slope
        out.append(p[facing])
    ring = _ring(radius - wall / 2, wall, height, step) + [centre[0], centre[1], 0.0]
    ring[:, 1] = centre[1] + oval * (ring[:, 1] - centre[1])
    return np.concatenate([*out, ring])


def test_fit_container_measures_the_wall_between_its_two_faces() -> None:
    # A 1.5 mm wall, 1 mm sampling: the rim's band reads it to a pixel at best; the two faces at one height, revolved
    # about the fitted axis, differ by the wall. The rim's circle alone sits towards the camera (near side: outside,
    # far side: inside); the axis is refined on both faces.
    centre, camera = np.array([0.012, -0.004]), np.array([-0.45, 0.0, 0.45])
    points = _seen_cup(centre, 0.035, 0.0015, 0.08, camera)
    rev = fit_container(points, inward_normals(points, camera), 0.002, (0.0005, 0.005), 0.005)
    assert rev is not None
    assert np.linalg.norm(rev.centre - centre) < 3e-4
    assert rev.wall == pytest.approx(0.0015, abs=4e-4)
    assert rev.residual < 5e-4


def test_fit_container_rejects_an_oval_rim() -> None:
    # An oval dish is no surface of revolution: no fit, the caller keeps the mirrored wall.
    camera = np.array([-0.45, 0.0, 0.45])
    points = _seen_cup(np.zeros(2), 0.035, 0.0015, 0.05, camera, oval=1.6)
    assert fit_container(points, inward_normals(points, camera), 0.002, (0.0005, 0.005), 0.005) is None


def test_revolution_agrees_with_the_free_space_or_not() -> None:
    field = np.array([0.9, 0.9, 0.9, 0.9, 0.1])
    assert revolution_agrees(field, np.array([True, True, True, True, False]))
    assert not revolution_agrees(field, np.array([True, True, False, False, True]))


def test_cup_and_mug_are_revolved_from_both_faces() -> None:
    # Seeded cases that failed before the revolved wall (64^3 IoU, 320x240): cup 0.5 m / 45 deg 0.346 (hull 0.123),
    # mug 0.6 m / 45 deg 0.278 (hull 0.231, Chamfer 3.66 mm); revolved: 0.49 and 0.48, mug Chamfer 2.3 mm.
    for name, floor in (("065-a_cups", 0.44), ("025_mug", 0.42)):
        depth, _, _ = _thin_shell_case(name, 0.5 if name == "065-a_cups" else 0.6, 45.0)
        assert "revolved" in depth.info["prior"]
        view = render_condition_view(name, 0.5 if name == "065-a_cups" else 0.6, 45.0, seed=3)
        assert evaluate_in_world(depth, view, 5000)["iou"] > floor


def test_mirrored_wall_when_the_revolution_contradicts_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    # Guard of the fallback: a revolution that disagrees with the free space (here: every one) gives the mirrored
    # wall of before, still one watertight piece with its handle, at a lower confidence than the revolved wall.
    revolved = reconstruct(render_condition_view("025_mug", 0.6, 45.0, seed=3).inp, "depth")
    monkeypatch.setattr(hollow, "_MAX_FREE_FRACTION", -1.0)
    depth, mesh, view = _thin_shell_case("025_mug", 0.6, 45.0)
    assert "revolved" not in depth.info["prior"]
    assert mesh.extents.max() > 0.95 * view.gt_mesh_world.extents.max()
    assert depth.confidence < revolved.confidence


def test_noisy_sensor_walls_take_their_faces_from_the_revolved_profile() -> None:
    # Active stereo at 0.6 m: ~1.5 mm depth noise on a 1-2 mm wall. A point's own normal (its dozen neighbours) read
    # the near wall's outside as an inside and left points on neither face; the revolved profile's normal, on the
    # side away from the camera, tells them apart. Seeded views scored as the conditions benchmark scores (32^3 IoU),
    # before -> after: cup 45 deg 0.347 -> 0.429, bowl 55 deg 0.134 -> 0.168 (hull ~0.1 and ~0.03).
    config = ConditionsConfig()
    for name, elevation_deg, seed, floor in (("065-a_cups", 45.0, 1, 0.39), ("024_bowl", 55.0, 3, 0.15)):
        inp, gt = single_shell_view(name, "active_stereo", seed, 0.6, elevation_deg)
        result = reconstruct(inp, "depth")
        assert "revolved" in result.info["prior"]
        pred = trimesh.Trimesh(np.asarray(result.vertices, float), np.asarray(result.faces, np.int64), process=False)
        assert mesh_metrics(pred, gt, config)["iou"] > floor


@pytest.mark.parametrize("elevation_deg", [45.0, 70.0])
def test_bowl_wall_is_thinner_than_the_container_grid_holds(elevation_deg: float) -> None:
    # The container grid (96 voxels along the bowl's 17 cm box: 1.8 mm) holds walls of 1.5 voxels at least: the
    # 1.2 mm bowl came out 3.1 mm (45 deg) and 3.6 mm thick (70 deg: its outside hidden, the wall was the rim's
    # reading, 3.5 mm). The field and the checks keep the held wall; the mesh's vertices are moved onto the measured
    # wall after (hollow.thin_wall_vertices), and the wall whose outside is unseen lies between a rigid container's
    # thinnest and the rim's reading.
    depth, mesh, view = _thin_shell_case("024_bowl", 0.45, elevation_deg)
    assert "revolved" in depth.info["prior"]
    cfg = DepthBackendConfig()
    grid_voxel = (view.gt_mesh_world.extents.max() + 2 * cfg.margin_m) / cfg.resolution
    assert 2.0 * mesh.volume / mesh.area < 1.5 * grid_voxel


def test_unseen_wall_is_the_geometric_mean_of_its_bounds() -> None:
    cfg = DepthBackendConfig()
    assert _unseen_wall(0.004, 0.0005, cfg) == pytest.approx(np.sqrt(cfg.hollow_min_wall_m * 0.004))
    assert _unseen_wall(float("nan"), 0.0005, cfg) == pytest.approx(np.sqrt(cfg.hollow_min_wall_m * cfg.hollow_wall_m))
    assert _unseen_wall(0.0005, 0.002, cfg) == pytest.approx(0.002)  # never below what the grid holds


def test_thin_wall_vertices_bring_both_faces_of_a_held_wall_to_the_measured_one() -> None:
    # A cylinder's wall seen on both faces 2 mm apart, held 3 mm thick behind each (the grid's thinnest): each
    # face's thick wall reaches 1 mm past the other face. Its mesh's vertices come back onto the faces; a vertex
    # beyond (a handle) stays. Where one face alone was seen, the depth behind it scales to the measured wall.
    z = np.linspace(0.0, 0.05, 26)
    outer = np.stack([np.full_like(z, 0.040), z], axis=1)
    inner = np.stack([np.full_like(z, 0.038), z], axis=1)
    normals = np.concatenate([np.tile([-1.0, 0.0], (26, 1)), np.tile([1.0, 0.0], (26, 1))])
    thick = hollow.Revolution(np.zeros(2), np.concatenate([outer, inner]), normals, np.full(52, 0.003), 0.003, 0.0)
    thin = hollow.Revolution(np.zeros(2), thick.points, normals, np.full(52, 0.002), 0.002, 0.0)
    angle = np.linspace(0.0, 2 * np.pi, 7)
    vertices = np.concatenate(
        [np.stack([rad * np.cos(angle), rad * np.sin(angle), np.full(7, 0.02)], axis=1) for rad in (0.037, 0.041, 0.05)]
    )
    moved = hollow.thin_wall_vertices(vertices, thick, thin, 0.001)
    radius = np.linalg.norm(moved[:, :2], axis=1)
    np.testing.assert_allclose(radius, np.repeat([0.038, 0.040, 0.05], 7), atol=1e-9)
    np.testing.assert_allclose(moved[:, 2], 0.02)
    one_face = hollow.Revolution(np.zeros(2), inner, normals[26:], np.full(26, 0.003), 0.003, 0.0)
    moved = hollow.thin_wall_vertices(
        vertices[7:14], one_face, dataclasses.replace(one_face, thickness=np.full(26, 0.0015)), 0.001
    )
    np.testing.assert_allclose(np.linalg.norm(moved[:, :2], axis=1), 0.0395, atol=1e-9)


def test_thin_wall_vertices_leave_a_handle_beyond_the_walls_reach() -> None:
    # One face seen (an inside at r = 38 mm up to 50 mm high), held 3 mm behind it, measured 1.5 mm. A handle's root
    # vertex 3 mm behind the face but 5 mm above the wall's top is no vertex of the wall (farther than the held
    # wall and the 1 mm reach from every profile point): it stays (the old code scaled its depth, 3 -> 1.5 mm).
    # Just past the held wall the move fades out over the reach instead of stopping at once.
    z = np.linspace(0.0, 0.05, 26)
    inner = np.stack([np.full_like(z, 0.038), z], axis=1)
    wall = hollow.Revolution(np.zeros(2), inner, np.tile([1.0, 0.0], (26, 1)), np.full(26, 0.003), 0.003, 0.0)
    thin = dataclasses.replace(wall, thickness=np.full(26, 0.0015))
    handle = np.array([[0.041, 0.0, 0.055]])
    np.testing.assert_array_equal(hollow.thin_wall_vertices(handle, wall, thin, 0.001), handle)
    radii = np.array([0.041, 0.04125, 0.0415, 0.04175, 0.04199])
    moved = hollow.thin_wall_vertices(np.stack([radii, 0 * radii, np.full(5, 0.02)], axis=1), wall, thin, 0.001)
    r = moved[:, 0]
    np.testing.assert_allclose(r[:2], 0.0395, atol=1e-9)  # onto the measured wall within half the reach
    assert r[1] < r[2] < r[3] < r[4] and r[4] == pytest.approx(0.04199, abs=5e-5)  # in order: no face folds over


@pytest.mark.parametrize(
    ("name", "range_m", "elevation_deg"), [("024_bowl", 0.45, 45.0), ("024_bowl", 0.6, 20.0), ("025_mug", 0.45, 60.0)]
)
def test_thinning_the_wall_turns_no_face_over(name: str, range_m: float, elevation_deg: float) -> None:
    # Each vertex of the held wall's mesh moved along its own nearest profile point's normal: at the rim, the lip
    # (its thickness measured, 6 mm, beside 2.7 mm held walls thinned to 1.4) and a mug's handle, neighbours moved
    # apart by more than the voxel between them and 13-59 faces turned over (self-intersections no watertightness
    # check sees). The move is blended over the nearest profile points, limited to the held wall's reach, and a
    # turned face's vertices move less.
    inp, _ = single_shell_view(name, "ideal", 0, range_m, elevation_deg, azimuth_deg=30.0)
    completion, _ = complete_from_depth(inp, DepthBackendConfig())
    assert completion.thin_wall is not None
    mesh = extract_mesh(completion.surface_field, 0.5, completion.T_cam_from_index, smooth_sigma=0.0)
    before = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    after = trimesh.Trimesh(completion.thin_wall(before.vertices, before.faces), before.faces, process=False)
    assert np.mean(np.linalg.norm(after.vertices - before.vertices, axis=1) > 1e-4) > 0.3  # the wall was thinned
    turned = np.einsum("ni,ni->n", before.face_normals, after.face_normals) < 0.0
    assert np.count_nonzero(turned & (before.area_faces > 0)) == 0
    if elevation_deg == 20.0:
        # The bottom the camera did not see is a plate from the table up, as thick as the checks' grid holds (1.5
        # voxels): the held wall's plate lay half under the table, and the grid's floor cut it to 1.2 mm.
        T_cam_from_plane, held, _, voxel = completion.thin_wall.args
        p = apply_transform(np.linalg.inv(T_cam_from_plane), after.vertices)
        axis = (np.linalg.norm(p[:, :2] - held.centre, axis=1) < 0.01) & (p[:, 2] < 0.012)
        assert p[axis, 2].min() < 0.3 * voxel and p[axis, 2].max() - p[axis, 2].min() > 1.25 * voxel


def _box_top(x0: float, x1: float, y0: float, y1: float, z: float, step: float = 0.001) -> np.ndarray:
    x, y = np.meshgrid(np.arange(x0, x1, step), np.arange(y0, y1, step), indexing="ij")
    return np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], axis=1)


def test_the_inside_is_seen_through_the_opening_and_a_solids_side_is_not() -> None:
    # From 30 deg a cup shows the inside of its far wall (no inner bottom, which the height map of
    # _cavity_columns needs): those points are seen through the rim. A can (a lid on the same wall) and a lying
    # hammer (a head at each end, the handle between them lower) show none: a ray into the can passes its lid, and
    # the hammer's top is no ring around the handle.
    camera = np.array([-0.5, 0.0, 0.3])
    cup = _seen_cup(np.zeros(2), 0.035, 0.0015, 0.08, camera)
    assert hollow.seen_through_opening(cup, camera, 0.002, 0.012) > 0.05 * len(cup)
    can = np.concatenate(
        [cup[np.linalg.norm(cup[:, :2], axis=1) > 0.035], _box_top(-0.035, 0.035, -0.035, 0.035, 0.08)]
    )
    can = can[(np.linalg.norm(can[:, :2], axis=1) <= 0.0358) & ((can[:, 2] >= 0.08) | (can[:, 0] < 0))]
    assert hollow.seen_through_opening(can, camera, 0.002, 0.012) == 0
    hammer = np.concatenate(
        [
            _box_top(-0.06, -0.04, -0.01, 0.01, 0.04),
            _box_top(0.04, 0.06, -0.01, 0.01, 0.04),
            _box_top(-0.04, 0.04, -0.005, 0.005, 0.02),
        ]
    )
    # Seen from above its middle (from the side a head would hide the handle next to it).
    assert hollow.seen_through_opening(hammer, np.array([0.0, -0.1, 0.5]), 0.002, 0.012) == 0


def test_real_mug_seen_from_32_deg_is_less_confident_than_the_solids_beside_it() -> None:
    # YCB-Video dev frame 1: the mug (32 deg, partly hidden by the foam brick) shows only its far wall's inside; the
    # cavity test (an inner bottom below the rim) does not take it and it is filled solid: IoU 0.28 at confidence
    # 0.75, above the foam brick's 0.72 at IoU 0.85. Seen through its opening, it is flagged and less confident than
    # the brick and the gelatin box.
    from z123_ros.evaluation.real import DEFAULT_REAL_ROOT, load_real_frame

    folder = DEFAULT_REAL_ROOT / "ycbv-dev" / "0000_000001"
    if not folder.is_dir():
        pytest.skip(f"real dev frames not found at {folder}")
    frame = load_real_frame(folder)
    confidence, prior = {}, {}
    for obj in frame.objects:
        inp = ReconstructionInput(
            rgb=frame.rgb, mask=obj.mask, intrinsics=frame.intrinsics, depth_m=frame.depth_m, labels=frame.labels
        )
        result = reconstruct(inp, "depth")
        confidence[obj.name], prior[obj.name] = result.confidence, result.info["prior"]
    assert "+open" in prior["025_mug"]
    assert not any("+open" in p for name, p in prior.items() if name != "025_mug")
    assert confidence["025_mug"] < min(c for name, c in confidence.items() if name != "025_mug")


def _ledge_cup(camera: np.ndarray) -> np.ndarray:
    """``_seen_cup`` (35 mm, 1.5 mm wall, 80 mm tall) whose inside narrows over 50-60 mm to a 20 mm hole (a cone, its
    far side seen): below the ledge no inside shows, as inside the YCB mug's scan (a solid shelf 40 mm up)."""
    cup = _seen_cup(np.zeros(2), 0.035, 0.0015, 0.08, camera)
    cup = cup[~((np.linalg.norm(cup[:, :2], axis=1) < 0.035) & (cup[:, 2] < 0.06))]
    phi, z = (a.ravel() for a in np.meshgrid(np.arange(-0.5 * np.pi, 0.5 * np.pi, 0.03), np.arange(0.05, 0.06, 0.001)))
    radius = 0.02 + (0.03425 - 0.02) * (z - 0.05) / 0.01
    return np.concatenate([cup, np.stack([radius * np.cos(phi), radius * np.sin(phi), z], axis=1)])


def test_the_wall_reaches_in_to_the_cavity_seen_above_it() -> None:
    # A container's cavity does not widen downwards: below a ledge whose inside narrows to 20 mm, the material
    # reaches from the outside (35.75 mm) in to 20 mm. Before, the outside alone carried a 1.5 mm wall there, and the
    # benchmark's mug (a shelf 40 mm up inside the scan) lost the 43 % of its cells below it: IoU 0.298 (touching/0).
    # A cup whose inside was seen straight down keeps its 1.5 mm wall.
    camera = np.array([-0.45, 0.0, 0.45])
    for points, low_wall in (
        (_seen_cup(np.zeros(2), 0.035, 0.0015, 0.08, camera), 0.0015),
        (_ledge_cup(camera), 0.013),
    ):
        rev = fit_container(points, inward_normals(points, camera), 0.002, (0.0005, 0.005), 0.005, camera)
        assert rev is not None
        below = (rev.normals[:, 0] < -0.5) & ~rev.bottom & (rev.points[:, 1] < 0.045)
        assert np.median(rev.thickness[below]) == pytest.approx(low_wall, rel=0.1)


def test_a_point_alone_off_the_profile_carries_no_wall() -> None:
    # The conditions benchmark's border_cut/1 bowl (ideal depth, 0.85 m, 36 deg): one profile point 3 mm outside the
    # wall under the lip (seen at one azimuth) carried a wall of its own, which the gaps closed along the height
    # (_revolution_raster) joined to the lip above: a skirt 10 mm deep all around. IoU 0.44 before, 0.59 now.
    view = condition_object_view("border_cut", 1, "024_bowl")
    result = reconstruct(view.inp, "depth")
    assert "revolved" in result.info["prior"] and mesh_pieces(result) == 1
    assert _benchmark_iou(result, view) > 0.5


def _benchmark_iou(result, view) -> float:
    """IoU of ``result`` (camera frame) against the view's ground truth as the conditions benchmark scores it."""
    gt = view.gt_mesh_world.copy()
    gt.apply_transform(view.T_cam_from_world)  # the IoU grid spans both boxes in the camera frame
    pred = trimesh.Trimesh(np.asarray(result.vertices, float), np.asarray(result.faces, np.int64), process=False)
    return mesh_metrics(pred, gt, ConditionsConfig())["iou"]


def test_the_bottom_plate_ends_at_the_foot() -> None:
    # A bowl seen from 12 deg shows no inner bottom: the plate added on the table reached out to the 90th
    # percentile of the outside's radii over the lowest 30 % of its height (61 mm for a 45 mm foot), a wedge under
    # the curving wall (elev_low/0: IoU 0.30 -> 0.35). It ends at the outside's radius at its lowest.
    z = np.arange(0.0, 0.055, 0.0005)
    radius = 0.045 + 0.6 * z + 4.0 * z**2  # a bowl's outside: 45 mm at the table, flaring out
    points = np.stack([radius, z], axis=1)
    normals = np.tile([-0.8, -0.6], (len(z), 1))
    plate = hollow._with_bottom(points, normals, np.full(len(z), 0.0015), np.ones(len(z), bool), 0.0015)
    assert plate[3].any() and plate[0][plate[3], 0].max() < 0.048


def _assert_only_the_seen_handle_kept(*extra: np.ndarray) -> None:
    """A mug's rim (40 mm) and a handle seen beside it at +x, plus ``extra`` seen points; the hull's solid beside the
    rim on both sides (+x and its 180-deg image at -x): the handle at +x is kept whole, nothing at -x."""
    rim = _ring(0.04, 0.002, 0.08, 0.001)
    seen_handle = np.stack(np.meshgrid(np.arange(0.05, 0.06, 0.001), [0.0], np.arange(0.03, 0.06, 0.001)), -1)
    p_plane = np.concatenate([rim, seen_handle.reshape(-1, 3), *extra])
    grid = _Grid.spanning(np.array([-0.07, -0.05, 0.0]), np.array([0.07, 0.05, 0.09]), 0.002, np.eye(4))
    x, z = grid.centres[:, 0], grid.centres[:, 2]
    beside = (np.abs(grid.centres[:, 1]) < 0.006) & (z > 0.03) & (z < 0.06) & (np.abs(x) > 0.048) & (np.abs(x) < 0.062)
    kept = _handle(grid, beside, beside, p_plane, 0.002, 0.004, 0.001)
    assert np.all(kept[beside & (x > 0)]) and not np.any(kept[x < 0])


def test_a_handle_is_kept_where_it_was_seen_and_not_its_image() -> None:
    # The symmetric hull of a mug turned by 180 deg puts its handle beside the far wall too: a second handle
    # nothing showed (touching/0: 404 of the mug's false cells on the 32^3 grid, IoU 0.58 -> 0.62 without).
    _assert_only_the_seen_handle_kept()


def test_a_few_flying_pixels_beside_the_rim_are_no_handle() -> None:
    # Real depth (YCB-Video dev frame 1's mug, 32 deg, taken down the container path): 43 flying pixels 2 cm in front
    # of the rim held a piece of the symmetric hull as a "handle", solid from the table to 67 mm (that path's IoU
    # 0.19-0.26 on the 5 frames, 0.25-0.27 without). A piece is a handle when it holds as many seen points as the
    # handle test asks of the whole view (30), not one.
    flying = np.array([[-0.055, 0.0, z] for z in np.arange(0.035, 0.055, 0.002)])  # 10 points
    _assert_only_the_seen_handle_kept(flying)


def test_the_mug_with_a_shelf_inside_its_scan() -> None:
    # The conditions benchmark's touching/0 mug (ideal depth, 0.72 m, 37 deg): 0.298 IoU before (a 1 mm wall below
    # the scan's inner shelf, and a second handle), 0.62 now, scored as the benchmark scores.
    view = condition_object_view("touching", 0, "025_mug")
    result = reconstruct(view.inp, "depth")
    assert "revolved" in result.info["prior"] and mesh_pieces(result) == 1
    assert _benchmark_iou(result, view) > 0.5


def _sparse_mug_profile(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 2) (radius, height) points of a mug's revolved profile (outside 40 mm, inside 37 mm, 100 mm tall, its
    inner bottom 5 mm up), 0.3 mm noise: a far or small container's few hundred points."""
    t, seg = rng.uniform(0.0, 1.0, n), rng.choice(3, n, p=[0.4, 0.4, 0.2])
    outside = np.stack([np.full(n, 0.04), 0.1 * t], axis=1)
    inside = np.stack([np.full(n, 0.037), 0.005 + 0.095 * t], axis=1)
    floor = np.stack([0.037 * t, np.full(n, 0.005)], axis=1)
    points = np.where(seg[:, None] == 0, outside, np.where(seg[:, None] == 1, inside, floor))
    return points + rng.normal(0.0, 0.0003, (n, 2))


def test_a_sparse_profile_keeps_its_wall_and_drops_a_point_alone() -> None:
    # The isolated-point filter dropped a point with at most 6 points within 2 mm whatever the density: a clean
    # mug profile lost 91 % of its points at 200 points, 31 % at 400 (a far or small container lost real wall). The
    # count is now relative to the profile's own density; a point 3 mm off the wall still goes.
    rng = np.random.default_rng(0)
    for n in (200, 400, 3200):
        points = np.concatenate([_sparse_mug_profile(n, rng), [[0.043, 0.05]]])
        alone = hollow._isolated(points)
        assert alone[-1] and alone[:-1].mean() < 0.1  # before: 0.91 at 200 points
    assert not hollow._isolated(np.empty((0, 2))).any()


def test_a_profile_emptied_by_the_filter_is_no_revolution(monkeypatch: pytest.MonkeyPatch) -> None:
    # Emptied, the profile made _with_bottom raise (a reduction over no points) and the reconstruction failed
    # instead of falling back to the mirrored wall. Now fit_revolution answers None, and _with_bottom of nothing is
    # nothing.
    camera = np.array([-0.45, 0.0, 0.45])
    points = _seen_cup(np.zeros(2), 0.035, 0.0015, 0.08, camera, step=0.002)
    monkeypatch.setattr(hollow, "_isolated", lambda p: np.ones(len(p), dtype=bool))
    assert fit_container(points, inward_normals(points, camera), 0.002, (0.0005, 0.005), 0.005, camera) is None
    empty = hollow._with_bottom(np.empty((0, 2)), np.empty((0, 2)), np.empty(0), np.empty(0, bool), 0.0015)
    assert all(len(a) == 0 for a in empty)


def test_the_cavity_bound_asks_for_a_narrowing_over_consecutive_heights() -> None:
    # One bin's radius (a few points of a lip, a flying pixel) bounded every bin below it: an isolated top bin of
    # 20 mm in a 30 mm cavity made the wall reach 10 mm in all the way down. A narrowing seen over consecutive bins
    # (a ledge) still bounds the bins below it, and no bin above it.
    nan = np.nan
    noisy_top = np.array([nan, nan, nan, 0.03, 0.03, 0.03, 0.03, nan, 0.02])
    assert np.allclose(hollow._cavity_bound(noisy_top)[:6], 0.03)
    ledge = np.array([nan, nan, 0.02, 0.021, 0.03, 0.03, 0.03, 0.03])
    bound = hollow._cavity_bound(ledge)
    assert np.allclose(bound[:3], 0.021) and np.allclose(bound[3:7], 0.03)


def test_a_far_handle_seen_by_few_points_is_kept_and_flying_pixels_are_not() -> None:
    # At 1.2 m (554 px focal length: 2.2 mm pixels) a handle partly hidden shows 2 x 12 points, fewer than the 30
    # the handle rule asked at any range (tuned at ~1 mm pixels), and was dropped; the bound now scales with the
    # pixel as a fringe of flying pixels (a line: count ~ 1 / pixel) does, so the fringe still is not a handle.
    rim = _ring(0.04, 0.002, 0.08, 0.0022)
    x, z = np.meshgrid([0.052, 0.0542], np.arange(0.032, 0.058, 0.0022))
    seen_handle = np.stack([x.ravel(), np.zeros(x.size), z.ravel()], axis=1)  # 24 points
    flying = np.array([[-0.055, 0.0, z] for z in np.arange(0.035, 0.055, 0.0022)])  # a 20 mm fringe: 10 points
    p_plane = np.concatenate([rim, seen_handle, flying])
    grid = _Grid.spanning(np.array([-0.07, -0.05, 0.0]), np.array([0.07, 0.05, 0.09]), 0.002, np.eye(4))
    x, z = grid.centres[:, 0], grid.centres[:, 2]
    beside = (np.abs(grid.centres[:, 1]) < 0.006) & (z > 0.03) & (z < 0.06) & (np.abs(x) > 0.048) & (np.abs(x) < 0.062)
    kept = _handle(grid, beside, beside, p_plane, 0.002, 0.004, 0.0022)
    assert np.all(kept[beside & (x > 0)]) and not np.any(kept[x < 0])
