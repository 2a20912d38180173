"""The ``depth`` backend: complete the visible surface with geometric priors. No model weights.

From one RGB-D view the camera tells us three things about the object's volume:

1. the visible surface (back-projected depth inside the mask);
2. free space: every point the camera sees past is empty (in front of the object and around it, down to the table);
3. the support plane: the object stands on it and nothing of it is below.

What remains unknown is the "shadow" behind the visible surface, down to the table. A symmetry hypothesis bounds it:
reflect the object about a vertical plane across the horizontal view direction. The plane's position is the smallest
one for which the reflected visible surface falls in space the camera did not see as empty (so the hypothesis is
consistent with the free space); the object is the unknown space whose mirror image is unknown too (a symmetric
visual hull). When no vertical plane is consistent enough, a horizontal one (an object lying on the table) makes it
the visible surface continued down to the table; failing that, the hidden side gets a bounded thickness.
Marching cubes on the resulting occupancy gives a watertight mesh in metres in the camera frame.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError, cKDTree

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import ReconstructionError
from z123_ros.geometry import fit_plane_ransac, orient_plane, plane_from_pose
from z123_ros.reconstruction.base import DepthBackendConfig, ReconstructionInput
from z123_ros.reconstruction.hollow import (
    Revolution,
    build_wall,
    fit_container,
    inward_normals,
    revolution_agrees,
    revolution_field,
    seen_through_opening,
    thin_wall_vertices,
    wall_thickness,
    within_rim,
)

logger = logging.getLogger(__name__)

#: Fewest visible points, and smallest fraction of them, seen through an object's top (an opening). Containers show
#: their inside so as a tenth to four fifths of the view (the conditions benchmark's bowls, cups and mugs at seeds
#: 0-5 of every bucket: 0.11-0.80; the real dev mugs from 32 deg: 0.26); solids (every other object there, 282) at
#: most 0.02 (a lying hammer: its handle below its head).
_MIN_OPENING_POINTS = 30
_MIN_OPENING_FRACTION = 0.1


@dataclass
class DepthCompletion:
    """Occupancy grid of the ``depth`` backend and how it was obtained."""

    occupancy: np.ndarray
    """(X, Y, Z) bool occupancy in the plane-aligned working grid."""
    T_cam_from_index: np.ndarray
    """4x4 voxel index (i, j, k) -> camera frame (metres)."""
    plane_cam: np.ndarray | None
    """Support plane used (camera frame, unit normal towards the camera), None when none was found."""
    plane_source: str
    """"input", "pose", "fitted" or "none"."""
    prior: str
    """Completion prior used for the hidden side: "symmetry" or "thickness"."""
    consistency: float
    """Fraction of the reflected visible points consistent with the free space (symmetry) or 0."""
    timings: dict[str, float]
    """Stage -> seconds."""
    coverage: float = 1.0
    """Fraction of the mask's pixels the completed volume covers when projected into the view."""
    dropped: float = 0.0
    """Fraction of the visible surface's voxels lost with the fragments dropped to keep one solid."""
    open_fraction: float = 0.0
    """Fraction of the mask's outline next to occluders, depth holes or the image border."""
    surface_field: np.ndarray | None = None
    """(X, Y, Z) float field to mesh at 0.5 without smoothing instead of the occupancy (an open container's thin
    wall, placed to a fraction of a voxel: see reconstruction/hollow.py); None: mesh the occupancy."""
    sliver: float = 0.0
    """How much of the object the image border may hide (``_border_sliver``; 0 when not cut by it)."""
    thin_wall: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    """Moves the vertices (camera frame; the faces second) of ``surface_field``'s mesh onto the measured wall when
    that is thinner than the field's grid holds (an open container's revolved wall); None: the mesh is final."""


def apply_transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points through a 4x4 transform. einsum, not ``@``: a (N, 3) x (3, 3) BLAS call is several times slower
    when the BLAS thread pool competes for busy cores, and this runs millions of points per reconstruction."""
    return np.einsum("ij,nj->ni", T[:3, :3], points) + T[:3, 3]


def estimate_support_plane(
    inp: ReconstructionInput, depth: np.ndarray, mask: np.ndarray, object_points: np.ndarray, cfg: DepthBackendConfig
) -> tuple[np.ndarray | None, str]:
    """The plane the object stands on, camera frame, oriented towards the camera: given, from the pose, or fitted."""
    if inp.support_plane_cam is not None:
        return orient_plane(inp.support_plane_cam), "input"
    if inp.T_cam_from_world is not None:
        return orient_plane(plane_from_pose(inp.T_cam_from_world)), "pose"
    ring = ndimage.binary_dilation(mask, iterations=cfg.plane_ring_px) & ~ndimage.binary_dilation(mask, iterations=3)
    points, _ = inp.intrinsics.backproject(depth, ring)
    # RANSAC: other objects in the ring are outliers as long as the table is the dominant surface around the object.
    fit = fit_plane_ransac(points, cfg.plane_inlier_m, min_inliers=30, min_inlier_fraction=0.3)
    if fit is None:
        return None, "none"
    plane = fit.plane
    heights = object_points @ plane[:3] + plane[3]
    # The object must stand on the plane (mostly above it), else the ring was a wall or another object.
    if np.mean(heights > -cfg.plane_inlier_m) < 0.9:
        logger.debug("fitted ring plane rejected: %.0f%% of the object is below it", 100 * np.mean(heights < 0))
        return None, "none"
    return plane, "fitted"


def _measured_noise(
    intrinsics: CameraIntrinsics, depth: np.ndarray, mask: np.ndarray, plane: np.ndarray | None, cfg: DepthBackendConfig
) -> tuple[float, float]:
    """Depth noise allowance (m) measured on the table around the object, and the range (m) it was measured at:
    2.5 robust standard deviations of the ring points' distances to the support plane ((0, 1) without a plane).
    Real sensors are noisier than the configured floor, and an allowance below the noise would call the object's
    own surface free space."""
    if plane is None:
        return 0.0, 1.0
    ring = ndimage.binary_dilation(mask, iterations=cfg.plane_ring_px) & ~ndimage.binary_dilation(mask, iterations=3)
    points, _ = intrinsics.backproject(depth, ring)
    if len(points) < 30:
        return 0.0, 1.0
    residual = np.abs(points @ plane[:3] + plane[3])
    table = residual < 0.02  # other objects in the ring are not table
    if np.count_nonzero(table) < 30:
        return 0.0, 1.0
    return 2.5 * 1.4826 * float(np.median(residual[table])), float(np.median(points[table, 2]))


def _noise_image(
    intrinsics: CameraIntrinsics, depth: np.ndarray, mask: np.ndarray, plane: np.ndarray | None, cfg: DepthBackendConfig
) -> np.ndarray:
    """Per-pixel depth noise (m): the noise measured on the table, grown with the square of the range like the error
    of a triangulating sensor (structured light, stereo). The callers put their floor under it."""
    measured, at_range = _measured_noise(intrinsics, depth, mask, plane, cfg)
    with np.errstate(invalid="ignore"):
        return measured * np.square(np.nan_to_num(depth, nan=at_range) / at_range)


def _unknown_pixels(
    inp: ReconstructionInput, depth: np.ndarray, mask: np.ndarray, plane: np.ndarray | None, cfg: DepthBackendConfig
) -> np.ndarray:
    """Pixels outside the mask behind which the object may continue unseen: other objects (from the label image or
    the occluder mask when given, else anything standing on the support plane)."""
    unknown = np.zeros_like(mask)
    if inp.occluder_mask is not None:
        unknown |= np.asarray(inp.occluder_mask, dtype=bool)
    elif inp.labels is not None:
        unknown |= np.asarray(inp.labels) != 0
    elif plane is not None:
        points, pixels = inp.intrinsics.backproject(depth)
        standing = points @ plane[:3] + plane[3] > cfg.occluder_min_height_m
        unknown[pixels[standing, 0], pixels[standing, 1]] = True
    return unknown & ~mask


def _open_boundary(mask: np.ndarray, unknown: np.ndarray) -> float:
    """Fraction of the mask's outline that touches unknown pixels or the image border (0: fully seen outline)."""
    outline = mask & ~ndimage.binary_erosion(mask, border_value=0)
    edge = np.zeros_like(mask)
    edge[:2, :], edge[-2:, :], edge[:, :2], edge[:, -2:] = True, True, True, True
    open_px = ndimage.binary_dilation(unknown, iterations=2) | edge
    return float(np.count_nonzero(outline & open_px)) / max(1, np.count_nonzero(outline))


