"""The ``depth`` backend: complete the visible surface with geometric priors. No model weights.

From one RGB-D view the camera tells us three things about the object's volume:

1. the visible surface (back-projected depth inside the mask);
2. free space: every point the camera sees past is empty (in front of the object and around it, down to the table);
3. the support plane: the object stands on it and nothing of it is below.

What remains unknown is the "shadow" behind the visible surface, down to the table. A symmetry hypothesis bounds it:
reflect the object about a vertical plane across the horizontal view direction. The plane's position is the smallest
one for which the reflected visible surface falls in space the camera did not see as empty (so the hypothesis is
consistent with the free space); the object is the unknown space whose mirror image is unknown too (a symmetric
visual hull). When no position is consistent enough, the hidden side gets a bounded thickness instead.
Marching cubes on the resulting occupancy gives a watertight mesh in metres in the camera frame.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import ReconstructionError
from z123_ros.reconstruction.base import (
    DepthBackendConfig,
    ReconstructionInput,
    orient_plane,
    plane_from_pose,
)
from z123_ros.reconstruction.mesh import largest_component

logger = logging.getLogger(__name__)


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


def apply_transform(T: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) points through a 4x4 transform. einsum, not ``@``: a (N, 3) x (3, 3) BLAS call is several times slower
    when the BLAS thread pool competes for busy cores, and this runs millions of points per reconstruction."""
    return np.einsum("ij,nj->ni", T[:3, :3], points) + T[:3, 3]


def fit_plane_ransac(
    points: np.ndarray, inlier_m: float, iterations: int = 200, seed: int = 0
) -> tuple[np.ndarray, np.ndarray] | None:
    """RANSAC + least-squares plane ``(n, d)`` with ``|n| = 1``; returns (plane (4,), inlier mask) or None."""
    if len(points) < 30:
        return None
    rng = np.random.default_rng(seed)
    best_count, best = 0, None
    for _ in range(iterations):
        a, b, c = points[rng.choice(len(points), 3, replace=False)]
        n = np.cross(b - a, c - a)
        norm = np.linalg.norm(n)
        if norm < 1e-12:
            continue
        n /= norm
        count = np.count_nonzero(np.abs((points - a) @ n) < inlier_m)
        if count > best_count:
            best_count, best = count, (n, -float(n @ a))
    if best is None or best_count < max(30, 0.3 * len(points)):
        return None
    n, d = best
    inliers = np.abs(points @ n + d) < inlier_m
    centroid = points[inliers].mean(axis=0)
    # Least-squares refit on the inliers: the normal is the direction of least variance.
    n = np.linalg.svd(points[inliers] - centroid, full_matrices=False)[2][2]
    plane = np.array([*n, -float(n @ centroid)])
    return plane, np.abs(points @ n + plane[3]) < inlier_m


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
    fit = fit_plane_ransac(points, cfg.plane_inlier_m)
    if fit is None:
        return None, "none"
    plane = orient_plane(fit[0])
    heights = object_points @ plane[:3] + plane[3]
    # The object must stand on the plane (mostly above it), else the ring was a wall or another object.
    if np.mean(heights > -cfg.plane_inlier_m) < 0.9:
        logger.debug("fitted ring plane rejected: %.0f%% of the object is below it", 100 * np.mean(heights < 0))
        return None, "none"
    return plane, "fitted"


