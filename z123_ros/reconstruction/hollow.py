"""Open containers for the ``depth`` backend: a wall of measured thickness instead of a solid.

When the camera sees into a cavity (the inner bottom of a bowl, a mug's opening) the object is a wall along the
surfaces it saw and their mirror images, not the volume they enclose. Household containers have walls of 1-6 mm;
on a 32^3 IoU grid a 1.3 mm bowl wall moved by 1 mm scores 0.41 against itself, so the wall has to be thin and on
the right side of the seen surface:

- every seen point carries its wall *behind* it (away from the camera, along its surface normal): seen from above,
  the near wall's outside and the far wall's inside are visible, and in both cases the material lies behind them;
  mirrored points carry the mirrored direction;
- the thickness is measured on the rim, the one place where the camera sees a wall's cross-section (the band of
  points just below the highest ones, across the rim's direction), and clipped to what the grid can represent and
  to the thickest common container (``DepthBackendConfig.hollow_wall_m``);
- the wall is a continuous field (half-thickness minus the distance to the wall's mid-surface), so marching cubes
  places it to a fraction of a voxel; a binary wall on a 2 mm grid is at least two voxels thick once smoothed.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree

logger = logging.getLogger(__name__)

#: Neighbours of a point for its surface normal and of a rim point for the rim's local direction.
_NEIGHBOURS = 12


def inward_normals(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """(N, 3) unit normals of a visible surface (PCA of each point's neighbours) oriented away from ``camera`` (the
    camera centre in the points' frame): the side the material is on, for a surface the camera sees."""
    k = min(_NEIGHBOURS, len(points))
    _, idx = cKDTree(points).query(points, k=k)
    nb = points[idx] - points[idx].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb)
    _, vecs = np.linalg.eigh(cov)
    normals = vecs[:, :, 0]  # smallest eigenvalue: the surface normal
    flip = np.einsum("ni,ni->n", normals, points - camera) < 0
    normals[flip] *= -1.0
    return normals