def _border_sliver(mask: np.ndarray) -> float:
    """How much of a border-cut object the border may hide, from the mask alone: 1 - (the mask's extent away from
    the border) / (its extent along it), for the border it touches most (0 when it touches none, or is at least as
    deep as it is cut). A sliver at the image edge (20 px of an apple cut along 60 px) shows little of an object
    that continues beyond the border, and every completion of it is mostly prior."""
    rows, cols = np.nonzero(mask)
    height, width = mask.shape
    sides = [  # (pixels on the border line, extent away from it)
        (np.count_nonzero(mask[:, 0]), cols.max() + 1),
        (np.count_nonzero(mask[:, -1]), width - cols.min()),
        (np.count_nonzero(mask[0]), rows.max() + 1),
        (np.count_nonzero(mask[-1]), height - rows.min()),
    ]
    along, across = max(sides)
    if along < 3:
        return 0.0
    return float(np.clip(1.0 - across / along, 0.0, 1.0))


def _plane_frame(plane: np.ndarray | None, points: np.ndarray) -> np.ndarray:
    """``T_cam_from_plane``: x = horizontal view direction, z = plane normal (the image's up without a plane), origin
    on the plane under the object's centroid (at the centroid without a plane)."""
    centroid = points.mean(axis=0)
    if plane is None:
        up = np.array([0.0, -1.0, 0.0])  # no plane: assume the image's up is gravity's up
        origin = centroid
    else:
        up = plane[:3]
        origin = centroid - (centroid @ up + plane[3]) * up
    view = centroid / np.linalg.norm(centroid)
    x = view - (view @ up) * up
    if np.linalg.norm(x) < 1e-3:  # looking straight down: any horizontal axis works, take the image's down
        x = np.array([0.0, 1.0, 0.0]) - up[1] * up
    x /= np.linalg.norm(x)
    y = np.cross(up, x)
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, up, origin
    return T


