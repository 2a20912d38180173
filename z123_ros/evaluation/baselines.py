"""The segmentation baseline a user would write instead of ours: Open3D ``segment_plane`` + ``cluster_dbscan``.

Back-project the depth, downsample it on a voxel grid, remove the dominant plane by RANSAC, cluster the rest with
DBSCAN, each cluster an object. The parameters are the ones of Open3D's own tutorials (plane: 1 cm, 3 points, 1000
iterations; DBSCAN: eps 2 cm, 10 points) with a 5 mm voxel for a tabletop, not tuned to any of our data: this row
answers "is the project better than ten lines of Open3D?".
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from z123_ros.camera import CameraIntrinsics

logger = logging.getLogger(__name__)


@dataclass
class Open3DBaselineConfig:
    """Parameters of :func:`open3d_plane_dbscan` (Open3D tutorial values)."""

    distance_threshold_m: float = 0.01
    """``segment_plane`` inlier distance, metres."""
    ransac_n: int = 3
    """``segment_plane`` points per hypothesis."""
    num_iterations: int = 1000
    """``segment_plane`` RANSAC iterations."""
    eps_m: float = 0.02
    """``cluster_dbscan`` neighbourhood radius, metres."""
    min_points: int = 10
    """``cluster_dbscan`` points a core point needs."""
    voxel_m: float = 0.005
    """``voxel_down_sample`` size before fitting and clustering (DBSCAN on a full VGA cloud takes many seconds);
    every pixel then takes the label of its nearest downsampled point within ``eps_m``."""
    seed: int = 0
    """Seed of Open3D's RANSAC (so the baseline is reproducible)."""


def open3d_plane_dbscan(
    rgb: np.ndarray | None,
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    config: Open3DBaselineConfig | None = None,
) -> np.ndarray:
    """(H, W) int32 labels: 0 = plane, noise or no depth; k = DBSCAN cluster k (1-based). ``rgb`` is unused."""
    import open3d as o3d

    config = config or Open3DBaselineConfig()
    depth_m = np.asarray(depth_m, dtype=np.float32)
    labels = np.zeros(depth_m.shape, dtype=np.int32)
    points, pixels = intrinsics.backproject(depth_m)  # raises InputError when the shapes disagree
    if len(points) < max(config.ransac_n, config.min_points):
        return labels
    o3d.utility.random.seed(config.seed)
    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)).voxel_down_sample(config.voxel_m)
    coarse = np.asarray(cloud.points)
    if len(coarse) < max(config.ransac_n, config.min_points):
        return labels
    _, inliers = cloud.segment_plane(config.distance_threshold_m, config.ransac_n, config.num_iterations)
    off_plane = np.ones(len(cloud.points), dtype=bool)
    off_plane[np.asarray(inliers, dtype=np.int64)] = False
    rest = cloud.select_by_index(np.flatnonzero(off_plane).tolist())
    cluster = np.full(len(cloud.points), -1, dtype=np.int64)
    if len(rest.points) >= config.min_points:
        cluster[off_plane] = np.asarray(rest.cluster_dbscan(config.eps_m, config.min_points))
    # Every pixel takes the label of its nearest downsampled point (plane and noise points label 0).
    distance, nearest = cKDTree(coarse).query(points, distance_upper_bound=config.eps_m)
    hit = np.isfinite(distance)
    pixel_label = np.zeros(len(points), dtype=np.int64)
    pixel_label[hit] = cluster[nearest[hit]] + 1
    labels[pixels[:, 0], pixels[:, 1]] = pixel_label
    return labels