def mirror_linear_part(points: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """3x3 linear part of the isometry that maps ``points`` to ``mirrored`` (a reflection about a vertical plane or
    a half turn about a vertical axis: both are affine, so least squares on the centred pairs recovers it exactly).
    Mirrored points carry the mirrored wall direction."""
    a = points - points.mean(axis=0)
    b = mirrored - mirrored.mean(axis=0)
    linear, *_ = np.linalg.lstsq(a, b, rcond=None)
    return linear.T


def register_mirror(
    seen: np.ndarray,
    seen_normals: np.ndarray,
    mirrored: np.ndarray,
    mirrored_normals: np.ndarray,
    thickness: float,
    voxel: float,
) -> np.ndarray:
    """(3,) shift that puts the mirror image one wall thickness beyond the seen surface of the same wall.

    The symmetry's offset is the smallest the free space allows, so its mirror image tends to sit a few millimetres
    towards the camera: a thick wall hid that, a thin one lands beside the true one (a cup's far wall 2-3 mm inside
    its true place). Where a mirrored face and a seen face of opposite orientation are within a few wall
    thicknesses (the two faces of one wall: the seen inside of the far wall and the mirrored outside of the near
    one), their distance along the seen normal should be the thickness; the median error moves the image along the
    pairs' mean horizontal normal. No shift with fewer than 30 pairs or a shift beyond the search radius."""
    reach = 2.0 * thickness + voxel
    dist, idx = cKDTree(seen).query(mirrored, distance_upper_bound=reach)
    pair = np.isfinite(dist)
    pair[pair] &= np.einsum("ni,ni->n", seen_normals[idx[pair]], mirrored_normals[pair]) < -0.5
    if np.count_nonzero(pair) < 30:
        return np.zeros(3)
    n = seen_normals[idx[pair]]
    across = np.einsum("ni,ni->n", mirrored[pair] - seen[idx[pair]], n)
    direction = n.mean(axis=0)
    direction[2] = 0.0
    if np.linalg.norm(direction) < 0.3:  # the pairs face every way: no single shift fits them
        return np.zeros(3)
    error = float(np.clip(np.median(thickness - across), -reach, reach))
    return error * direction / np.linalg.norm(direction)


def rim_thickness(p_plane: np.ndarray, band_m: float) -> float:
    """Wall thickness (m) seen at the rim: the width, across the rim's direction, of the band of visible points
    within ``band_m`` below the highest ones (plane frame, z up). The rim of an open container is the one place
    where its wall's cross-section faces the camera. A band of uniform width w has variance w^2 / 12 across it:
    the median over rim points of sqrt(12 * smallest variance of the footprint of their 12 nearest rim points (a
    few pixels each way: bands up to about three pixels wide are measured, wider ones read low, and walls that
    thick are beyond what a thin-wall prior needs). NaN when too few points lie on the rim. An upper
    bound (pixels and noise widen the band), clipped by the caller."""
    rim = _rim(p_plane, band_m)
    if len(rim) < 3 * _NEIGHBOURS:
        return float("nan")
    _, idx = cKDTree(rim).query(rim, k=_NEIGHBOURS)
    nb = rim[idx] - rim[idx].mean(axis=1, keepdims=True)
    cov = np.einsum("nki,nkj->nij", nb, nb) / _NEIGHBOURS
    smallest = np.linalg.eigvalsh(cov)[:, 0]
    return float(np.median(np.sqrt(12.0 * np.maximum(smallest, 0.0))))


def _rim(p_plane: np.ndarray, band_m: float) -> np.ndarray:
    """(M, 2) footprint of the visible points within ``band_m`` below the highest ones (the rim, for a container)."""
    top = float(np.percentile(p_plane[:, 2], 99.5))
    return p_plane[p_plane[:, 2] >= top - band_m, :2]


def within_rim(p_plane: np.ndarray, band_m: float, xy: np.ndarray, margin_m: float) -> np.ndarray:
    """(N,) bool: the plane-frame positions ``xy`` lie within ``margin_m`` of the rim's convex footprint. The
    container's wall lies there; outside it are solid parts seen beside the opening (a mug's handle), which the
    caller completes as solids: as a thin skin of its visible side a handle came off as a fragment."""
    rim = _rim(p_plane, band_m)
    try:
        hull = ConvexHull(rim)
    except (QhullError, ValueError):
        return np.ones(len(xy), dtype=bool)
    inside = np.ones(len(xy), dtype=bool)
    for a, b, c in hull.equations:  # unit normals: the offset is a distance
        inside &= a * xy[:, 0] + b * xy[:, 1] + c <= margin_m
    return inside


def may_be_within(points: np.ndarray, queries: np.ndarray, reach: float) -> np.ndarray:
    """(N,) bool: the ``queries`` that may lie within ``reach`` of one of the ``points``; every query that does is
    among them. Cells a little larger than ``reach`` (rounding cannot move a point by a whole cell), those holding a
    point and their 26 neighbours."""
    cell = 1.001 * reach
    lo = points.min(axis=0) - cell
    occupied = np.zeros(tuple(np.floor((points.max(axis=0) - lo) / cell).astype(np.int64) + 3), dtype=bool)
    occupied[tuple(np.floor((points - lo) / cell).astype(np.int64).T)] = True
    occupied = ndimage.binary_dilation(occupied, structure=np.ones((3, 3, 3), dtype=bool))
    index = np.floor((queries - lo) / cell).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(occupied.shape)), axis=1)
    out = np.zeros(len(queries), dtype=bool)
    out[inside] = occupied[tuple(index[inside].T)]
    return out