class _FreeSpace:
    """Evaluates, for points in the camera frame, what the camera observed about them.

    The object can only be where the camera did not see past and where its silhouette could be: its own (dilated)
    mask, pixels where something else stands in front of it (another object, a depth hole next to it), and, when
    the mask reaches the image border, the space beyond that border. Everywhere else in the frustum is free, and so
    is space beside the image where the mask does not reach the border: an object that is not cut by the border lies
    entirely inside the cone of its silhouette. (Counting the space outside the view as "not seen, so possible" made
    a mirror image that leaves the view look consistent: close-up and oblique views, where the object fills the
    image, were completed into wedges and fragments.)
    """

    def __init__(
        self,
        intrinsics: CameraIntrinsics,
        depth: np.ndarray,
        mask_dilated: np.ndarray,
        tolerance_m: float | np.ndarray,
        unknown: np.ndarray | None = None,
        own: np.ndarray | None = None,
    ) -> None:
        self.intr, self.depth, self.mask = intrinsics, depth, mask_dilated
        self.tol = np.broadcast_to(np.asarray(tolerance_m, dtype=np.float64), depth.shape)
        self._tol_flat = np.ascontiguousarray(self.tol).ravel()
        self.unknown = np.zeros_like(mask_dilated) if unknown is None else unknown & ~mask_dilated
        self.own = mask_dilated if own is None else own

    def in_own_silhouette(self, points_cam: np.ndarray) -> np.ndarray:
        """(N,) bool: the point projects into the object's own (dilated) mask, not only behind an occluder."""
        z = np.maximum(points_cam[:, 2], 1e-6)
        u = np.round(self.intr.fx * points_cam[:, 0] / z + self.intr.cx).astype(np.int64)
        v = np.round(self.intr.fy * points_cam[:, 1] / z + self.intr.cy).astype(np.int64)
        u, v = np.clip(u, 0, self.intr.width - 1), np.clip(v, 0, self.intr.height - 1)
        return (points_cam[:, 2] > 1e-6) & self.mask[v, u]

    def classify(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(possible, own, in_view, behind_m) for this object.

        - possible: the object may occupy the point (see the class docstring);
        - own: the point projects into the object's own (undilated) mask;
        - in_view: the point projects into the image, in front of the camera;
        - behind_m: how far (m) it lies behind the observed surface (NaN outside the view).
        """
        z, in_front, inside, pixel = self._project(points_cam)
        possible, _, observed, own = self._possible(z, in_front, inside, pixel)
        behind = np.where(inside, z - observed, np.nan)
        return possible, inside & own, inside, behind

    def possible_in_silhouette(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(possible, in own silhouette): ``classify(p)[0]`` and ``in_own_silhouette(p)``, the same values, from one
        projection and without the outputs the symmetry scores do not use (they test millions of points)."""
        z, in_front, inside, pixel = self._project(points_cam)
        possible, in_mask, _, _ = self._possible(z, in_front, inside, pixel)
        # in_own_silhouette's pixel is this one wherever the point is in front of the camera (z > 1e-6 there).
        return possible, in_front & in_mask

    def _project(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(z, in front of the camera, inside the image, flat pixel index clipped to the image) of each point."""
        z = points_cam[:, 2]
        in_front = z > 1e-6
        zs = np.where(in_front, z, 1.0)
        u = np.round(self.intr.fx * points_cam[:, 0] / zs + self.intr.cx).astype(np.int64)
        v = np.round(self.intr.fy * points_cam[:, 1] / zs + self.intr.cy).astype(np.int64)
        inside = in_front & (u >= 0) & (u < self.intr.width) & (v >= 0) & (v < self.intr.height)
        # Outside the image a point takes the status of the border pixel it leaves through: beyond a border the
        # mask touches the object may continue, beyond any other border it cannot be.
        # One flat pixel index for the six per-pixel lookups (np.take is several times faster than 2-D indexing).
        pixel = np.clip(v, 0, self.intr.height - 1) * self.intr.width + np.clip(u, 0, self.intr.width - 1)
        return z, in_front, inside, pixel

    def _possible(
        self, z: np.ndarray, in_front: np.ndarray, inside: np.ndarray, pixel: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(possible, in the dilated mask, observed depth, in the own mask) of projected points (``_project``)."""
        observed = np.take(self.depth, pixel)
        in_mask = np.take(self.mask, pixel)
        unknown = np.take(self.unknown, pixel)
        silhouette = in_front & (in_mask | unknown)
        # Inside its own silhouette the object's surface is the observed one (give it the tolerance); behind another
        # surface it can only hide strictly behind it.
        tol = np.take(self._tol_flat, pixel)
        margin = np.where(in_mask, tol, -tol)
        own = np.take(self.own, pixel)
        with np.errstate(invalid="ignore"):
            seen_past = inside & np.isfinite(observed) & (observed > z + margin)
        # No depth: a hole on the object or a dropout next to it hides it; on the silhouette's tolerance ring it
        # is the background beyond the sensor's range, which the object does not reach.
        seen_past |= inside & ~np.isfinite(observed) & ~own & ~unknown
        return silhouette & ~seen_past, in_mask, observed, own


def _visible_points(inp: ReconstructionInput, cfg: DepthBackendConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(depth with NaN holes, mask, visible points in the camera frame without flying pixels)."""
    depth = np.asarray(inp.depth_m, dtype=np.float64)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    mask = np.asarray(inp.mask, dtype=bool)
    depth = _fill_dropouts(depth, mask)
    eroded = ndimage.binary_erosion(mask, iterations=cfg.mask_erode_px) if cfg.mask_erode_px > 0 else mask
    points, _ = inp.intrinsics.backproject(depth, eroded)
    if len(points) < 10:  # a thin object: erosion removed it, use the full mask
        points, _ = inp.intrinsics.backproject(depth, mask)
    if len(points) < 4:
        raise ReconstructionError(f"only {len(points)} valid depth pixels inside the mask; need at least 4")
    # Drop flying pixels (mixed foreground/background depth): isolated points, far from their neighbours in 3D.
    # A global depth test would cut tall or long objects, whose depth legitimately spans tens of centimetres.
    if len(points) > 8:
        spacing = cKDTree(points).query(points, k=6)[0][:, -1]
        points = points[spacing < max(5.0 * float(np.median(spacing)), 0.005)]
    return depth, mask, points


def _fill_dropouts(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Depth holes outside the mask that are smaller than the object's image get the depth of the nearest measured
    pixel outside the mask. Such holes are mostly the object's own shadow (a structured-light projector or a stereo
    pair cannot see the surface just beside an edge) or flying pixels removed at silhouettes: the surface there is
    the table or the background around it, not more object. Counting them as unknown let the object grow into
    every shadow. Larger holes (beyond the sensor's range) stay empty; holes inside the mask stay unknown."""
    holes = ~np.isfinite(depth) & ~mask
    labels, count = ndimage.label(holes)
    if not count:
        return depth
    sizes = np.bincount(labels.ravel())
    small = sizes <= np.count_nonzero(mask)
    small[0] = False
    fill = small[labels]
    if not fill.any():
        return depth
    source = np.isfinite(depth) & ~mask
    if not source.any():
        return depth
    _, (iv, iu) = ndimage.distance_transform_edt(~source, return_indices=True)
    out = depth.copy()
    out[fill] = depth[iv[fill], iu[fill]]
    return out


@dataclass
class _Grid:
    """The plane-aligned working grid: voxel centres and the transforms between index, plane and camera frames."""

    dims: tuple[int, int, int]
    """Voxels along x (away from the camera), y, z (up)."""
    voxel: float
    """Voxel side, metres."""
    lo: np.ndarray
    """(3,) lower corner in the plane frame."""
    T_cam_from_plane: np.ndarray
    """4x4 plane frame -> camera frame."""
    centres: np.ndarray
    """(N, 3) voxel centres in the plane frame, C order over ``dims``."""

    def to_cam(self, p: np.ndarray) -> np.ndarray:
        return apply_transform(self.T_cam_from_plane, p)

    @property
    def T_cam_from_index(self) -> np.ndarray:
        T = np.eye(4)
        T[:3, :3] = np.eye(3) * self.voxel
        T[:3, 3] = self.lo + 0.5 * self.voxel
        return self.T_cam_from_plane @ T

    @classmethod
    def spanning(cls, lo: np.ndarray, hi: np.ndarray, voxel: float, T_cam_from_plane: np.ndarray) -> _Grid:
        """Voxels of side ``voxel`` from ``lo`` over ``hi`` (plane frame; at least one along each axis)."""
        dims = tuple(int(n) for n in np.maximum(np.ceil((hi - lo) / voxel).astype(int), 1))
        grid = cls(dims, voxel, lo, T_cam_from_plane, np.empty((0, 3)))
        # Axis by axis, the same numbers as ``index * voxel + lo + 0.5 * voxel`` over every voxel's index triple.
        centres = np.empty((*dims, 3))
        for a in range(3):
            centres[..., a] = np.expand_dims(grid.axis(a), [b for b in range(3) if b != a])
        grid.centres = centres.reshape(-1, 3)
        return grid

    def axis(self, a: int) -> np.ndarray:
        """(dims[a],) the voxel centres' coordinates along axis ``a`` (plane frame), those of ``centres``."""
        return np.arange(self.dims[a]) * self.voxel + self.lo[a] + 0.5 * self.voxel


def _make_grid(
    p_plane: np.ndarray, T_cam_from_plane: np.ndarray, has_plane: bool, open_fraction: float, cfg: DepthBackendConfig
) -> tuple[_Grid, float, float]:
    """Grid around the visible points, ``hidden`` deep behind them (x = away from the camera), wider on every side
    when the outline is open (the object may continue behind an occluder or beyond the border). Returns the grid,
    the visible width and the hidden depth."""
    lo, hi = p_plane.min(axis=0), p_plane.max(axis=0)
    width = max(hi[1] - lo[1], 1e-3)
    height = hi[2] - (0.0 if has_plane else lo[2])
    hidden = max(width, 0.5 * height) * max(cfg.fallback_thickness, 1.0) + cfg.margin_m
    side = cfg.margin_m + (0.5 * hidden if open_fraction > 0.02 else 0.0)
    lo = np.array([lo[0] - side, lo[1] - side, 0.0 if has_plane else lo[2] - hidden])
    hi = np.array([hi[0] + hidden, hi[1] + side, hi[2] + cfg.margin_m])
    voxel = float(np.max(hi - lo)) / cfg.resolution
    return _Grid.spanning(lo, hi, voxel, T_cam_from_plane), width, hidden


def _complete_with_prior(
    grid: _Grid,
    candidate: np.ndarray,
    p_plane: np.ndarray,
    space: _FreeSpace,
    width: float,
    hidden: float,
    has_plane: bool,
    cfg: DepthBackendConfig,
) -> tuple[np.ndarray, str, float, np.ndarray]:
    """Occupancy (flat) of the hidden side from a vertical symmetry, else (lying objects) the top-bottom flip, else
    the bounded thickness prior; and the points the shape rests on (plane frame): the visible ones and, with a
    vertical symmetry, their mirror images."""
    prior, consistency, occ, support = "thickness", 0.0, None, p_plane
    hypotheses = _symmetry_hypotheses(p_plane, space, grid.to_cam, grid.voxel, hidden, cfg) if cfg.use_symmetry else []
    own_sil = space.in_own_silhouette(grid.to_cam(grid.centres)) if space.unknown.any() else None
    lying = cfg.use_symmetry and has_plane and not hypotheses
    flip = _flip_hypotheses(p_plane, space, grid.to_cam, grid.voxel, cfg) if lying else []
    if flip:
        # Lying on the table: each column of the footprint is object from its visible top down to the table. The
        # flip's own symmetric hull (one height for the whole object) carved the handle of a hammer, lower than
        # its head, from below (dev sweep, seeds 100-101: hammers 0.58-0.61 -> 0.51-0.56 IoU; columns: 0.70).
        occ = candidate & _under_visible_surface(grid, p_plane)
        return (occ if own_sil is None else occ & own_sil), "symmetry:flip", flip[0][1], p_plane
    cand_idx = np.flatnonzero(candidate)
    seen_footprint = _in_footprint(grid, cand_idx, p_plane[:, :2]) if own_sil is not None and hypotheses else None
    best_volume = None
    for hypothesis, score in hypotheses:
        # Among the hypotheses about as consistent as the best, the one giving the smallest object: every one of
        # them explains the observation, the smallest claims the least unseen volume.
        if score < hypotheses[0][1] - 0.01:
            break
        # The symmetric visual hull: a voxel is kept when it and its mirror image may both be object, and one of
        # the two is seen in the object's own silhouette: behind an occluder the object is completed only as the
        # mirror image of what was seen (else the unseen gap between an occluder and the object fills up).
        # Dev sweep (seeds 100-101) for the footprint exception below: occluding bucket median IoU 0.380 -> 0.638
        # (hull 0.428), 3 objects better, none worse by more than 0.02.
        mirrored = grid.to_cam(_reflect(grid.centres[cand_idx], hypothesis))
        mirror_ok, mirror_sil = space.possible_in_silhouette(mirrored)
        possible_m = mirror_ok
        if own_sil is not None:
            # Or, hidden both ways, it lies within the footprint of the visible points: the object was seen on
            # both sides of the occluder (a box behind a bottle standing across its middle came out holed through).
            possible_m = mirror_ok & (own_sil[cand_idx] | mirror_sil | seen_footprint)
        volume = int(np.count_nonzero(possible_m))
        if best_volume is None or volume < best_volume:
            best_volume, consistency, prior, best = volume, score, f"symmetry:{hypothesis[0]}", hypothesis
            support = np.concatenate([p_plane, _reflect(p_plane, hypothesis)])
            occ, fillable = np.zeros_like(candidate), np.zeros_like(candidate)
            occ[cand_idx[possible_m]] = True
            fillable[cand_idx[mirror_ok]] = True
    if occ is not None:
        # Trimmed after the choice: trimming first would favour the hypotheses whose mirror image covers least.
        idx = np.flatnonzero(occ)
        occ[idx[~_in_symmetric_footprint(grid, idx, p_plane, best)]] = False
    else:
        occ = _thickness_prior(grid, candidate, p_plane, width, cfg)
        fillable = candidate
        if own_sil is not None:
            # Like the symmetric hull: the object is completed where it was seen (in its own silhouette), not in
            # every gap behind an occluder beside it (a power drill lying between two objects grew a 15 cm slab).
            occ &= own_sil
    # Only for an object whose foot is not seen: where it is, the space under an overhang hidden by another object
    # (a pitcher's handle behind a bottle) is not object.
    if own_sil is not None and p_plane[:, 2].min() > max(cfg.min_thickness_m, 2 * grid.voxel):
        occ |= _down_to_the_table(grid, occ, fillable & ~own_sil)
    return occ, prior, consistency, support


def _down_to_the_table(grid: _Grid, occ: np.ndarray, hidden_by_other: np.ndarray) -> np.ndarray:
    """(N,) bool: voxels hidden only by another object (``hidden_by_other``, flat) below an occupied voxel of the
    same column. Called when no visible point reaches the table: the object stands on it, so behind the occluder in
    front of its foot it continues down (a sugar box seen above a cracker box came out as its visible top, IoU 0.28).
    Only where its own silhouette says nothing (there the symmetry decides) and, with a symmetry, where the mirror
    image is possible too."""
    occ3 = occ.reshape(grid.dims)
    below = np.flip(np.maximum.accumulate(np.flip(occ3, axis=2), axis=2), axis=2)
    return below.ravel() & hidden_by_other


def _in_symmetric_footprint(
    grid: _Grid, idx: np.ndarray, p_plane: np.ndarray, hypothesis: tuple[str, float, float]
) -> np.ndarray:
    """(len(idx),) bool: the voxels (flat indices) whose column lies within a voxel of the convex footprint of the
    visible points and their mirror images. The symmetric visual hull alone keeps any voxel hidden twice: one behind
    the object's own surface (its shadow) whose mirror image lies behind an occluder in front of it. That grew slabs
    along the view direction at the foot of partly occluded objects (Chamfer 17-21 mm where the hull has 6-8). The
    object is what was seen and its mirror image, down to the table: nothing in the evidence reaches beyond that."""
    return _in_footprint(grid, idx, np.concatenate([p_plane[:, :2], _reflect(p_plane, hypothesis)[:, :2]]))


def _in_footprint(grid: _Grid, idx: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(len(idx),) bool: the voxels (flat indices) whose column lies within a voxel of the convex hull of ``xy``
    (plane frame)."""
    try:
        hull = ConvexHull(xy)
    except QhullError:
        return np.ones(len(idx), dtype=bool)
    nx, ny, nz = grid.dims
    cx = grid.lo[0] + (np.arange(nx) + 0.5) * grid.voxel
    cy = grid.lo[1] + (np.arange(ny) + 0.5) * grid.voxel
    inside = np.ones((nx, ny), dtype=bool)
    for a, b, c in hull.equations:  # unit normals: the offset is a distance
        inside &= a * cx[:, None] + b * cy[None, :] + c <= grid.voxel
    return inside.ravel()[idx // nz]


def _thickness_prior(
    grid: _Grid, candidate: np.ndarray, p_plane: np.ndarray, width: float, cfg: DepthBackendConfig
) -> np.ndarray:
    """Bounded thickness: the hidden side ends a visible width behind the farthest visible point, and no farther
    sideways from the visible footprint than that."""
    reach = cfg.fallback_thickness * width
    near = candidate & (grid.centres[:, 0] <= p_plane[:, 0].max() + reach)
    y = grid.centres[:, 1]
    return near & (y >= p_plane[:, 1].min() - reach) & (y <= p_plane[:, 1].max() + reach)


def _visible_shell(
    grid: _Grid,
    candidate: np.ndarray,
    behind: np.ndarray,
    space: _FreeSpace,
    thickness: float,
) -> np.ndarray:
    """Flat indices of the voxels within ``thickness`` behind the visible surface, behind the object's own pixels
    only (behind the dilated ring the camera sees the table, and a shell there is a skirt on the table)."""
    with np.errstate(invalid="ignore"):
        shell = np.flatnonzero(candidate & (behind <= thickness))
    _, own, _, _ = space.classify(grid.to_cam(grid.centres[shell]))
    return shell[own]


def complete_from_depth(inp: ReconstructionInput, cfg: DepthBackendConfig) -> tuple[DepthCompletion, np.ndarray]:
    """Occupancy of the object from one RGB-D view. Returns the completion and the visible points (camera frame)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    depth, mask, points = _visible_points(inp, cfg)
    timings["backproject"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plane, plane_source = estimate_support_plane(inp, depth, mask, points, cfg)
    T_cam_from_plane = _plane_frame(plane, points)
    p_plane = apply_transform(np.linalg.inv(T_cam_from_plane), points)
    timings["plane"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    unknown = _unknown_pixels(inp, depth, mask, plane, cfg)
    open_fraction = _open_boundary(mask, unknown)
    grid, width, hidden = _make_grid(p_plane, T_cam_from_plane, plane is not None, open_fraction, cfg)
    mask_dilated = ndimage.binary_dilation(mask, iterations=cfg.mask_dilate_px) if cfg.mask_dilate_px else mask
    noise = _noise_image(inp.intrinsics, depth, mask, plane, cfg)
    loose = np.maximum(cfg.depth_noise_m, noise) + 0.5 * grid.voxel
    space = _FreeSpace(inp.intrinsics, depth, mask_dilated, loose, unknown=unknown, own=mask)
    # A voxel is object where its centre may be: the noise alone is the allowance. The half voxel more, kept for
    # the hypotheses (a voxel in front of the surface may still hold some of it), and the 2 mm floor put the
    # surface that much in front of the seen one: objects came out ~2 mm too high and 11% too large (dev seeds
    # 100-101, median), see DepthBackendConfig.carve_noise_m.
    tight = np.maximum(cfg.carve_noise_m, noise)
    candidate, _, _, behind = _FreeSpace(
        inp.intrinsics, depth, mask_dilated, tight, unknown=unknown, own=mask
    ).classify(grid.to_cam(grid.centres))
    timings["carve"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    occ, prior, consistency, support = _complete_with_prior(
        grid, candidate, p_plane, space, width, hidden, plane is not None, cfg
    )
    working = grid
    occ, prior, checks, field, grid, walls = _finish(
        occ, prior, grid, candidate, behind, p_plane, support, space, mask, cfg
    )
    if "hollow" not in prior and _sees_into_opening(working, p_plane, space, cfg):
        # An opening the cavity test did not take (a mug from 32 deg shows only its far wall's inside, no inner
        # bottom): completed as a solid, which it is not; the confidence says so (depth_confidence).
        prior += "+open"
    if prior.startswith("fallback"):
        consistency = 0.0
    timings["complete"] = time.perf_counter() - t0
    logger.debug(
        "depth completion: plane=%s prior=%s consistency=%.2f grid=%s voxel=%.1f mm open=%.2f",
        plane_source,
        prior,
        consistency,
        grid.dims,
        grid.voxel * 1e3,
        open_fraction,
    )
    completion = DepthCompletion(
        occ,
        grid.T_cam_from_index,
        plane,
        plane_source,
        prior,
        consistency,
        timings,
        coverage=checks["coverage"],
        dropped=checks["dropped"],
        open_fraction=open_fraction,
        surface_field=field,
        thin_wall=None
        if walls is None
        else functools.partial(_thin_vertices, grid.T_cam_from_plane, *walls, grid.voxel),
        sliver=_border_sliver(mask),
    )
    return completion, points


def _finish(
    occ: np.ndarray,
    prior: str,
    grid: _Grid,
    candidate: np.ndarray,
    behind: np.ndarray,
    p_plane: np.ndarray,
    support: np.ndarray,
    space: _FreeSpace,
    mask: np.ndarray,
    cfg: DepthBackendConfig,
) -> tuple[np.ndarray, str, dict[str, float], np.ndarray | None, _Grid, tuple[Revolution, Revolution] | None]:
    """Hollow cavities, the visible shell, one solid, and the fallback when the result contradicts the view.
    ``support``: the points the completion rests on (visible and mirrored, plane frame). Also returns the wall's
    field for the mesh of an open container (None otherwise), the grid of the result and, for a revolved wall
    thinner than that grid holds, the (held, measured) walls its mesh goes from and to (see _thin_wall)."""
    cavity = _cavity_columns(grid, p_plane, cfg)
    shell_m = max(cfg.min_thickness_m, 2 * grid.voxel)
    if cavity is not None:
        # Seen into a cavity: the object is a wall along what is seen and its mirror image, not solid down to the
        # table (below the inner bottom) nor behind the far wall (its outside, hidden by the wall itself).
        thin = _thin_wall(grid, occ, p_plane, support, space, mask, cfg)
        if thin is not None:
            solid, checks, field, container, walls, revolved = thin
            prior += "+hollow+revolved" if revolved else "+hollow"
            return solid, prior, checks, field, container, walls
        # The thin wall contradicts the view (a mug's handle lost with a fragment): a wall of the prior thickness
        # within the symmetric hull. At least two voxels: a thinner wall breaks into pieces when smoothed.
        shell_m = max(cfg.hollow_wall_m, 2 * grid.voxel)
        occ = _within_wall(grid, occ, support, shell_m)
        prior += "+hollow"
    # What the camera saw is kept whatever the prior says (asymmetric parts such as a spray head or a handle would
    # otherwise be carved by their mirror image).
    shell = _visible_shell(grid, candidate, behind, space, shell_m)
    occ[shell] = True
    solid, checks = _single_solid(occ.reshape(grid.dims), grid, space, mask, shell)
    if _consistent(checks, cfg):
        return solid, prior, checks, None, grid, None
    logger.debug("completion inconsistent with the view (%s): falling back to the column hull", checks)
    # The safe shape is carved with the hypotheses' allowance (noise and half a voxel): carved with the noise alone
    # a neck a voxel thin (a spray bottle's) parts it too, and it keeps only the body.
    column = _column_hull(grid, space.classify(grid.to_cam(grid.centres))[0], p_plane)
    column_m = max(cfg.min_thickness_m, 2 * grid.voxel)
    # Without a cavity the shell above already has this thickness (the column hull is never a container).
    column_shell = shell if shell_m == column_m else _visible_shell(grid, candidate, behind, space, column_m)
    column[column_shell] = True
    if checks["dropped"] > 0.25 and cavity is None:
        # The seen surface came out in pieces (a mirror image carved the neck of a spray bottle under its head): the
        # pieces joined by the column hull between them keep the completed back the hull alone lacks (dev seeds
        # 100-101: windex bottles 0.52-0.64 IoU as the column hull, Chamfer above the baseline's).
        solid, checks = _single_solid((occ | column).reshape(grid.dims), grid, space, mask, shell)
        if _consistent(checks, cfg):
            return solid, prior + "+joined", checks, None, grid, None
    solid, checks = _single_solid(column.reshape(grid.dims), grid, space, mask, column_shell)
    return solid, "fallback:hull", checks, None, grid, None


def _consistent(checks: dict[str, float], cfg: DepthBackendConfig) -> bool:
    """The completion covers the mask where it has depth and kept the seen surface in one piece."""
    return checks["seen_coverage"] >= cfg.min_silhouette_coverage and checks["dropped"] <= 0.25


def _thin_wall(
    working: _Grid,
    hull: np.ndarray,
    p_plane: np.ndarray,
    support: np.ndarray,
    space: _FreeSpace,
    mask: np.ndarray,
    cfg: DepthBackendConfig,
) -> tuple[np.ndarray, dict[str, float], np.ndarray, _Grid, tuple[Revolution, Revolution] | None, bool] | None:
    """(solid, checks, field, grid, walls, revolved) of an open container as a thin wall (reconstruction/hollow.py) on a
    grid over the container alone (the working grid also spans the hidden depth: its voxels, 3 mm for a bowl, are
    coarser than the walls), within a voxel of ``hull`` (the completion on the working grid: the symmetric visual
    hull); None when it contradicts the view. ``revolved``: the wall is the container's surface of revolution
    (``fit_container``); else the seen surfaces and their mirror images carry a wall of the rim's thickness."""
    # The depth noise the walls' faces are placed with: the free-space tolerance less its half working voxel.
    band = float(np.median(space.tol[space.own])) - 0.5 * working.voxel
    finest = _container_voxel(support, cfg)
    # At least 1.5 of the finest voxels (a thinner field loses samples between grid points and breaks into holes).
    thickness, measured = wall_thickness(p_plane, band, 1.5 * finest, cfg.hollow_wall_m)
    logger.debug("hollow wall: rim %.1f mm, wall %.1f mm", 1e3 * measured, 1e3 * thickness)
    # The seen points' normals, estimated once for both walls (the container grid keeps the working grid's pose).
    camera = np.linalg.inv(working.T_cam_from_plane)[:3, 3]
    normals = inward_normals(p_plane, camera)
    # The revolved wall is measured down to half what the grid holds (its mesh is thinned after, _thin_vertices) and
    # what the view resolves: two faces closer than a pixel's footprint are within a pixel of each other.
    pixel = float(np.median(np.linalg.norm(p_plane - camera, axis=1))) / space.intr.fx
    held = max(0.75 * finest, pixel)
    rev = fit_container(p_plane, normals, band, (held, cfg.hollow_wall_m), _unseen_wall(measured, held, cfg), camera)
    if rev is not None:
        out = _wall_solid(
            working, hull, p_plane, support, space, mask, cfg, band, finest, rev.wall, rev, normals, pixel
        )
        if out is not None:
            return *out, True
        logger.debug("revolved wall rejected: mirrored wall instead")
    out = _wall_solid(working, hull, p_plane, support, space, mask, cfg, band, finest, thickness, None, normals, pixel)
    return None if out is None else (*out, False)


def _thin_vertices(
    T_cam_from_plane: np.ndarray,
    held: Revolution,
    measured: Revolution,
    voxel: float,
    vertices: np.ndarray,
    faces: np.ndarray,
) -> np.ndarray:
    """(N, 3) ``vertices`` (camera frame) of the mesh (``faces``) of the ``held`` wall moved onto the ``measured``
    one (see ``hollow.thin_wall_vertices``), within a ``voxel`` of the held wall, no face turned over."""
    plane = apply_transform(np.linalg.inv(T_cam_from_plane), vertices)
    return apply_transform(T_cam_from_plane, thin_wall_vertices(plane, held, measured, voxel, faces))


def _unseen_wall(rim_m: float, held_m: float, cfg: DepthBackendConfig) -> float:
    """Wall thickness (m) of a revolved container where no height shows both faces of its wall (a bowl seen from
    above hides its outside). The wall lies between the thinnest a rigid container has (``hollow_min_wall_m``, or
    what the grid holds, ``held_m``) and the rim's reading (``rim_m``; ``hollow_wall_m`` when not seen): a rim is a
    wall's thickest part (a rolled or flared lip) and pixels and noise widen its band, so the reading bounds the
    wall from above. Of two slabs on the same face the IoU is the ratio of their thicknesses; the geometric mean of
    the bounds makes the worst ratio over that range the least."""
    low = max(cfg.hollow_min_wall_m, held_m)
    high = float(np.clip(rim_m, low, cfg.hollow_wall_m)) if np.isfinite(rim_m) else max(low, cfg.hollow_wall_m)
    return float(np.sqrt(low * high))


def _wall_solid(
    working: _Grid,
    hull: np.ndarray,
    p_plane: np.ndarray,
    support: np.ndarray,
    space: _FreeSpace,
    mask: np.ndarray,
    cfg: DepthBackendConfig,
    band: float,
    finest: float,
    thickness: float,
    rev: Revolution | None,
    normals: np.ndarray,
    pixel: float,
) -> tuple[np.ndarray, dict[str, float], np.ndarray, _Grid, tuple[Revolution, Revolution] | None] | None:
    """(solid, checks, field, grid, walls) of :func:`_thin_wall` for one wall: ``rev``'s surface of revolution, or
    (None) the seen surfaces (``normals``: their inward normals) and their mirror images with a wall of
    ``thickness``; None when it contradicts the view. ``walls``: (held, measured) when ``rev``'s wall is thinner
    than the grid holds (1.5 voxels: a bowl's 1.2 mm wall on its 1.8 mm grid): the field and every check are made
    with the held wall, and the mesh's vertices are moved onto the measured one after (_thin_vertices). ``pixel``:
    a pixel's footprint at the object (m), for the handle rule (_handle)."""
    thin = rev
    if rev is not None:  # the grid holds walls of 1.5 of its voxels; the mesh is thinned to the rest after
        thickness = max(thickness, 1.5 * finest)
        held = np.maximum(rev.thickness, 1.5 * finest)
        # The bottom added where the camera saw none stays as thick as on the checks' grid: it is a plate from the
        # table up (its top face at its thickness), and containers stand on a foot ring that raises their bottom
        # (scans: bowl 1.5 mm, mug 1.8 mm, cups 6 mm), which the view does not show; a thinner plate misses it.
        points = rev.points.copy()
        points[rev.bottom, 1] = held[rev.bottom]
        rev = dataclasses.replace(rev, points=points, thickness=held, wall=thickness)
        thin = dataclasses.replace(thin, points=points, thickness=np.where(rev.bottom, held, thin.thickness))
    # Voxels a third of the wall: three across it keep it whole, finer ones only cost time (a cup: 4x the voxels).
    grid = _container_grid(working, support, cfg, max(finest, thickness / 3.0))
    candidate, _, _, behind = space.classify(grid.to_cam(grid.centres))
    if rev is not None:
        wall = revolution_field(grid.centres, grid.voxel, rev)
        if not revolution_agrees(wall, candidate):
            return None
    else:
        wall = build_wall(grid.centres, grid.voxel, p_plane, support, normals, thickness)
    possible = candidate & _resample_grid(working, ndimage.binary_dilation(hull.reshape(working.dims)), grid)
    possible = ndimage.binary_dilation(possible.reshape(grid.dims)).ravel()
    field = np.where(possible, wall, np.minimum(wall, 0.45))
    # Beside the opening (a handle) the completion stays solid, smoothed as the occupancy's mesh would be.
    margin = thickness + grid.voxel
    # Asked once per column of the grid (its xy are those of every voxel above): the same answer nz times faster.
    columns = grid.centres.reshape(*grid.dims, 3)[:, :, 0, :2].reshape(-1, 2)
    beside = np.repeat(~within_rim(p_plane, band, columns, margin), grid.dims[2])
    in_hull = _resample_grid(working, hull.reshape(working.dims), grid) & candidate
    solid_part = in_hull & beside
    if rev is not None:
        solid_part = _handle(grid, solid_part, in_hull, p_plane, band, margin, pixel)
    smoothed = ndimage.gaussian_filter(solid_part.reshape(grid.dims).astype(np.float32), cfg.smooth_sigma)
    field = np.maximum(field, smoothed.ravel())
    shell = _visible_shell(grid, candidate, behind, space, thickness)
    occ = field > 0.5
    if rev is None:
        occ[shell] = True
    else:  # fragments are judged on the seen voxels the revolved wall holds (it is thinner than the noise band)
        shell = shell[occ[shell]]
    solid, checks = _single_solid(occ.reshape(grid.dims), grid, space, mask, shell)
    logger.debug("%s wall: %s", "revolved" if rev is not None else "mirrored", checks)
    if not _consistent(checks, cfg):
        return None
    # The field decides where it agrees with the solid (sub-voxel wall faces); elsewhere the solid does. A revolved
    # wall already passes through the seen faces: forcing the voxels behind them (within the depth noise) would
    # thicken it outwards by up to a voxel.
    inside = field if rev is not None else np.maximum(field, 0.55)
    field = np.where(solid.ravel(), inside, np.minimum(field, 0.45)).reshape(grid.dims)
    if thin is not None and np.any(thin.thickness < rev.thickness):
        return solid, checks, field, grid, (rev, thin)
    return solid, checks, field, grid, None


#: Seen points a piece beside a container's rim needs to be a handle, as a length (m) at one point per pixel: depth's
#: flying pixels fringe a silhouette in a line a pixel wide, whose count grows as 1 / pixel like this bound's, while a
#: handle's grows with its area, as 1 / pixel^2 (a 10 x 30 mm face: 250 points at 1.2 m and 554 px focal length,
#: against a bound of 14; at 1 mm pixels, the bound is the 30 points it was tuned as, against YCB-Video's 43 flying
#: pixels in front of a mug's rim, fewer than 30 in any one piece).
_HANDLE_SEEN_M = 0.03


def _handle(
    grid: _Grid,
    solid_part: np.ndarray,
    in_hull: np.ndarray,
    p_plane: np.ndarray,
    band: float,
    margin: float,
    pixel: float,
) -> np.ndarray:
    """The solid part beside a revolved container (``solid_part``: the hull beyond ``margin`` of the rim) when the
    camera saw something there (a handle), grown back through the hull (``in_hull``) to the wall it holds on to:
    the revolved wall lies within the rim, a margin away. Nothing when nothing was seen beside the rim: a bowl's
    hull pokes out of its rim wherever its mirror image was off. Only the pieces holding a seen point: the hull's
    image of a handle (a mug turned by 180 deg) beside the far wall is a second handle nothing showed. Both with
    ``_HANDLE_SEEN_M / pixel`` seen points (``pixel``: a pixel's footprint at the object, m)."""
    min_seen = _HANDLE_SEEN_M / pixel
    beside = ~within_rim(p_plane, band, p_plane[:, :2], margin)
    if np.count_nonzero(beside) < min_seen:
        return np.zeros_like(solid_part)
    labels, count = ndimage.label(solid_part.reshape(grid.dims))
    index = np.floor((p_plane[beside] - grid.lo) / grid.voxel).astype(np.int64)
    inside = np.all((index >= 0) & (index < grid.dims), axis=1)
    # A seen point's voxel and its neighbours': carved within the depth noise, the face's own voxel may be empty.
    piece = ndimage.grey_dilation(labels, size=3)[tuple(index[inside].T)]
    seen = np.bincount(piece, minlength=count + 1)
    seen[0] = 0
    solid_part = (seen >= min_seen)[labels].ravel()
    steps = int(np.ceil(margin / grid.voxel)) + 2
    return solid_part | (in_hull & ndimage.binary_dilation(solid_part.reshape(grid.dims), iterations=steps).ravel())


def _container_voxel(support: np.ndarray, cfg: DepthBackendConfig) -> float:
    """The finest voxel of a container's grid: ``cfg.resolution`` along the longest side of its box."""
    return float(np.max(np.ptp(support, axis=0) + 2 * cfg.margin_m)) / cfg.resolution


def _container_grid(grid: _Grid, support: np.ndarray, cfg: DepthBackendConfig, voxel: float) -> _Grid:
    """A grid of ``voxel`` over the support points' box (plus the margin), down to the working grid's floor (the
    table when there is one)."""
    lo = np.maximum(support.min(axis=0) - cfg.margin_m, grid.lo)
    hi = support.max(axis=0) + cfg.margin_m
    return _Grid.spanning(lo, hi, voxel, grid.T_cam_from_plane)


def _resample_grid(grid: _Grid, volume: np.ndarray, target: _Grid) -> np.ndarray:
    """(N,) values of the bool ``volume`` (on ``grid``) at the voxel centres of ``target`` (same plane frame), nearest
    voxel; False outside. Axis by axis, as the target's voxels lie on a regular grid: a lookup per voxel took
    0.02-0.03 s of a container's grid."""
    index = [np.floor((target.axis(a) - grid.lo[a]) / grid.voxel).astype(np.int64) for a in range(3)]
    ok = [(i >= 0) & (i < n) for i, n in zip(index, grid.dims, strict=True)]
    out = np.zeros(target.dims, dtype=bool)
    out[np.ix_(*ok)] = volume[np.ix_(*(i[k] for i, k in zip(index, ok, strict=True)))]
    return out.ravel()


def _within_wall(grid: _Grid, occ: np.ndarray, support: np.ndarray, wall: float) -> np.ndarray:
    """The voxels of ``occ`` (flat) within ``wall`` of a support point: an open container's wall, measured in 3D
    (along the view ray a wall seen at a grazing angle would come out thinner than it is)."""
    idx = np.flatnonzero(occ)
    dist = cKDTree(support).query(grid.centres[idx], distance_upper_bound=wall)[0]
    out = np.zeros_like(occ)
    out[idx[np.isfinite(dist)]] = True
    return out


def _column_hull(grid: _Grid, candidate: np.ndarray, p_plane: np.ndarray) -> np.ndarray:
    """The safe shape: the convex hull of the visible points and their footprint on the support plane (the object
    stands on it), minus what the camera saw through. It claims no hidden depth beyond the visible extent, so it is
    never much worse than the convex-hull baseline, and it is one solid."""
    footprint = p_plane.copy()
    footprint[:, 2] = 0.0
    try:
        hull = ConvexHull(np.concatenate([p_plane, footprint]))
    except QhullError:
        return candidate.copy()
    idx = np.flatnonzero(candidate)
    # Half-space test face by face on the voxels still inside, one contiguous coordinate array each: a (N, 3) @ (3,)
    # product per face over a gathered copy took ~30 s for a 900-face hull (a windex bottle) on a busy machine.
    x, y, z = (np.ascontiguousarray(grid.centres[idx, k]) for k in range(3))
    for a, b, c, d in hull.equations:
        keep = a * x + b * y + c * z + d <= 0.5 * grid.voxel
        if not keep.all():
            idx, x, y, z = idx[keep], x[keep], y[keep], z[keep]
    out = np.zeros_like(candidate)
    out[idx] = True
    return out


def _single_solid(
    occ: np.ndarray, grid: _Grid, space: _FreeSpace, mask: np.ndarray, shell: np.ndarray
) -> tuple[np.ndarray, dict[str, float]]:
    """One solid: close one-voxel gaps (a thin neck carved by a mirror image), keep the largest component (a
    grasp planner given fragments fails), fill internal voids. Also how consistent it is with the view: the
    fraction of the mask its projection covers, and the fraction of the visible surface (``shell``, flat indices)
    lost with the dropped fragments. Fragments in unseen space only (behind an occluder) are guesses the evidence
    never supported: dropping them costs nothing; losing seen surface means the completion broke the object."""
    if not occ.any():
        raise ReconstructionError(
            "free-space carving removed the whole object (is the depth consistent with the mask?)"
        )
    occ = ndimage.binary_closing(np.pad(occ, 1), iterations=1)[1:-1, 1:-1, 1:-1]
    # The component holding most of the seen surface, not the largest: behind an occluder a guessed blob can be
    # bigger than the object itself.
    labels, count = ndimage.label(occ)
    if count > 1:
        seen = np.bincount(labels.ravel()[shell], minlength=count + 1)
        seen[0] = 0
        keep = int(np.argmax(seen)) if seen.any() else int(np.argmax(np.bincount(labels.ravel())[1:]) + 1)
        occ = labels == keep
    occ = _fill_holes(occ)
    dropped = 1.0 - float(np.count_nonzero(occ.ravel()[shell])) / max(1, len(shell))
    centres = grid.to_cam(grid.centres[occ.ravel()])
    z = np.maximum(centres[:, 2], 1e-6)
    u = np.round(space.intr.fx * centres[:, 0] / z + space.intr.cx).astype(np.int64)
    v = np.round(space.intr.fy * centres[:, 1] / z + space.intr.cy).astype(np.int64)
    ok = (u >= 0) & (u < space.intr.width) & (v >= 0) & (v < space.intr.height)
    covered = np.zeros_like(mask)
    covered[v[ok], u[ok]] = True
    # Voxels are coarser than pixels: a voxel covers the pixels within half its footprint.
    px = max(1, int(np.ceil(0.5 * grid.voxel * space.intr.fx / float(np.median(z)))))
    covered = ndimage.binary_dilation(covered, iterations=px)
    coverage = float(np.count_nonzero(covered & mask)) / max(1, np.count_nonzero(mask))
    # Where the mask has no depth nothing was seen for the completion to cover: the consistency test asks for the
    # pixels with depth (a structured-light sensor lost the top half of a bleach bottle, dev seed 101: the
    # symmetric completion, complete where seen, gave way to the column hull, IoU 0.38 vs the baseline's 0.43).
    # The confidence keeps the whole mask's coverage: a mask without depth is a gap in the evidence.
    seen = mask & np.isfinite(space.depth)
    seen_coverage = float(np.count_nonzero(covered & seen)) / max(1, np.count_nonzero(seen))
    return occ, {"coverage": coverage, "seen_coverage": seen_coverage, "dropped": dropped}


def _fill_holes(occ: np.ndarray) -> np.ndarray:
    """``ndimage.binary_fill_holes(occ)``, the same voxels, in one labelling pass instead of dilating from the
    border until nothing changes (tens of passes over the grid): a hole is a component of the background, connected
    as binary_fill_holes connects it (faces only), that touches no side of the grid."""
    labels, count = ndimage.label(~occ)
    if not count:
        return occ.copy()
    sides = [np.take(labels, i, axis=a).ravel() for a in range(labels.ndim) for i in (0, -1)]
    outside = np.zeros(count + 1, dtype=bool)
    outside[np.concatenate(sides)] = True
    outside[0] = False  # label 0 is the object itself
    return ~outside[labels]


def _sees_into_opening(grid: _Grid, p_plane: np.ndarray, space: _FreeSpace, cfg: DepthBackendConfig) -> bool:
    """The camera sees into the object through an opening in its top (``hollow.seen_through_opening``)."""
    band = float(np.median(space.tol[space.own])) - 0.5 * grid.voxel
    camera = np.linalg.inv(grid.T_cam_from_plane)[:3, 3]
    through = seen_through_opening(p_plane, camera, band, cfg.cavity_min_depth_m)
    return through >= max(_MIN_OPENING_POINTS, _MIN_OPENING_FRACTION * len(p_plane))


def _cavity_columns(grid: _Grid, p_plane: np.ndarray, cfg: DepthBackendConfig) -> np.ndarray | None:
    """(N,) bool: voxels in the columns where the camera sees into a cavity, or None when it sees none.

    A top-down height map of the visible points; a cell is inside a cavity when the rim around it is higher on all
    four sides (the running maximum from each side) by more than ``cavity_min_depth_m``: the inner bottom of a bowl
    or a mug seen from above. A box, a can or a bottle has no visible surface below a surrounding rim."""
    cell = 2.0 * grid.voxel
    ij = np.floor((p_plane[:, :2] - grid.lo[:2]) / cell).astype(int)
    shape = tuple(int(n) for n in ij.max(axis=0) + 1)
    top = np.full(shape, -np.inf)
    np.maximum.at(top, (ij[:, 0], ij[:, 1]), p_plane[:, 2])
    seen = np.isfinite(top)
    rim = np.minimum.reduce(
        [
            np.maximum.accumulate(top, axis=0),
            np.maximum.accumulate(top[::-1], axis=0)[::-1],
            np.maximum.accumulate(top, axis=1),
            np.maximum.accumulate(top[:, ::-1], axis=1)[:, ::-1],
        ]
    )
    with np.errstate(invalid="ignore"):
        inside = seen & (rim - top > cfg.cavity_min_depth_m)
    # A handful of cells is noise or a crease, not a cavity.
    if np.count_nonzero(inside) < max(4, 0.1 * np.count_nonzero(seen)):
        return None
    cij = np.floor((grid.centres[:, :2] - grid.lo[:2]) / cell).astype(int)
    ok = (cij[:, 0] >= 0) & (cij[:, 0] < shape[0]) & (cij[:, 1] >= 0) & (cij[:, 1] < shape[1])
    out = np.zeros(len(grid.centres), dtype=bool)
    out[ok] = inside[cij[ok, 0], cij[ok, 1]]
    return out


def _reflect(points: np.ndarray, hypothesis: tuple[str, float, float]) -> np.ndarray:
    """Apply a symmetry hypothesis (plane frame): ``("mirror", phi, c)`` reflects about the vertical plane with
    horizontal normal at angle ``phi`` from the view direction and offset ``c``; ``("rot180", cx, cy)`` turns by
    180 deg about the vertical axis through (cx, cy); ``("flip", h, 0)`` reflects about the horizontal plane at
    height ``h``."""
    kind, a, b = hypothesis
    out = points.copy()
    if kind == "mirror":
        n = np.array([np.cos(a), np.sin(a), 0.0])
        out -= 2.0 * (points @ n - b)[:, None] * n
    elif kind == "flip":
        out[:, 2] = 2 * a - points[:, 2]
    else:
        out[:, 0] = 2 * a - points[:, 0]
        out[:, 1] = 2 * b - points[:, 1]
    return out


def _reflect_family(points: np.ndarray, family: list[tuple[str, float, float]]) -> np.ndarray:
    """``np.concatenate([_reflect(points, h) for h in family])``, the same numbers, in one vectorised pass for a
    family that varies only the offset (mirrors at one angle, or turns about axes on one line)."""
    kind, a, b = family[0]
    if kind == "mirror" and all(h[0] == kind and h[1] == a for h in family):
        n = np.array([np.cos(a), np.sin(a), 0.0])
        offsets = np.array([h[2] for h in family])
        out = points[None] - (2.0 * (points @ n - offsets[:, None]))[..., None] * n
    elif kind == "rot180" and all(h[0] == kind and h[2] == b for h in family):
        out = np.repeat(points[None], len(family), axis=0)
        out[:, :, 0] = 2 * np.array([h[1] for h in family])[:, None] - points[:, 0]
        out[:, :, 1] = 2 * b - points[:, 1]
    else:
        return np.concatenate([_reflect(points, h) for h in family])
    return out.reshape(-1, 3)


def _symmetry_hypotheses(
    p_plane: np.ndarray, space: _FreeSpace, to_cam, voxel: float, hidden: float, cfg: DepthBackendConfig
) -> list[tuple[tuple[str, float, float], float]]:
    """Symmetries of the object consistent with the free space, best first, as (hypothesis, consistency).

    Families: vertical mirror planes at angles across the view direction (bottles, mugs along their handle) and a
    180 deg turn about a vertical axis (boxes at any yaw, cans, fruit). Within a family the offset is the first one
    whose consistency is within a point of the family's best: consistency rises gradually towards the true position
    (depth tolerance), and the smallest offset is the tightest shape the evidence allows.
    """
    rng = np.random.default_rng(0)
    sample = p_plane[rng.choice(len(p_plane), min(len(p_plane), 3000), replace=False)]
    step = voxel

    def scores(family: list[tuple[str, float, float]]) -> np.ndarray:
        # All offsets of a family in one vectorised projection: (K hypotheses x N points).
        mirrored = to_cam(_reflect_family(sample, family))
        possible, in_silhouette = space.possible_in_silhouette(mirrored)
        # Support needs evidence. A mirrored point behind the object's own surface (in its silhouette) is what a
        # symmetric object predicts; one hidden only behind another object is merely not contradicted: it counts
        # half, else a mirror that throws the object behind an occluder scored as well as the true one and won
        # as soon as it was a little more consistent (a pear at 1.5 m extruded 5 cm behind itself).
        own = in_silhouette if space.unknown.any() else True
        supported = possible * np.where(own, 1.0, 0.5)
        return supported.reshape(len(family), len(sample)).mean(axis=1)

    families: list[list[tuple[str, float, float]]] = []
    for phi in np.deg2rad(np.arange(-60.0, 61.0, 15.0)):
        n = np.array([np.cos(phi), np.sin(phi), 0.0])
        proj = sample @ n
        # A symmetry plane passes through the object: within the visible extent, plus (along the view direction)
        # part of the hidden depth, for objects whose visible side is the front half only.
        c_max = proj.max() + 0.5 * hidden * abs(np.cos(phi))
        families.append([("mirror", float(phi), float(c)) for c in np.arange(proj.min(), c_max, step)])
    cy = 0.5 * float(sample[:, 1].min() + sample[:, 1].max())
    x_range = np.arange(sample[:, 0].min(), sample[:, 0].max() + 0.5 * hidden, step)
    families.append([("rot180", float(cx), cy) for cx in x_range])
    found = []
    for family in families:
        if not family:
            continue
        family_scores = scores(family)
        best = float(family_scores.max())
        if best >= cfg.symmetry_min_consistency:
            i = int(np.argmax(family_scores >= best - 0.01))
            found.append((family[i], float(family_scores[i])))
    found.sort(key=lambda hs: -hs[1])
    return found


def _flip_hypotheses(
    p_plane: np.ndarray, space: _FreeSpace, to_cam, voxel: float, cfg: DepthBackendConfig
) -> list[tuple[tuple[str, float, float], float]]:
    """The horizontal mirror, tried when no vertical symmetry is consistent: an object lying on the table (a drill,
    a hammer, a banana) is about symmetric top to bottom, so its hidden underside lies under its visible top and
    the visible top reflected about half its height falls in the object's own shadow. When it does, the object is
    its visible surface continued down to the table (no farther back); the thickness prior instead filled the whole
    shadow behind it, a wedge as long as the object is high (a lying drill came out twice its volume, IoU 0.37-0.59).
    The height is the lowest one consistent within a point of the best; a reflected point below the table
    contradicts the support plane and counts against it. Returns [(hypothesis, consistency)] or []."""
    rng = np.random.default_rng(0)
    sample = p_plane[rng.choice(len(p_plane), min(len(p_plane), 3000), replace=False)]
    family = [("flip", float(h), 0.0) for h in np.arange(0.5 * sample[:, 2].max(), sample[:, 2].max(), voxel)]
    if not family:
        return []
    flipped = _reflect_family(sample, family)
    possible, _, _, _ = space.classify(to_cam(flipped))
    possible &= flipped[:, 2] >= -voxel
    scores = possible.reshape(len(family), len(sample)).mean(axis=1)
    best = float(scores.max())
    if best < cfg.symmetry_min_consistency:
        return []
    i = int(np.argmax(scores >= best - 0.01))
    return [(family[i], float(scores[i]))]


def _under_visible_surface(grid: _Grid, p_plane: np.ndarray) -> np.ndarray:
    """(N,) bool: voxels in a column of the grid that holds a visible point (gaps of one column closed, holes of
    the footprint filled): the footprint of the visible surface, extruded."""
    nx, ny, nz = grid.dims
    ij = np.floor((p_plane[:, :2] - grid.lo[:2]) / grid.voxel).astype(int)
    ok = (ij[:, 0] >= 0) & (ij[:, 0] < nx) & (ij[:, 1] >= 0) & (ij[:, 1] < ny)
    cells = np.zeros((nx, ny), dtype=bool)
    cells[ij[ok, 0], ij[ok, 1]] = True
    cells = ndimage.binary_fill_holes(ndimage.binary_closing(np.pad(cells, 1))[1:-1, 1:-1])
    return np.repeat(cells.ravel(), nz)