def _measured_noise(
    intrinsics: CameraIntrinsics, depth: np.ndarray, mask: np.ndarray, plane: np.ndarray | None, cfg: DepthBackendConfig
) -> float:
    """Depth noise allowance (m) measured on the table around the object: 2.5 robust standard deviations of the ring
    points' distances to the support plane (0 without a plane). Real sensors are noisier than the configured floor,
    and an allowance below the noise would call the object's own surface free space."""
    if plane is None:
        return 0.0
    ring = ndimage.binary_dilation(mask, iterations=cfg.plane_ring_px) & ~ndimage.binary_dilation(mask, iterations=3)
    points, _ = intrinsics.backproject(depth, ring)
    if len(points) < 30:
        return 0.0
    residual = np.abs(points @ plane[:3] + plane[3])
    residual = residual[residual < 0.02]  # other objects in the ring are not table
    if len(residual) < 30:
        return 0.0
    return 2.5 * 1.4826 * float(np.median(residual))


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
    """Evaluates, for points in the camera frame, what the camera observed about them."""

    def __init__(
        self, intrinsics: CameraIntrinsics, depth: np.ndarray, mask_dilated: np.ndarray, tolerance_m: float
    ) -> None:
        self.intr, self.depth, self.mask, self.tol = intrinsics, depth, mask_dilated, tolerance_m

    def classify(self, points_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(free, in_mask, in_view, behind_m) for this object.

        - in_view: the point projects into the image, in front of the camera;
        - in_mask: it projects into the (dilated) mask;
        - behind_m: how far (m) it lies behind the observed surface (NaN outside the view);
        - free: it cannot belong to the object, because the camera sees past it, or, outside the mask, because it
          lies on another observed surface (the table): outside its silhouette the object can only hide strictly
          behind what the camera sees.
        """
        z = points_cam[:, 2]
        in_front = z > 1e-6
        zs = np.where(in_front, z, 1.0)
        u = np.round(self.intr.fx * points_cam[:, 0] / zs + self.intr.cx).astype(np.int64)
        v = np.round(self.intr.fy * points_cam[:, 1] / zs + self.intr.cy).astype(np.int64)
        inside = in_front & (u >= 0) & (u < self.intr.width) & (v >= 0) & (v < self.intr.height)
        uc, vc = np.clip(u, 0, self.intr.width - 1), np.clip(v, 0, self.intr.height - 1)
        observed = self.depth[vc, uc]
        in_mask = inside & self.mask[vc, uc]
        margin = np.where(in_mask, self.tol, -self.tol)
        with np.errstate(invalid="ignore"):
            free = inside & np.isfinite(observed) & (observed > z + margin)
        behind = np.where(inside, z - observed, np.nan)
        return free, in_mask, inside, behind


def complete_from_depth(inp: ReconstructionInput, cfg: DepthBackendConfig) -> tuple[DepthCompletion, np.ndarray]:
    """Occupancy of the object from one RGB-D view. Returns the completion and the visible points (camera frame)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    depth = np.asarray(inp.depth_m, dtype=np.float64)
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, np.nan)
    mask = np.asarray(inp.mask, dtype=bool)
    eroded = ndimage.binary_erosion(mask, iterations=cfg.mask_erode_px) if cfg.mask_erode_px > 0 else mask
    points, _ = inp.intrinsics.backproject(depth, eroded)
    if len(points) < 10:  # a thin object: erosion removed it, use the full mask
        points, _ = inp.intrinsics.backproject(depth, mask)
    if len(points) < 4:
        raise ReconstructionError(f"only {len(points)} valid depth pixels inside the mask; need at least 4")
    # Drop flying pixels (mixed foreground/background depth): isolated points, far from their neighbours in 3D.
    # A global depth test would cut tall or long objects, whose depth legitimately spans tens of centimetres.
    if len(points) > 8:
        from scipy.spatial import cKDTree

        spacing = cKDTree(points).query(points, k=6)[0][:, -1]
        points = points[spacing < max(5.0 * float(np.median(spacing)), 0.005)]
    timings["backproject"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    plane, plane_source = estimate_support_plane(inp, depth, mask, points, cfg)
    T_cam_from_plane = _plane_frame(plane, points)
    T_plane_from_cam = np.linalg.inv(T_cam_from_plane)
    p_plane = apply_transform(T_plane_from_cam, points)
    timings["plane"] = time.perf_counter() - t0

    # Working grid in the plane frame: x along the horizontal view direction (away from the camera), z up.
    t0 = time.perf_counter()
    lo, hi = p_plane.min(axis=0), p_plane.max(axis=0)
    width = max(hi[1] - lo[1], 1e-3)
    height = hi[2] - (0.0 if plane is not None else lo[2])
    hidden = max(width, 0.5 * height) * max(cfg.fallback_thickness, 1.0) + cfg.margin_m
    lo = np.array([lo[0] - cfg.margin_m, lo[1] - cfg.margin_m, 0.0 if plane is not None else lo[2] - hidden])
    hi = np.array([hi[0] + hidden, hi[1] + cfg.margin_m, hi[2] + cfg.margin_m])
    voxel = float(np.max(hi - lo)) / cfg.resolution
    dims = np.maximum(np.ceil((hi - lo) / voxel).astype(int), 1)
    T_plane_from_index = np.eye(4)
    T_plane_from_index[:3, :3] = np.eye(3) * voxel
    T_plane_from_index[:3, 3] = lo + 0.5 * voxel
    T_cam_from_index = T_cam_from_plane @ T_plane_from_index

    mask_dilated = ndimage.binary_dilation(mask, iterations=cfg.mask_dilate_px) if cfg.mask_dilate_px else mask
    noise = max(cfg.depth_noise_m, _measured_noise(inp.intrinsics, depth, mask, plane, cfg))
    space = _FreeSpace(inp.intrinsics, depth, mask_dilated, noise + 0.5 * voxel)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in dims], indexing="ij"), axis=-1).reshape(-1, 3)
    centres_plane = idx * voxel + lo + 0.5 * voxel

    def to_cam(p: np.ndarray) -> np.ndarray:
        return apply_transform(T_cam_from_plane, p)

    free, in_mask, _, behind = space.classify(to_cam(centres_plane))
    # Unknown space that belongs to this object: not seen through, behind the object's silhouette.
    candidate = ~free & in_mask
    timings["carve"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    prior, consistency = "thickness", 0.0
    hypotheses = _symmetry_hypotheses(p_plane, space, to_cam, voxel, hidden, cfg) if cfg.use_symmetry else []
    if hypotheses:
        # Among the hypotheses about as consistent as the best, the one giving the smallest object: every one of
        # them explains the observation, the smallest claims the least unseen volume.
        best_volume = None
        for hypothesis, score in hypotheses:
            if score < hypotheses[0][1] - 0.01:
                break
            # Only candidate voxels can end up occupied: test their mirror images, not the whole grid.
            cand_idx = np.flatnonzero(candidate)
            free_m, _, _, _ = space.classify(to_cam(_reflect(centres_plane[cand_idx], hypothesis)))
            occ_h = np.zeros_like(candidate)
            occ_h[cand_idx[~free_m]] = True
            volume = np.count_nonzero(occ_h)
            if best_volume is None or volume < best_volume:
                best_volume, occ, consistency = volume, occ_h, score
                prior = f"symmetry:{hypothesis[0]}"
    if prior == "thickness":
        # Bounded thickness: the hidden side ends a visible width behind the farthest visible point.
        occ = candidate & (centres_plane[:, 0] <= p_plane[:, 0].max() + cfg.fallback_thickness * width)
    # What the camera saw is kept whatever the prior says: a shell behind the visible surface (asymmetric parts such
    # as a spray head or a handle would otherwise be carved by their mirror image). Only behind the object's own
    # pixels: behind the dilated ring the camera sees the table, and a shell there is a skirt on the table.
    with np.errstate(invalid="ignore"):
        shell = np.flatnonzero(candidate & (behind <= max(cfg.min_thickness_m, 2 * voxel)))
    _, own_pixels, _, _ = _FreeSpace(inp.intrinsics, depth, mask, space.tol).classify(to_cam(centres_plane[shell]))
    occ[shell[own_pixels]] = True
    occ = occ.reshape(tuple(dims))
    if not occ.any():
        raise ReconstructionError(
            "free-space carving removed the whole object (is the depth consistent with the mask?)"
        )
    # One solid object without internal cavities: close one-voxel gaps (a thin neck carved by a mirror image), then
    # drop specks; parts of at least a twentieth of the main body stay (a spray head above its bottle).
    occ = ndimage.binary_closing(np.pad(occ, 1), iterations=1)[1:-1, 1:-1, 1:-1]
    occ = ndimage.binary_fill_holes(largest_component(occ, min_fraction=0.05))
    timings["complete"] = time.perf_counter() - t0
    logger.debug(
        "depth completion: plane=%s prior=%s consistency=%.2f grid=%s voxel=%.1f mm",
        plane_source,
        prior,
        consistency,
        tuple(dims),
        voxel * 1e3,
    )
    completion = DepthCompletion(occ, T_cam_from_index, plane, plane_source, prior, consistency, timings)
    return completion, points


def _reflect(points: np.ndarray, hypothesis: tuple[str, float, float]) -> np.ndarray:
    """Apply a symmetry hypothesis (plane frame): ``("mirror", phi, c)`` reflects about the vertical plane with
    horizontal normal at angle ``phi`` from the view direction and offset ``c``; ``("rot180", cx, cy)`` turns by
    180 deg about the vertical axis through (cx, cy)."""
    kind, a, b = hypothesis
    out = points.copy()
    if kind == "mirror":
        n = np.array([np.cos(a), np.sin(a), 0.0])
        out -= 2.0 * (points @ n - b)[:, None] * n
    else:
        out[:, 0] = 2 * a - points[:, 0]
        out[:, 1] = 2 * b - points[:, 1]
    return out


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
        mirrored = np.concatenate([_reflect(sample, h) for h in family])
        free, _, in_view, _ = space.classify(to_cam(mirrored))
        # Support needs evidence: a mirrored point the camera cannot see (outside the image) supports nothing,
        # else a mirror that throws the object out of view would be "consistent".
        supported = ~free & in_view
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
