"""3D reconstruction metrics: Chamfer distance, volumetric IoU, F-score.

Protocol (the one SyncDreamer and later papers use to compare with Zero-1-to-3, whose paper never released its
evaluation code):

- Chamfer distance = mean of the two nearest-neighbour directions between surface samples,
  ``0.5 * (mean_a min_b |a - b| + mean_b min_a |b - a|)`` (distances, not squared).
- Volumetric IoU on a 64^3 occupancy grid spanning the union of both bounding boxes. Occupancy is the generalised
  winding number > 0.5 (``igl.fast_winding_number``), so scanned meshes with small holes still have an inside.
- F-score at a distance threshold: harmonic mean of precision (prediction samples within the threshold of the
  reference) and recall (reference samples within the threshold of the prediction).

Metric results (``ReconstructionResult.metric``) are compared in metres as they are; non-metric results and papers'
numbers use :func:`normalize_to_unit_box` on both meshes first.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import cKDTree

from z123_ros.errors import InputError


def _as_points(points: np.ndarray, name: str) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise InputError(f"{name} must be a non-empty (N, 3) array, got shape {pts.shape}")
    if not np.all(np.isfinite(pts)):
        raise InputError(f"{name} contains NaN or inf")
    return pts


def nearest_distances(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Distance from every point of ``src`` (N, 3) to its nearest neighbour in ``dst`` (M, 3)."""
    src, dst = _as_points(src, "src"), _as_points(dst, "dst")
    return cKDTree(dst).query(src, k=1)[0]


def chamfer_distance(pred_points: np.ndarray, gt_points: np.ndarray) -> float:
    """Symmetric Chamfer distance: the mean of both nearest-neighbour directions, in the points' unit."""
    d_pg = nearest_distances(pred_points, gt_points)
    d_gp = nearest_distances(gt_points, pred_points)
    return float(0.5 * (d_pg.mean() + d_gp.mean()))


def f_score(pred_points: np.ndarray, gt_points: np.ndarray, threshold: float) -> float:
    """F-score at ``threshold`` (same unit as the points): 2PR / (P + R), 0 when both are 0."""
    if not threshold > 0:
        raise InputError(f"f_score threshold must be positive, got {threshold}")
    precision = float((nearest_distances(pred_points, gt_points) < threshold).mean())
    recall = float((nearest_distances(gt_points, pred_points) < threshold).mean())
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _as_mesh(mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray], name: str) -> trimesh.Trimesh:
    if isinstance(mesh, trimesh.Trimesh):
        out = mesh
    else:
        vertices, faces = mesh
        out = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=False)
    if len(out.faces) == 0:
        raise InputError(f"{name} mesh has no faces")
    return out


def occupancy(mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray], query_points: np.ndarray) -> np.ndarray:
    """Inside test for (N, 3) points: generalised winding number > 0.5 (robust to small holes in scans)."""
    import igl

    mesh = _as_mesh(mesh, "occupancy")
    v = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
    f = np.ascontiguousarray(mesh.faces, dtype=np.int64)
    q = np.ascontiguousarray(query_points, dtype=np.float64)
    return np.asarray(igl.fast_winding_number(v, f, q)) > 0.5


def union_grid(bounds_a: np.ndarray, bounds_b: np.ndarray, resolution: int = 64) -> np.ndarray:
    """Cell centres (resolution^3, 3) of a regular grid over the union of two (2, 3) bounding boxes."""
    lo = np.minimum(bounds_a[0], bounds_b[0])
    hi = np.maximum(bounds_a[1], bounds_b[1])
    axes = [lo[i] + (np.arange(resolution) + 0.5) * (hi[i] - lo[i]) / resolution for i in range(3)]
    gx, gy, gz = np.meshgrid(*axes, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel(), gz.ravel()], axis=1)


def volumetric_iou(
    pred_mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray],
    gt_mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray],
    resolution: int = 64,
) -> float:
    """IoU of the two meshes' occupancies on a ``resolution``^3 grid over the union of their bounding boxes."""
    pred, gt = _as_mesh(pred_mesh, "prediction"), _as_mesh(gt_mesh, "ground-truth")
    grid = union_grid(pred.bounds, gt.bounds, resolution)
    occ_pred, occ_gt = occupancy(pred, grid), occupancy(gt, grid)
    union = np.count_nonzero(occ_pred | occ_gt)
    return float(np.count_nonzero(occ_pred & occ_gt) / union) if union else 0.0


def normalize_to_unit_box(points: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Map points so that the bounding box of ``reference`` (default: the points) is centred with longest side 1."""
    pts = np.asarray(points, dtype=np.float64)
    ref = pts if reference is None else np.asarray(reference, dtype=np.float64)
    lo, hi = ref.min(axis=0), ref.max(axis=0)
    scale = float(np.max(hi - lo))
    if scale <= 0:
        raise InputError("cannot normalise a degenerate point set (zero extent)")
    return (pts - 0.5 * (lo + hi)) / scale


def sample_surface(mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray], count: int, seed: int = 0) -> np.ndarray:
    """``count`` points sampled uniformly by area on the mesh surface (deterministic for a seed)."""
    mesh = _as_mesh(mesh, "sample_surface")
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float64)


def evaluate_mesh(
    pred_mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray],
    gt_mesh: trimesh.Trimesh | tuple[np.ndarray, np.ndarray],
    num_points: int = 20000,
    f_threshold: float = 0.005,
    normalize: bool = False,
    resolution: int = 64,
) -> dict[str, float]:
    """``{"iou", "chamfer", "f_score"}`` of a prediction against a reference mesh, both in the same frame.

    ``normalize=True`` first maps each mesh to its own unit bounding box (the protocol for non-metric results);
    then ``f_threshold`` and the Chamfer distance are in unit-box units.
    """
    pred, gt = _as_mesh(pred_mesh, "prediction"), _as_mesh(gt_mesh, "ground-truth")
    if normalize:
        pred = trimesh.Trimesh(normalize_to_unit_box(pred.vertices), pred.faces, process=False)
        gt = trimesh.Trimesh(normalize_to_unit_box(gt.vertices), gt.faces, process=False)
    p_pts, g_pts = sample_surface(pred, num_points, seed=0), sample_surface(gt, num_points, seed=1)
    return {
        "iou": volumetric_iou(pred, gt, resolution),
        "chamfer": chamfer_distance(p_pts, g_pts),
        "f_score": f_score(p_pts, g_pts, f_threshold),
    }
