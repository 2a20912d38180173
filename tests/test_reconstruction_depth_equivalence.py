"""The depth backend's faster paths compute the same numbers as the code they replaced (seeded cases, exact
equality): hole filling by labelling, free-space lookups by flat pixel index, a family of reflections at once, the
column hull's half-space test on the surviving voxels only, the symmetry scores' lookups from one projection, grid
centres and grid-to-grid lookups axis by axis, the mesh's largest piece without building every piece, watertightness
from one sorted edge key, a thin wall's unfolding testing only the faces that can still turn over."""

from __future__ import annotations

import numpy as np
import trimesh
from scipy import ndimage
from scipy.spatial import ConvexHull

from z123_ros.camera import CameraIntrinsics
from z123_ros.reconstruction.depth_backend import (
    _column_hull,
    _fill_holes,
    _FreeSpace,
    _Grid,
    _reflect,
    _reflect_family,
    _resample_grid,
)
from z123_ros.reconstruction.hollow import _unfolded
from z123_ros.reconstruction.mesh import extract_mesh, signed_volume, split_largest, watertight

RNG_SEED = 7


def test_fill_holes_equals_scipy_binary_fill_holes() -> None:
    rng = np.random.default_rng(RNG_SEED)
    grids = [ndimage.binary_closing(rng.random((40, 30, 35)) < p) for p in (0.3, 0.5, 0.7) for _ in range(3)]
    radius = np.linalg.norm(np.indices((50, 50, 50)) - 25, axis=0)
    grids += [(radius < 20) & (radius > 15), np.zeros((4, 5, 6), bool), np.ones((4, 5, 6), bool)]
    for occ in grids:
        expected = ndimage.binary_fill_holes(occ)
        filled = _fill_holes(occ)
        assert filled.dtype == expected.dtype and np.array_equal(filled, expected)
    assert _fill_holes(grids[-3]).sum() > grids[-3].sum(), "the hollow ball's cavity is filled"


def test_reflect_family_equals_one_reflection_at_a_time() -> None:
    points = np.random.default_rng(RNG_SEED).normal(size=(500, 3))
    families = [[("mirror", float(phi), float(c)) for c in np.arange(-0.1, 0.2, 0.013)] for phi in (-1.0, 0.0, 0.7)]
    families.append([("rot180", float(cx), 0.37) for cx in np.arange(-0.1, 0.2, 0.011)])
    families.append([("mirror", 0.1, 0.0), ("rot180", 0.2, 0.3)])  # mixed: the one-by-one path
    for family in families:
        expected = np.concatenate([_reflect(points, h) for h in family])
        assert np.array_equal(_reflect_family(points, family), expected)


def _classify_by_2d_indexing(space: _FreeSpace, points: np.ndarray) -> tuple[np.ndarray, ...]:
    """_FreeSpace.classify as it was written before the flat-index lookups (the reference)."""
    z = points[:, 2]
    in_front = z > 1e-6
    zs = np.where(in_front, z, 1.0)
    u = np.round(space.intr.fx * points[:, 0] / zs + space.intr.cx).astype(np.int64)
    v = np.round(space.intr.fy * points[:, 1] / zs + space.intr.cy).astype(np.int64)
    inside = in_front & (u >= 0) & (u < space.intr.width) & (v >= 0) & (v < space.intr.height)
    uc, vc = np.clip(u, 0, space.intr.width - 1), np.clip(v, 0, space.intr.height - 1)
    observed = space.depth[vc, uc]
    in_mask = space.mask[vc, uc]
    silhouette = in_front & (in_mask | space.unknown[vc, uc])
    tol = space.tol[vc, uc]
    margin = np.where(in_mask, tol, -tol)
    own = space.own[vc, uc]
    with np.errstate(invalid="ignore"):
        seen_past = inside & np.isfinite(observed) & (observed > z + margin)
    seen_past |= inside & ~np.isfinite(observed) & ~own & ~space.unknown[vc, uc]
    behind = np.where(inside, z - observed, np.nan)
    return silhouette & ~seen_past, inside & own, inside, behind


