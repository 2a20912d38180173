"""The one geometry module: support planes (robust fit, orientation, heights, frames), point transforms, and
back-projection / projection of pixels through :class:`z123_ros.camera.CameraIntrinsics`.

Conventions are those of z123_ros.camera: OpenCV camera frame (x right, y down, z forward), transforms named
``T_a_from_b``. A plane is a (4,) float64 ``[n_x, n_y, n_z, d]`` with ``n . p + d = 0``; an *oriented* plane has a unit
normal and the camera origin on its positive side (``d > 0``), so ``n . p + d`` is the height above the plane of a
point on the camera's side. Segmentation and reconstruction both use this module; nothing here imports either.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from z123_ros.camera import CameraIntrinsics, check_rigid, invert, transform_points

__all__ = [
    "PlaneFit",
    "backproject_grid",
    "backproject_pixels",
    "fit_plane_ransac",
    "height_image",
    "invert",
    "least_squares_plane",
    "orient_plane",
    "plane_axes",
    "plane_from_pose",
    "project_points",
    "signed_distance",
    "transform_points",
]


@dataclass
class PlaneFit:
    """A fitted plane and its support."""

    plane: np.ndarray
    """(4,) float64 oriented plane ``[n_x, n_y, n_z, d]`` (unit ``n``, ``d > 0``) in the frame of the points."""
    inliers: np.ndarray
    """(N,) bool: which input points lie within the inlier distance of the final plane."""
    sigma_m: float
    """Robust standard deviation (1.4826 MAD) of the inliers' distances, metres: the depth noise on the plane."""

    @property
    def inlier_fraction(self) -> float:
        """Fraction of the input points that are inliers (0 for no points)."""
        return float(self.inliers.mean()) if self.inliers.size else 0.0


def orient_plane(plane: np.ndarray) -> np.ndarray:
    """(4,) float64 plane with a unit normal and the camera origin on its positive side (``d >= 0``)."""
    plane = np.asarray(plane, dtype=np.float64).ravel()
    if plane.size != 4:
        raise ValueError(f"a plane has 4 coefficients, got {plane.size}")
    norm = np.linalg.norm(plane[:3])
    if not norm > 1e-12:
        raise ValueError("a plane needs a non-zero normal")
    plane = plane / norm
    # Camera origin on the positive side: the objects it sees standing on the plane have positive height.
    return -plane if plane[3] < 0 else plane