def wall_field(
    centres: np.ndarray,
    voxel: float,
    seen: np.ndarray,
    seen_normals: np.ndarray,
    mirrored: np.ndarray | None,
    mirrored_normals: np.ndarray | None,
    thickness: float,
) -> np.ndarray:
    """(N,) field of the wall at the voxel ``centres`` (plane frame): 0.5 + (t / 2 - distance to the wall's
    mid-surface) / voxel, clipped to [0, 1]. The mid-surface is every seen point moved half a thickness behind
    itself, and every mirrored point moved along its mirrored normal. The distance is taken to the nearest
    mid-surface point's tangent plane, within the point's own spacing sideways: a surface seen at a grazing angle
    is sampled several millimetres apart, and the distance to the points themselves perforated its wall."""
    points, normals = [seen], [seen_normals]
    if mirrored is not None and mirrored_normals is not None and len(mirrored):
        points.append(mirrored)
        normals.append(mirrored_normals)
    normal = np.concatenate(normals)
    mid = np.concatenate(points) + 0.5 * thickness * normal
    tree = cKDTree(mid)
    spacing = tree.query(mid, k=min(5, len(mid)))[0][:, -1]  # the 4th neighbour: how far apart points lie here
    reach = 0.5 * thickness + voxel + float(np.percentile(spacing, 95))
    # Only the centres that can be within reach are looked up (a fifth to a half of the container's grid): the
    # others are farther and get 0 all the same.
    candidates = np.flatnonzero(may_be_within(mid, centres, reach))
    dist = np.full(len(centres), np.inf)
    idx = np.zeros(len(centres), dtype=np.int64)
    dist[candidates], idx[candidates] = tree.query(centres[candidates], distance_upper_bound=reach)
    field = np.zeros(len(centres))
    near = np.isfinite(dist)
    offset = centres[near] - mid[idx[near]]
    across = np.abs(np.einsum("ni,ni->n", offset, normal[idx[near]]))
    sideways = np.sqrt(np.maximum(np.einsum("ni,ni->n", offset, offset) - across**2, 0.0))
    inside = np.where(sideways <= spacing[idx[near]] + 0.5 * voxel, 0.5 * thickness - across, -voxel)
    field[near] = np.clip(0.5 + inside / voxel, 0.0, 1.0)
    return field


def wall_thickness(p_plane: np.ndarray, band_m: float, min_m: float, max_m: float) -> tuple[float, float]:
    """(thickness, measured) of an open container's wall: the rim's (see :func:`rim_thickness`; NaN when not
    seen) clipped to [min_m, max_m], ``max_m`` when the rim was not measured."""
    measured = rim_thickness(p_plane, band_m)
    if not np.isfinite(measured):
        return max(min_m, max_m), measured
    return float(np.clip(measured, min_m, max(min_m, max_m))), measured


def build_wall(
    centres: np.ndarray,
    voxel: float,
    p_plane: np.ndarray,
    support: np.ndarray,
    camera_plane: np.ndarray,
    thickness: float,
) -> np.ndarray:
    """(N,) field of the wall of an open container seen into (see :func:`wall_field`) at the voxel ``centres``:
    ``p_plane`` the visible points, ``support`` the points the completion rests on (the visible ones first, then
    their mirror images when a symmetry was accepted), ``camera_plane`` the camera centre, all in the plane
    frame."""
    normals = inward_normals(p_plane, camera_plane)
    mirrored, normals_m = None, None
    if len(support) == 2 * len(p_plane):
        mirrored = support[len(p_plane) :]
        linear = mirror_linear_part(p_plane, mirrored)
        mirrored = mirrored + register_mirror(p_plane, normals, mirrored, normals @ linear.T, thickness, voxel)
        # Where the camera saw a surface, its mirror image only doubles it: a mirror plane a few millimetres off
        # put a second far wall beside the seen one. Mirror images fill in where nothing was seen.
        near_seen = cKDTree(p_plane).query(mirrored, distance_upper_bound=2.0 * thickness + voxel)[0] < np.inf
        keep = ~near_seen
        mirrored, normals_m = mirrored[keep], (normals @ linear.T)[keep]
    return wall_field(centres, voxel, p_plane, normals, mirrored, normals_m, thickness)
