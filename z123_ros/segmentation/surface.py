"""Surface cues on the coarse grid: the sensor's depth noise at each range, surface normals, and the links between
neighbouring samples with what separates them (a depth step beyond the noise, a colour change, a concave crease).

The convexity test is that of LCCP (Stein, Schoeler, Papon, Woergoetter, "Object Partitioning using Local Convexity",
CVPR 2014): two adjacent surface patches with centroids ``x1, x2`` and normals ``n1, n2`` are convexly connected when
``(n1 - n2) . (x1 - x2) > 0``, and the connection is cut only when it is concave *and* the normals differ by more
than a threshold angle (LCCP: 10 deg; here also at least three times the normals' own noise at that range). Objects
are convex or meet their neighbours along concave creases; a printed carton's top meets its side along a *convex*
edge, so the edge it is seen along never separates the carton.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

#: Neighbour offsets (dv, du) of the 8-neighbour grid, each pair counted once.
NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))


def depth_sigma(z: np.ndarray, base_m: float, quad_m: float, z0_m: float) -> np.ndarray:
    """Axial depth noise (1 sigma, metres) at range ``z``: ``base + quad * (z - z0)^2`` (the Kinect v1 / Xtion model
    of Nguyen, Izadi and Lovell 2012; with quad = 0 a constant floor)."""
    return base_m + quad_m * np.square(np.maximum(np.asarray(z) - z0_m, 0.0))


def grid_normals(points: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(h, w, 3) unit normals of the coarse grid, facing the camera; NaN where a neighbour is missing.

    The points are first averaged over 3x3 valid samples (the average of the depth noise shrinks by 3), then the
    normal is the cross product of the central differences along the grid's two axes.
    """
    w8 = valid.astype(np.float32)
    p = np.where(valid[..., None], points, 0.0).astype(np.float32)
    count = cv2.boxFilter(w8, -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    smooth = np.stack(
        [cv2.boxFilter(p[..., c], -1, (3, 3), normalize=False, borderType=cv2.BORDER_CONSTANT) for c in range(3)], -1
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        smooth = smooth / count[..., None]
    smooth[~valid] = np.nan
    du = np.full(smooth.shape, np.nan, dtype=np.float32)
    dv = np.full(smooth.shape, np.nan, dtype=np.float32)
    du[:, 1:-1] = smooth[:, 2:] - smooth[:, :-2]
    dv[1:-1] = smooth[2:] - smooth[:-2]
    n = np.cross(du, dv)
    norm = np.linalg.norm(n, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = n / norm
    # Face the camera: a visible surface's normal points back along the ray (n . p < 0).
    flip = np.einsum("hwc,hwc->hw", n, np.nan_to_num(points)) > 0
    n[flip] *= -1
    return n


@dataclass
class Links:
    """Every pair of 8-neighbours on the grid with at least one foreground end, flat over the grid."""

    a: np.ndarray
    """(M,) flat grid index of one end."""
    b: np.ndarray
    """(M,) flat grid index of the other end."""
    linked: np.ndarray
    """(M,) bool: both ends foreground and closer in 3D than the link tolerance (one surface)."""
    gap: np.ndarray
    """(M,) 3D distance between the ends, inf when either is not foreground."""
    same_colour: np.ndarray | None
    """(M,) bool: colour difference below the colour edge threshold; None without colour."""
    concave: np.ndarray
    """(M,) bool: a concave crease beyond the normals' noise (LCCP criterion); False where normals are missing."""
    concave_weak: np.ndarray
    """(M,) bool: a concave crease of half that angle."""
    convex: np.ndarray
    """(M,) bool: a convex crease or a convexly curved surface beyond the normals' noise: one object's surface,
    which a colour edge must not split (a carton's printed top and side, a can's label)."""


def crease_terms(na: np.ndarray, nb: np.ndarray, xa: np.ndarray, xb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M,) cosine between the normals of patches (xa, na) and (xb, nb), and LCCP's convexity ``(na - nb) . (xa -
    xb)`` (negative: concave; swapping the normals flips its sign). NaN where a normal is missing."""
    return np.einsum("mc,mc->m", na, nb), np.einsum("mc,mc->m", na - nb, xa - xb)


def concave_crease(
    na: np.ndarray, nb: np.ndarray, xa: np.ndarray, xb: np.ndarray, min_angle_deg: np.ndarray | float
) -> np.ndarray:
    """(M,) bool: the connection of patches (xa, na) and (xb, nb) is concave and their normals differ by more than
    ``min_angle_deg`` (LCCP). Missing normals give False."""
    cos, convexity = crease_terms(na, nb, xa, xb)
    with np.errstate(invalid="ignore"):
        out = (convexity < 0) & (cos < np.cos(np.radians(min_angle_deg)))
    return np.nan_to_num(out, nan=0).astype(bool)


def normal_noise_deg(sigma_m: np.ndarray, spacing_m: np.ndarray) -> np.ndarray:
    """1-sigma noise (deg) of a :func:`grid_normals` normal: depth noise averaged over 3x3 samples (sigma / 3)
    across a central difference of two grid spacings, in both axes (sqrt 2)."""
    return np.degrees(np.arctan2(np.sqrt(2.0) * sigma_m / 3.0, 2.0 * np.maximum(spacing_m, 1e-6)))