def signed_distance(plane: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of (..., 3) points to a unit-normal ``plane``, positive on the side its normal points to."""
    points = np.asarray(points)
    return points @ plane[:3] + plane[3]


def least_squares_plane(points: np.ndarray) -> np.ndarray:
    """Oriented total-least-squares plane of (N >= 3, 3) points."""
    centre = points.mean(axis=0)
    centred = points - centre
    # The eigenvector of the smallest eigenvalue of the 3x3 scatter matrix is the normal of the best-fit plane.
    _, vecs = np.linalg.eigh(np.einsum("ni,nj->ij", centred, centred))
    n = vecs[:, 0]
    return orient_plane(np.array([n[0], n[1], n[2], -float(n @ centre)]))


def _robust_sigma(residual: np.ndarray) -> float:
    if residual.size == 0:
        return 0.0
    return 1.4826 * float(np.median(np.abs(residual - np.median(residual))))


def fit_plane_ransac(
    points: np.ndarray,
    distance_m: float,
    *,
    iterations: int = 200,
    sample_points: int = 1000,
    seed: int | np.random.Generator = 0,
    refine_steps: int = 2,
    min_inliers: int = 3,
    min_inlier_fraction: float = 0.0,
) -> PlaneFit | None:
    """Dominant plane of (N, 3) points by RANSAC, refit by least squares on its inliers.

    All ``iterations`` hypotheses (random point triplets) are drawn at once and scored on one random subsample of
    ``sample_points`` points (vectorised: on ~20 k points this beats Open3D's ``segment_plane`` and needs no import);
    the best is refit on its inliers among all points ``refine_steps`` times.

    Args:
        points: (N, 3) points, any frame.
        distance_m: inlier distance to the plane.
        iterations: hypotheses drawn.
        sample_points: points each hypothesis is scored on.
        seed: seed or generator of the sampler: the same points always give the same plane.
        refine_steps: least-squares refits on the inliers.
        min_inliers: fewer inliers (or input points) than this: no plane.
        min_inlier_fraction: a smaller inlier fraction than this: no plane.

    Returns:
        The oriented plane with its inliers, or None when there are too few points or inliers, or every sample was
        degenerate (collinear).
    """
    points = np.asarray(points, dtype=np.float64)
    n_points = len(points)
    if n_points < max(3, min_inliers):
        return None
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    idx = rng.integers(0, n_points, size=(iterations, 3))
    p0, p1, p2 = points[idx[:, 0]], points[idx[:, 1]], points[idx[:, 2]]
    normals = np.cross(p1 - p0, p2 - p0)
    norms = np.linalg.norm(normals, axis=1)
    ok = norms > 1e-12
    if not np.any(ok):
        return None
    normals = normals[ok] / norms[ok, None]
    offsets = -np.einsum("ij,ij->i", normals, p0[ok])
    sub = points if n_points <= sample_points else points[rng.choice(n_points, sample_points, replace=False)]
    # (S, M) distances in float32 (millimetre thresholds), by broadcasting: a (S, 3) x (3, M) product is too thin
    # for BLAS to win, and its worker threads stall badly on a busy machine.
    sub32, nt = sub.astype(np.float32), normals.T.astype(np.float32)
    dist = sub32[:, 0:1] * nt[0] + sub32[:, 1:2] * nt[1] + (sub32[:, 2:3] * nt[2] + offsets.astype(np.float32))
    best = int(np.argmax((np.abs(dist) < distance_m).sum(axis=0)))
    plane = orient_plane(np.array([*normals[best], offsets[best]]))
    inliers = np.abs(signed_distance(plane, points)) < distance_m
    for _ in range(refine_steps):
        if inliers.sum() < 3:
            break
        plane = least_squares_plane(points[inliers])
        inliers = np.abs(signed_distance(plane, points)) < distance_m
    count = int(inliers.sum())
    if count < min_inliers or count < min_inlier_fraction * n_points:
        return None
    return PlaneFit(plane=plane, inliers=inliers, sigma_m=_robust_sigma(signed_distance(plane, points[inliers])))


def plane_axes(plane: np.ndarray) -> np.ndarray:
    """(3, 3) rows ``e1, e2, n``: a right-handed orthonormal frame whose third axis is the plane normal."""
    n = np.asarray(plane[:3], dtype=np.float64)
    n = n / np.linalg.norm(n)
    helper = np.array([1.0, 0.0, 0.0]) if abs(n[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(helper, n)
    e1 /= np.linalg.norm(e1)
    return np.stack([e1, np.cross(n, e1), n])


def plane_from_pose(T_cam_from_world: np.ndarray) -> np.ndarray:
    """The world plane z = 0 in the camera frame, oriented (world +z up is the camera's side when it is above)."""
    T = check_rigid(T_cam_from_world, "T_cam_from_world")
    n = T[:3, 2]
    return orient_plane(np.array([*n, -float(n @ T[:3, 3])]))


def backproject_pixels(intrinsics: CameraIntrinsics, u: np.ndarray, v: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points of pixels ``(u, v)`` at z-depth ``z`` (broadcast together), float64."""
    return intrinsics.backproject_pixels(u, v, z)


def project_points(intrinsics: CameraIntrinsics, points_cam: np.ndarray) -> np.ndarray:
    """(N, 2) pixel coordinates (u, v) of (N, 3) camera-frame points with z > 0."""
    return intrinsics.project(points_cam)


def backproject_grid(
    intrinsics: CameraIntrinsics, depth_m: np.ndarray, stride: int, offset: int | None = None
) -> np.ndarray:
    """(h, w, 3) float64 points of every ``stride``-th pixel, starting at ``offset`` (default ``stride // 2``, the
    centre of each stride x stride cell, so the grid is symmetric in the image); NaN where the depth is missing."""
    off = stride // 2 if offset is None else offset
    z = np.asarray(depth_m)[off::stride, off::stride].astype(np.float64)
    us = np.arange(off, depth_m.shape[1], stride, dtype=np.float64)
    vs = np.arange(off, depth_m.shape[0], stride, dtype=np.float64)
    return intrinsics.backproject_pixels(us[None, :], vs[:, None], z)


def height_image(
    plane: np.ndarray, depth_m: np.ndarray, intrinsics: CameraIntrinsics, box: tuple[slice, slice] | None = None
) -> np.ndarray:
    """(H, W) float32 height above ``plane`` of every pixel of ``depth_m[box]`` (NaN without depth).

    The height of pixel (u, v) at depth z is ``z * (n . ray(u, v)) + d``, with ``ray`` the pixel's back-projection at
    unit depth: one ray per row and column, so a VGA image costs two vector products, not 300 k points.
    """
    H, W = depth_m.shape
    rows, cols = (slice(0, H), slice(0, W)) if box is None else box
    u = np.arange(cols.start or 0, W if cols.stop is None else cols.stop, dtype=np.float64)
    v = np.arange(rows.start or 0, H if rows.stop is None else rows.stop, dtype=np.float64)
    ray_u = intrinsics.backproject_pixels(u, np.zeros_like(u), 1.0)  # x of each column's ray
    ray_v = intrinsics.backproject_pixels(np.zeros_like(v), v, 1.0)  # y of each row's ray
    n = np.asarray(plane[:3], dtype=np.float64)
    along = (n[0] * ray_u[:, 0])[None, :] + (n[1] * ray_v[:, 1] + n[2])[:, None]
    return (depth_m[rows, cols] * along.astype(np.float32) + np.float32(plane[3])).astype(np.float32)
