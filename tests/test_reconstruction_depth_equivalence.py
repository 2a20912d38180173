"""The depth backend's faster paths compute the same numbers as the code they replaced (seeded cases, exact
equality): hole filling by labelling, free-space lookups by flat pixel index, a family of reflections at once, the
column hull's half-space test on the surviving voxels only."""

from __future__ import annotations

import numpy as np
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
)

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