def test_free_space_lookups_equal_two_d_indexing() -> None:
    rng = np.random.default_rng(RNG_SEED)
    intr = CameraIntrinsics.from_fov(60.0, 64, 48)
    depth = rng.uniform(0.3, 1.0, (48, 64))
    depth[rng.random(depth.shape) < 0.1] = np.nan
    mask = np.zeros((48, 64), bool)
    mask[10:30, 20:40] = True
    unknown = rng.random(depth.shape) < 0.1
    tolerance = rng.uniform(0.001, 0.01, depth.shape)
    space = _FreeSpace(intr, depth, ndimage.binary_dilation(mask), tolerance, unknown=unknown, own=mask)
    # In front of, behind and beside the camera: points leaving the image take their border pixel's status.
    points = np.column_stack([rng.uniform(-1, 1, 20000), rng.uniform(-1, 1, 20000), rng.uniform(-0.2, 1.5, 20000)])
    for got, expected in zip(space.classify(points), _classify_by_2d_indexing(space, points), strict=True):
        np.testing.assert_array_equal(got, expected)
    possible, in_silhouette = space.possible_in_silhouette(points)
    np.testing.assert_array_equal(possible, space.classify(points)[0])
    np.testing.assert_array_equal(in_silhouette, space.in_own_silhouette(points))
    assert 0 < in_silhouette.sum() < len(points) and 0 < possible.sum() < len(points)


def test_grid_centres_axis_by_axis_equal_the_index_formula() -> None:
    for dims, voxel, lo in [((7, 5, 3), 0.0031, np.array([-0.071, 0.013, 0.0])), ((1, 9, 4), 0.01, np.zeros(3))]:
        grid = _Grid.spanning(lo, lo + np.array(dims) * voxel - 1e-9, voxel, np.eye(4))
        idx = np.stack(np.meshgrid(*[np.arange(n) for n in dims], indexing="ij"), axis=-1).reshape(-1, 3)
        assert grid.dims == dims
        np.testing.assert_array_equal(grid.centres, idx * voxel + lo + 0.5 * voxel)


def _resample_voxel_by_voxel(grid: _Grid, volume: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The grid-to-grid lookup as it was written before (each centre's voxel index): the reference."""
    ijk = np.floor((centres - grid.lo) / grid.voxel).astype(np.int64)
    inside = np.all((ijk >= 0) & (ijk < np.array(grid.dims)), axis=1)
    out = np.zeros(len(centres), dtype=bool)
    out[inside] = volume[ijk[inside, 0], ijk[inside, 1], ijk[inside, 2]]
    return out


def test_resample_grid_equals_the_voxel_by_voxel_lookup() -> None:
    rng = np.random.default_rng(RNG_SEED)
    working = _Grid.spanning(np.array([-0.05, -0.04, 0.0]), np.array([0.06, 0.05, 0.07]), 0.003, np.eye(4))
    volume = rng.random(working.dims) < 0.5
    # Finer grids overlapping the working grid partly (voxels outside it read False) and wholly.
    for lo, hi, voxel in [
        ((-0.07, -0.02, 0.0), (0.03, 0.08, 0.05), 0.0011),
        ((-0.04, -0.03, 0.01), (0.05, 0.04, 0.06), 1e-3),
    ]:
        target = _Grid.spanning(np.array(lo), np.array(hi), voxel, np.eye(4))
        expected = _resample_voxel_by_voxel(working, volume, target.centres)
        assert 0 < expected.sum() < len(expected)
        np.testing.assert_array_equal(_resample_grid(working, volume, target), expected)


def _specked_mesh(seed: int) -> trimesh.Trimesh:
    """A marching-cubes mesh of a ball with single-voxel specks around it (a container wall's mesh has hundreds)."""
    rng = np.random.default_rng(seed)
    radius = np.linalg.norm(np.indices((30, 30, 30)) - 14.5, axis=0)
    field = (radius < 9).astype(np.float32)
    field[rng.random(field.shape) < 0.004] = 1.0
    return extract_mesh(field, 0.5, np.diag([0.002, 0.002, 0.002, 1.0]))


def test_split_largest_equals_the_largest_of_split() -> None:
    meshes = [_specked_mesh(seed) for seed in range(3)]
    # Pieces with holes (split repairs them, adding faces) and a mesh whose largest piece is not the first.
    holed = _specked_mesh(3)
    holed.update_faces(np.arange(len(holed.faces)) % 17 != 0)
    meshes.append(holed)
    ball = extract_mesh((np.linalg.norm(np.indices((20, 20, 20)) - 9.5, axis=0) < 6).astype(float), 0.5, np.eye(4))
    meshes.append(trimesh.util.concatenate([trimesh.creation.box(), ball]))
    meshes.append(ball)  # one piece: the mesh itself
    for mesh in meshes:
        pieces = mesh.split(only_watertight=False)
        largest, count = split_largest(mesh)
        assert count == len(pieces)
        expected = mesh if len(pieces) <= 1 else max(pieces, key=lambda piece: len(piece.faces))
        np.testing.assert_array_equal(largest.vertices, expected.vertices)
        np.testing.assert_array_equal(largest.faces, expected.faces)
        assert (largest.is_watertight, largest.is_winding_consistent) == (
            expected.is_watertight,
            expected.is_winding_consistent,
        )
    assert split_largest(meshes[0])[1] > 10, "the specks are pieces of their own"


def test_watertight_equals_trimesh() -> None:
    holed = _specked_mesh(3)
    holed.update_faces(np.arange(len(holed.faces)) % 17 != 0)
    box = trimesh.creation.box()
    turned = trimesh.Trimesh(box.vertices, np.concatenate([box.faces[:6], box.faces[6:, ::-1]]), process=False)
    fin = trimesh.Trimesh(  # a fin on an edge of the box: that edge is used by four faces
        np.concatenate([box.vertices, [[2.0, 2.0, 2.0]]]),
        np.concatenate([box.faces, [box.faces[0][[0, 1]].tolist() + [8], box.faces[0][[1, 0]].tolist() + [8]]]),
        process=False,
    )
    meshes = [_specked_mesh(0), holed, box, box.copy().invert(), turned, fin, trimesh.creation.icosphere()]
    results = set()
    for mesh in meshes:
        expected = (mesh.is_watertight, mesh.is_winding_consistent)
        assert watertight(mesh.faces) == expected
        results.add(expected)
    assert len(results) >= 3, "watertight and consistent, holed, and turned faces are all among the cases"


def _unfolded_every_face(vertices: np.ndarray, step: np.ndarray, faces: np.ndarray, rounds: int = 6) -> np.ndarray:
    """hollow._unfolded as it was written before (every face tested in every round): the reference."""
    step = step.copy()
    tri = vertices[faces]
    before = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    real = np.einsum("ni,ni->n", before, before) > 0.0
    k = 0
    while True:
        moved = tri + step[faces]
        after = np.cross(moved[:, 1] - moved[:, 0], moved[:, 2] - moved[:, 0])
        turned = real & (np.einsum("ni,ni->n", before, after) <= 0.0)
        if not np.any(turned):
            return step
        step[np.unique(faces[turned])] *= 0.5 if k < rounds else 0.0
        k += 1


def test_unfolded_equals_testing_every_face_every_round() -> None:
    rng = np.random.default_rng(RNG_SEED)
    mesh = _specked_mesh(0)
    vertices, faces = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    edge = float(np.linalg.norm(vertices[faces[:, 0]] - vertices[faces[:, 1]], axis=1).mean())
    degenerate = np.concatenate([faces, [[0, 0, 1]]])  # a face without area is never turned over
    for scale, rounds, case_faces in [(0.3, 6, faces), (1.0, 6, faces), (3.0, 2, faces), (1.0, 6, degenerate)]:
        step = rng.normal(0.0, scale * edge, vertices.shape)
        expected = _unfolded_every_face(vertices, step, case_faces, rounds)
        np.testing.assert_array_equal(_unfolded(vertices, step, case_faces, rounds), expected)
        assert not np.array_equal(expected, step), "some faces were turned over and their steps cut"


def test_signed_volume_equals_trimesh_volume() -> None:
    for mesh in [_specked_mesh(0), trimesh.creation.box(), trimesh.creation.icosphere().invert()]:
        assert signed_volume(mesh) == mesh.volume
    assert signed_volume(trimesh.creation.box().invert()) < 0


def _column_hull_face_by_face(grid: _Grid, candidate: np.ndarray, p_plane: np.ndarray) -> np.ndarray:
    """_column_hull as it was written before (every candidate voxel against every face): the reference."""
    footprint = p_plane.copy()
    footprint[:, 2] = 0.0
    hull = ConvexHull(np.concatenate([p_plane, footprint]))
    idx = np.flatnonzero(candidate)
    inside = np.ones(len(idx), dtype=bool)
    for normal_offset in hull.equations:
        inside &= grid.centres[idx] @ normal_offset[:3] + normal_offset[3] <= 0.5 * grid.voxel
    out = np.zeros_like(candidate)
    out[idx[inside]] = True
    return out


def test_column_hull_equals_the_face_by_face_test() -> None:
    rng = np.random.default_rng(RNG_SEED)
    dims, voxel, lo = (30, 24, 20), 0.005, np.array([-0.07, -0.06, 0.0])
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in dims], indexing="ij"), axis=-1).reshape(-1, 3)
    grid = _Grid(dims, voxel, lo, np.eye(4), idx * voxel + lo + 0.5 * voxel)
    # A bumpy visible surface above the table (many hull faces) and a candidate with holes in it.
    p_plane = rng.normal(0.0, 0.03, (3000, 3))
    p_plane[:, 2] = np.abs(p_plane[:, 2]) + 0.01
    candidate = rng.random(len(grid.centres)) < 0.8
    expected = _column_hull_face_by_face(grid, candidate, p_plane)
    got = _column_hull(grid, candidate, p_plane)
    assert 0 < expected.sum() < candidate.sum()
    np.testing.assert_array_equal(got, expected)
