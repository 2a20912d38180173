"""RGB-D tabletop segmentation, the embedded default.

Pipeline of :meth:`TabletopSegmenter.segment` for one frame with depth:

1. Back-project the depth on a coarse grid (every ``stride``-th pixel) with the camera intrinsics.
2. Fit the dominant support plane with RANSAC (z123_ros.segmentation.plane).
3. Keep the points between ``min_height_m`` and ``max_height_m`` above it whose foot on the plane lies on the table
   (inside the image hull of the plane's inliers) and closer than ``max_depth_m``: the workspace.
4. Cluster them: connected components of the coarse pixel grid where neighbours are linked only when their 3D points
   are close. A depth jump (one object in front of another) cuts the link, so touching objects split at depth edges.
   Two clusters of one colour meeting across a small depth step are one object hiding part of itself (a bottle's
   head over its body) and are joined. Touching objects at the same depth are split by colour: a cluster whose
   colour pieces meet only along a short contact (most of each piece's boundary is table or a depth edge) becomes
   one object per piece. Fragments too small to be objects (a rim seen edge-on) join the object next to them in 3D,
   and so do faces seen edge-on: a cluster one grid cell wide whose depth ramps steeply across the image (a box's
   side face at a grazing angle breaks off its box) joins the object within ``self_occlusion_gap_m``; a thin object
   facing the camera (a pen) stays apart.
5. Back to full resolution: every foreground pixel takes the label of the surrounding coarse sample closest to it in
   depth, and in colour where two objects compete (so labels follow depth and colour edges, not the coarse grid);
   the thin band near the table is grown back, then each mask is cleaned: specks dropped, holes filled unless the
   table shows through them (judged by depth, and by colour at table height: the inside of a bowl is filled).
6. Per object: box, 3D centroid and extent, size on the plane and the camera's polar angle over the plane.

Without depth (or when no plane is found) the RGB-only fallbacks of z123_ros.segmentation.rgb run instead, with lower
scores and their own ``method`` labels.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from z123_ros.camera import CameraIntrinsics, polar_over_plane
from z123_ros.geometry import (
    PlaneFit,
    backproject_grid,
    fit_plane_ransac,
    height_image,
    plane_axes,
    project_points,
    signed_distance,
)
from z123_ros.segmentation.config import SegmentationConfig
from z123_ros.segmentation.inputs import check_depth, check_rgb, check_roi
from z123_ros.segmentation.masks import fill_holes, measure_points, touches_border
from z123_ros.segmentation.rgb import segment_rgb
from z123_ros.segmentation.surface import NEIGHBOURS, Links, crease_terms, depth_sigma, grid_normals, normal_noise_deg
from z123_ros.segmentation.types import FrameSegmentation, SegmentedObject

logger = logging.getLogger(__name__)

METHOD_RGBD = "rgbd_tabletop"
#: The four coarse samples around a full-resolution pixel: (row, column) offsets from the one above-left of it.
CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))


def colour_features(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) float32 colour features whose Euclidean distance separates objects more than shading: CIE Lab
    (OpenCV 8-bit scaling) with lightness halved, since shading across one object mostly changes lightness."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 0.5
    return lab


def convex_silhouette(mask: np.ndarray) -> np.ndarray:
    """(h, w) bool: the convex hull of a non-empty ``mask``, filled. The hull of a pixel set is that of the leftmost
    and rightmost pixel of each of its rows, so only those are handed to OpenCV."""
    rows = np.flatnonzero(mask.any(axis=1))
    left = np.argmax(mask[rows], axis=1)
    right = mask.shape[1] - 1 - np.argmax(mask[rows, ::-1], axis=1)
    ends = np.concatenate([np.stack([left, rows], 1), np.stack([right, rows], 1)]).astype(np.int32)
    hull = np.zeros(mask.shape, dtype=np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(ends), 1)
    return hull > 0


def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        i = parent[i]
    return int(i)


def _components(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Connected-component id of each of ``n`` nodes of the undirected graph with edges ``rows[i] - cols[i]``."""
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def _part_pairs(sub: np.ndarray, pa: np.ndarray, pb: np.ndarray, between: np.ndarray) -> tuple:
    """The pairs of parts that the neighbour pairs ``between`` join, for counting per pair of parts with bincount:
    ``(keys, inv, n_all)``, ``keys`` one code per pair of parts (lower id * len(sub) + higher id), ``inv`` the index
    into ``keys`` of each selected neighbour pair, ``n_all`` how many neighbour pairs each pair of parts has."""
    sa, sb = sub[pa[between]], sub[pb[between]]
    key = np.minimum(sa, sb).astype(np.int64) * len(sub) + np.maximum(sa, sb)
    keys, inv = np.unique(key, return_inverse=True)
    return keys, inv, np.bincount(inv)


@dataclass
class CoarseGrid:
    """The coarse sampling grid of one frame (every ``stride``-th pixel) and what the stages learn about it."""

    stride: int
    """Pixels between grid samples in each direction."""
    offset: int
    """Full-resolution pixel of grid sample 0 along each axis (``stride // 2``: cell centres)."""
    points: np.ndarray
    """(h, w, 3) float64 camera-frame points of the samples, NaN without depth."""
    valid: np.ndarray
    """(h, w) bool: the sample has depth within the workspace range."""
    spacing: np.ndarray
    """(h, w) metres between grid neighbours at the sample's depth on a fronto-parallel surface."""
    depth: np.ndarray
    """(H, W) float32 full-resolution depth, NaN = none."""
    intrinsics: CameraIntrinsics
    """Camera of the frame."""
    lab: np.ndarray | None
    """(h, w, 3) mean colour of each cell (``colour_features``), None when colour is not used."""
    normals: np.ndarray
    """(h, w, 3) unit surface normals facing the camera (NaN where unknown), of the foreground samples once
    :meth:`object_normals` has run (all NaN before)."""
    sigma: np.ndarray
    """(h, w) depth noise (1 sigma, metres) of the sensor model at each sample's range."""
    fit: PlaneFit | None = None
    """The support plane, once fitted."""
    height: np.ndarray | None = None
    """(h, w) height of each sample above the plane (NaN where not valid), once fitted."""
    fg: np.ndarray | None = None
    """(h, w) bool: the sample is in the workspace above the table (candidate object point)."""
    min_height_m: float = 0.0
    """Samples lower than this above the plane are table."""

    @classmethod
    def build(cls, rgb: np.ndarray, depth: np.ndarray, intr: CameraIntrinsics, cfg: SegmentationConfig) -> CoarseGrid:
        s, off = cfg.stride, cfg.stride // 2
        pts = backproject_grid(intr, depth, s, off)
        valid = np.isfinite(pts[..., 2]) & (pts[..., 2] < cfg.max_depth_m)
        h, w = valid.shape
        lab = None
        if cfg.colour_split:
            # Colour near each cell's centre (bilinear resize), for splitting touching objects.
            lab = colour_features(cv2.resize(rgb[: h * s, : w * s], (w, h), interpolation=cv2.INTER_LINEAR))
        spacing = pts[..., 2] * s / min(intr.fx, intr.fy)
        sigma = depth_sigma(
            np.nan_to_num(pts[..., 2]), cfg.depth_noise_base_m, cfg.depth_noise_quad_m, cfg.depth_noise_z0_m
        )
        # Normals are estimated once the workspace is known (object_normals): nothing reads them before.
        unknown = np.full(pts.shape, np.nan, dtype=np.float32)
        return cls(s, off, pts, valid, spacing, depth, intr, lab, unknown, sigma)

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape

    @property
    def plane(self) -> np.ndarray:
        return self.fit.plane

    def set_plane(self, fit: PlaneFit, min_height_m: float, max_height_m: float) -> None:
        """Store the support plane, the samples' heights above it and the workspace (between the two heights)."""
        self.fit, self.min_height_m = fit, min_height_m
        self.height = np.full(self.shape, np.nan)
        self.height[self.valid] = signed_distance(fit.plane, self.points[self.valid])
        self.fg = self.valid & (self.height > min_height_m) & (self.height < max_height_m)

    def object_normals(self) -> None:
        """Re-estimate the normals from the foreground samples alone: at an object's foot, table samples would bend
        its normals into a crease that is the table's, not the object's."""
        self.normals = grid_normals(self.points, self.fg)


@dataclass
class BoxedLabels:
    """Full-resolution labels of the box around the clusters, and what the object masks are cleaned with."""

    labels: np.ndarray
    """(bh, bw) int32 labels (0 = background)."""
    height: np.ndarray
    """(bh, bw) float32 height of each pixel above the plane (NaN without depth)."""
    box: tuple[slice, slice]
    """Where the box lies in the full image."""
    lab: np.ndarray | None
    """(bh, bw, 3) colour features, None when colour is not used."""


class TabletopSegmenter:
    """Finds the objects standing on a table in one camera frame. See the module docstring for the method.

    Args:
        config: settings; defaults suit a VGA RGB-D camera 0.4-1.5 m from a table.
        promptable: optional learned promptable segmenter (z123_ros.segmentation.learned) used instead of GrabCut
            for the RGB-only path when an roi is given.
    """

    def __init__(self, config: SegmentationConfig | None = None, promptable=None) -> None:
        self.config = config or SegmentationConfig()
        self.config.validate()
        self.promptable = promptable

    # ------------------------------------------------------------------ public
    def segment(
        self,
        rgb: np.ndarray,
        intrinsics: CameraIntrinsics,
        depth_m: np.ndarray | None = None,
        roi: tuple[int, int, int, int] | None = None,
        T_cam_from_world: np.ndarray | None = None,
    ) -> FrameSegmentation:
        """Segment one frame.

        Args:
            rgb: (H, W, 3) uint8 RGB image.
            intrinsics: camera intrinsics of the (registered) RGB and depth images.
            depth_m: (H, W) float metric z-depth, NaN/0 = no measurement; None for RGB-only.
            roi: optional region of interest ``(x0, y0, x1, y1)``: with depth, only objects mostly inside it are
                kept; without depth, the fallback segments the object in it.
            T_cam_from_world: optional camera pose, stored on the result for ObjectTracker (moving camera).

        Raises:
            InputError: malformed images (dtype, shape, size mismatch), depth without a single valid pixel, bad roi.
        """
        check_rgb(rgb, intrinsics)
        roi_box = check_roi(roi, intrinsics.width, intrinsics.height)
        if depth_m is None:
            result = self._segment_rgb(rgb, roi_box)
        else:
            depth = check_depth(depth_m, intrinsics)
            result = self._segment_rgbd(rgb, depth, intrinsics, roi_box)
            if result is None:
                if not self.config.rgb_fallback:
                    result = FrameSegmentation(objects=[], labels=np.zeros(depth.shape, np.int32))
                else:
                    logger.warning("no support plane in the depth image; using the RGB-only fallback")
                    result = self._segment_rgb(rgb, roi_box)
        result.T_cam_from_world = None if T_cam_from_world is None else np.asarray(T_cam_from_world, np.float64)
        return result

    # ----------------------------------------------------------------- RGB-D
    def _segment_rgbd(
        self, rgb: np.ndarray, depth: np.ndarray, intr: CameraIntrinsics, roi: tuple[int, int, int, int] | None
    ) -> FrameSegmentation | None:
        cfg = self.config
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        grid = CoarseGrid.build(rgb, depth, intr, cfg)
        timings["backproject"] = time.perf_counter() - t0
        t = time.perf_counter()
        fit = self._support_plane(grid)
        timings["plane"] = time.perf_counter() - t
        if fit is None:
            return None
        t = time.perf_counter()
        grid.set_plane(fit, max(cfg.min_height_m, 4.0 * fit.sigma_m), cfg.max_height_m)
        if cfg.restrict_to_table and grid.fg.any():
            grid.fg &= self._on_table(grid)
        timings["workspace"] = time.perf_counter() - t
        t = time.perf_counter()
        grid.object_normals()
        coarse_labels = self._drop_non_objects(grid, self._cluster(grid))
        timings["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        objects: list[SegmentedObject] = []
        labels = np.zeros(depth.shape, dtype=np.int32)
        if coarse_labels.any():
            boxed = self._upsample_labels(grid, rgb, coarse_labels)
            timings["upsample"] = time.perf_counter() - t
            t = time.perf_counter()
            objects, labels = self._make_objects(grid, boxed, roi)
            timings["objects"] = time.perf_counter() - t
        polar = None
        if objects:
            polar = polar_over_plane(fit.plane, np.mean([o.centroid_cam for o in objects], axis=0))
        timings["total"] = time.perf_counter() - t0
        return FrameSegmentation(
            objects=objects, plane_cam=fit.plane, camera_polar_deg=polar, labels=labels, timings=timings
        )

    def _support_plane(self, grid: CoarseGrid) -> PlaneFit | None:
        """The plane the objects stand on: the dominant plane of the frame, or a large plane parallel to it and at
        least ``support_min_height_m`` above it (a desk seen with the floor around it). None without one."""
        cfg = self.config
        points = grid.points[grid.valid]
        kw = dict(iterations=cfg.ransac_iterations, sample_points=cfg.ransac_sample_points, seed=cfg.seed)
        fit = fit_plane_ransac(points, cfg.plane_distance_m, **kw)
        if fit is None or fit.inlier_fraction < cfg.min_plane_fraction:
            frac = 0.0 if fit is None else fit.inlier_fraction
            logger.info("support plane holds %.0f%% of the points (< %.0f%%)", 100 * frac, 100 * cfg.min_plane_fraction)
            return None
        above = signed_distance(fit.plane, points) > cfg.support_min_height_m
        if above.sum() < cfg.min_object_points:
            return fit
        upper = fit_plane_ransac(points[above], cfg.plane_distance_m, **kw)
        # Floors and table tops are level to within a few degrees: 10 deg tells a desk from a wall or a chair back.
        if upper is None or abs(float(upper.plane[:3] @ fit.plane[:3])) < np.cos(np.radians(10.0)):
            return fit
        inliers = np.abs(signed_distance(upper.plane, points)) < cfg.plane_distance_m
        # Area of the upper plane's samples: each covers (z s / f)^2 of a fronto-parallel surface, more when slanted.
        rays = points[inliers] / np.linalg.norm(points[inliers], axis=1, keepdims=True)
        footprint = (points[inliers, 2] * grid.stride / grid.intrinsics.fx) ** 2
        area = float(np.sum(footprint / np.maximum(np.abs(rays @ upper.plane[:3]), 0.2)))
        if area < cfg.support_min_area_m2:
            return fit
        logger.info("support plane %.2f m above the dominant plane (%.2f m^2)", -upper.plane[3] + fit.plane[3], area)
        residual = signed_distance(upper.plane, points[inliers])
        sigma = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
        return PlaneFit(plane=upper.plane, inliers=inliers, sigma_m=sigma)

    def _drop_non_objects(self, grid: CoarseGrid, labels: np.ndarray) -> np.ndarray:
        """Clear (in place) clusters that are not objects standing on the table: flat clutter lower than
        ``min_object_height_m`` (paper, cables) and clusters floating higher than ``max_base_height_m`` with free
        space seen under them (:meth:`_free_below`: furniture beyond the table's far edge)."""
        cfg = self.config
        if not labels.any():
            return labels
        n = int(labels.max()) + 1
        flat = labels.ravel()
        height = np.nan_to_num(grid.height, nan=0.0).ravel()
        fgl = flat > 0
        low = np.asarray(ndimage.minimum(height, flat, index=np.arange(n)))
        drop = np.zeros(n, dtype=bool)
        if cfg.min_object_height_m > 0:
            drop |= np.asarray(ndimage.maximum(height, flat, index=np.arange(n))) < cfg.min_object_height_m
        for k in np.flatnonzero(low > cfg.max_base_height_m):
            drop[k] |= k > 0 and self._free_below(grid, labels == k)
        drop[0] = False
        if drop.any():
            logger.debug("dropped %d flat or floating cluster(s)", int(drop.sum()))
            flat[fgl & drop[flat]] = 0
        return labels

    def _free_below(self, grid: CoarseGrid, member: np.ndarray) -> bool:
        """The camera sees free space under most of a cluster: where the foot of each of its points on the support
        plane projects, the measured depth reaches the foot or beyond (the table there, or the floor past the
        table's edge), instead of stopping in front of it. An object standing on the table hides its own footprint
        (and one behind another has it hidden by that one); a chair back beyond the table does not."""
        pts = grid.points[member]
        feet = pts - grid.height[member][:, None] * grid.plane[None, :3]
        ahead = feet[:, 2] > 1e-6
        if not ahead.any():
            return False
        feet = feet[ahead]
        uv = np.round(project_points(grid.intrinsics, feet)).astype(np.int64)
        H, W = grid.depth.shape
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        seen = np.full(len(feet), np.nan)
        seen[inside] = grid.depth[uv[inside, 1], uv[inside, 0]]
        known = np.isfinite(seen)
        if not known.any():
            return False
        # "Reaches the foot": not in front of it by more than the depth noise of the two readings.
        cfg, z = self.config, feet[known, 2]
        sigma = depth_sigma(z, cfg.depth_noise_base_m, cfg.depth_noise_quad_m, cfg.depth_noise_z0_m)
        tol = np.maximum(cfg.cluster_tolerance_m, cfg.noise_sigmas * np.sqrt(2.0) * sigma)
        return bool(np.mean(seen[known] > z - tol) > 0.5)

    @staticmethod
    def _on_table(grid: CoarseGrid) -> np.ndarray:
        """(h, w) bool: the foot of each point on the plane projects inside the image hull of the plane's inliers."""
        fg, valid, fit, height = grid.fg, grid.valid, grid.fit, grid.height
        s, off = grid.stride, grid.offset
        h, w = fg.shape
        inlier_grid = np.zeros((h, w), dtype=bool)
        inlier_grid[valid] = fit.inliers
        # The hull only needs the leftmost and rightmost inlier of each row.
        rows = np.flatnonzero(inlier_grid.any(axis=1))
        left = np.argmax(inlier_grid[rows], axis=1)
        right = w - 1 - np.argmax(inlier_grid[rows, ::-1], axis=1)
        ends = np.concatenate([np.stack([left, rows], 1), np.stack([right, rows], 1)])
        hull = cv2.convexHull(ends.astype(np.int32))
        table = np.zeros((h, w), dtype=np.uint8)
        cv2.fillConvexPoly(table, hull, 1)
        feet = grid.points[fg] - height[fg, None] * fit.plane[None, :3]
        out = np.zeros((h, w), dtype=bool)
        in_front = feet[:, 2] > 1e-6
        fu = np.full(len(feet), -1, dtype=np.int64)
        fv = np.full(len(feet), -1, dtype=np.int64)
        if in_front.any():
            uv = (project_points(grid.intrinsics, feet[in_front]) - off) / s
            fu[in_front], fv[in_front] = np.round(uv[:, 0]).astype(np.int64), np.round(uv[:, 1]).astype(np.int64)
        inside = (fu >= 0) & (fu < w) & (fv >= 0) & (fv < h)
        keep = np.zeros(len(feet), dtype=bool)
        keep[inside] = table[fv[inside], fu[inside]] > 0
        out[fg] = keep
        return out

    def _links(self, grid: CoarseGrid) -> Links:
        """Neighbour pairs of the grid with at least one foreground end and what separates their two samples.

        Two samples are on one surface when closer in 3D than the largest of: ``cluster_tolerance_m``,
        ``cluster_tolerance_spacing`` grid spacings (far or slanted surfaces) and ``noise_sigmas`` standard deviations
        of the difference of two depth readings at that range (so a noisier, farther surface does not fall apart).
        """
        cfg = self.config
        pts, fg, lab, spacing = grid.points, grid.fg, grid.lab, grid.spacing
        h, w = fg.shape
        index = np.arange(h * w).reshape(h, w)
        sigma = grid.sigma
        noise_deg = normal_noise_deg(sigma, spacing)
        pad = 1
        n_pad = np.pad(grid.normals, ((pad, pad), (pad, pad), (0, 0)), constant_values=np.nan)
        p_pad = np.pad(pts, ((pad, pad), (pad, pad), (0, 0)), constant_values=np.nan)
        keys = ("a", "b", "linked", "gap", "same", "concave", "weak", "convex")
        parts: dict[str, list[np.ndarray]] = {k: [] for k in keys}
        for dv, du in NEIGHBOURS:
            a = (slice(0, h - dv), slice(max(0, -du), w - max(0, du)))
            b = (slice(dv, h), slice(max(0, du), w + min(0, du)))
            touches = fg[a] | fg[b]  # every pair with at least one object point: links and object boundaries
            diff = (pts[a] - pts[b])[touches]
            dist = np.sqrt(diff[:, 0] ** 2 + diff[:, 1] ** 2 + diff[:, 2] ** 2)
            step = np.hypot(dv, du)
            tol = np.maximum(cfg.cluster_tolerance_m * step, cfg.cluster_tolerance_spacing * step * spacing[a][touches])
            tol = np.maximum(tol, cfg.noise_sigmas * np.sqrt(2.0) * sigma[a][touches])
            both = (fg[a] & fg[b])[touches]
            parts["a"].append(index[a][touches])
            parts["b"].append(index[b][touches])
            parts["linked"].append(both & (dist < tol))
            parts["gap"].append(np.where(both, dist, np.inf))
            # Two normals' difference has sqrt(2) times their noise: a crease must stand out of it.
            noise = np.sqrt(2.0) * noise_deg[a][touches]
            # Compare each side's normal one step further out: the normals at a and b themselves are estimated
            # from points straddling the crease and see half of it (LCCP compares patches, not points).
            outer_a = (slice(pad - dv, pad - dv + h - dv), slice(pad - du + max(0, -du), pad - du + w - max(0, du)))
            outer_b = (slice(pad + dv + dv, pad + dv + h), slice(pad + du + max(0, du), pad + du + w + min(0, du)))
            ends = (
                n_pad[outer_a][touches],
                n_pad[outer_b][touches],
                p_pad[outer_a][touches],
                p_pad[outer_b][touches],
            )
            # concave_crease's test, its terms computed once for the three kinds (a convex crease: the same test
            # with the normals swapped, which flips the convexity's sign).
            cos, convexity = crease_terms(*ends)
            with np.errstate(invalid="ignore"):
                bent = cos < np.cos(np.radians(np.maximum(cfg.concave_angle_deg, 3.0 * noise)))
                bent_weak = cos < np.cos(np.radians(np.maximum(0.5 * cfg.concave_angle_deg, 2.0 * noise)))
                concave, convex = convexity < 0, convexity > 0
            parts["concave"].append(both & concave & bent)
            parts["weak"].append(both & concave & bent_weak)
            parts["convex"].append(both & convex & bent)
            if lab is not None:
                dc = lab[a][touches] - lab[b][touches]
                parts["same"].append(np.sqrt(dc[:, 0] ** 2 + dc[:, 1] ** 2 + dc[:, 2] ** 2) < cfg.colour_edge_threshold)
        self._hole_pairs(grid, parts)
        cat = {k: np.concatenate(v) if v else None for k, v in parts.items()}
        return Links(
            cat["a"], cat["b"], cat["linked"], cat["gap"], cat["same"], cat["concave"], cat["weak"], cat["convex"]
        )

    def _hole_pairs(self, grid: CoarseGrid, parts: dict[str, list[np.ndarray]]) -> None:
        """Append to ``parts`` the pairs of foreground samples 2.. ``max_hole_px / stride`` cells apart along a grid
        axis or diagonal with only missing depth between them: a depth hole at an edge (a structured-light shadow,
        a dark rim) must not cut a surface that continues on its far side. Linked when as close as neighbours
        would be over that many steps; never a crease (no normals across a hole)."""
        cfg = self.config
        pts, fg, lab = grid.points, grid.fg, grid.lab
        h, w = fg.shape
        index = np.arange(h * w).reshape(h, w)
        missing = ~np.isfinite(pts[..., 2])
        for k in range(2, cfg.max_hole_px // grid.stride + 1):
            for dv, du in NEIGHBOURS:
                ev, eu = k * dv, k * du
                if ev >= h or abs(eu) >= w:
                    continue
                a = (slice(0, h - ev), slice(max(0, -eu), w - max(0, eu)))
                b = (slice(ev, h), slice(max(0, eu), w + min(0, eu)))
                hole = np.ones(fg[a].shape, dtype=bool)
                for t in range(1, k):
                    mid = (slice(t * dv, h - ev + t * dv), slice(max(0, -eu) + t * du, w - max(0, eu) + t * du))
                    hole &= missing[mid]
                sel = fg[a] & fg[b] & hole
                if not sel.any():
                    continue
                diff = (pts[a] - pts[b])[sel]
                dist = np.sqrt(diff[:, 0] ** 2 + diff[:, 1] ** 2 + diff[:, 2] ** 2)
                # A shadow hole lies exactly at a depth step (the front surface casts it on the one behind), a hole
                # in one surface (a dark rim, a lip) does not: linked only when the depth barely changes across it.
                dz = np.abs(diff[:, 2])
                tol = np.maximum(cfg.cluster_tolerance_m, cfg.noise_sigmas * np.sqrt(2.0) * grid.sigma[a][sel])
                parts["a"].append(index[a][sel])
                parts["b"].append(index[b][sel])
                parts["linked"].append(dz < tol)
                parts["gap"].append(dist)
                for key in ("concave", "weak", "convex"):
                    parts[key].append(np.zeros(len(dist), dtype=bool))
                if lab is not None:
                    dc = lab[a][sel] - lab[b][sel]
                    parts["same"].append(
                        np.sqrt(dc[:, 0] ** 2 + dc[:, 1] ** 2 + dc[:, 2] ** 2) < cfg.colour_edge_threshold
                    )

    def _cluster(self, grid: CoarseGrid) -> np.ndarray:
        """(h, w) int32 coarse labels 1..K (largest first, some numbers may be unused): connected components of the
        8-neighbour grid with links cut at 3D gaps; then clusters that fall apart into surface pieces touching only
        along a short contact are split (touching objects); then fragments join their objects."""
        cfg = self.config
        fg = grid.fg
        h, w = fg.shape
        links = self._links(grid)
        pa, pb, link = links.a, links.b, links.linked
        comp = _components(pa[link], pb[link], h * w)
        if cfg.max_step_contact_links > 0 and self._cut_step_contacts(grid, comp, links):
            link = links.linked
            comp = _components(pa[link], pb[link], h * w)
        if cfg.crease_contact_split and cfg.concave_split and self._cut_crease_contacts(grid, comp, links):
            link = links.linked
            comp = _components(pa[link], pb[link], h * w)
        if links.same_colour is not None and cfg.self_occlusion_gap_m > 0:
            link = self._bridge_self_occlusions(grid, comp, links)
            comp = _components(pa[link], pb[link], h * w)
        # Pieces: a concave crease separates them; a colour edge only where the surface is not smooth and convex
        # (colour alone may not split a printed carton; with colour_needs_geometry off it may, as before).
        cut = links.concave.copy() if cfg.concave_split else np.zeros_like(link)
        if links.same_colour is not None:
            cut |= ~links.same_colour
        if cut[link].any():
            keep = link & ~cut
            pieces = _components(pa[keep], pb[keep], h * w)
            comp = self._split_pieces(grid, comp, pieces, links, link, keep)
        comp = comp.reshape(h, w)
        # Relabel the surviving clusters 1..K, largest first.
        ids, counts = np.unique(comp[fg], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        lut = np.zeros(max(int(comp.max()) + 1, 1), dtype=np.int32)
        big = order[counts[order] >= cfg.min_object_points]
        lut[ids[big]] = np.arange(1, len(big) + 1, dtype=np.int32)
        out = np.zeros((h, w), dtype=np.int32)
        out[fg] = lut[comp[fg]]
        grazing = self._grazing_clusters(grid, out)
        self._attach_fragments(grid, out, comp, grazing)
        return out

    def _grazing_clusters(self, grid: CoarseGrid, labels: np.ndarray) -> np.ndarray:
        """(h, w) bool: the points of clusters that are a surface seen edge-on, which are then cleared from
        ``labels`` (in place) to be attached as fragments. A face nearly parallel to the rays (a box's side) ramps in
        depth faster than the coarse link tolerance, so each of its grid columns breaks off as a cluster one cell
        wide. Such a cluster is thin (no 2x2 block of its points on the grid) and steep: the median slope of the
        full-resolution depth at its samples, in units of the pixel footprint ``z / f``, exceeds
        ``tan(grazing_angle_deg)``. At each sample an axis takes its gentler one-sided difference, so the cluster's
        own silhouette (a jump to the background behind it) does not count; the median is taken per axis over the
        signed differences, so a face ramping one way is steep while depth noise (either sign) cancels out."""
        cfg = self.config
        grazing = np.zeros(labels.shape, dtype=bool)
        if cfg.grazing_angle_deg >= 90 or not labels.any():
            return grazing
        corner = labels[:-1, :-1]
        block = (corner > 0) & (corner == labels[1:, :-1]) & (corner == labels[:-1, 1:]) & (corner == labels[1:, 1:])
        thin = np.setdiff1d(np.unique(labels[labels > 0]), np.unique(corner[block]))
        if len(thin) == 0:
            return grazing
        depth, intr = grid.depth, grid.intrinsics
        H, W = depth.shape
        ii, jj = np.nonzero(np.isin(labels, thin))
        v, u = ii * grid.stride + grid.offset, jj * grid.stride + grid.offset
        z = depth[v, u].astype(np.float64)

        def gentler(dv: int, du: int) -> np.ndarray:
            """Signed depth step to the neighbour along (dv, du) on the gentler side, in pixel footprints."""
            fwd = depth[np.clip(v + dv, 0, H - 1), np.clip(u + du, 0, W - 1)] - z
            bwd = z - depth[np.clip(v - dv, 0, H - 1), np.clip(u - du, 0, W - 1)]
            # NaN (no depth) on one side: use the other; on both: no slope measured.
            step = np.where(np.isnan(bwd) | (np.abs(fwd) <= np.abs(bwd)), fwd, bwd)
            return step / (z / (intr.fx if du else intr.fy))

        gu, gv = gentler(0, 1), gentler(1, 0)
        steep = np.tan(np.radians(cfg.grazing_angle_deg))
        for k in thin:
            sel = (labels[ii, jj] == k) & np.isfinite(gu) & np.isfinite(gv)
            if sel.any() and np.hypot(np.median(gu[sel]), np.median(gv[sel])) > steep:
                grazing[labels == k] = True
        labels[grazing] = 0
        return grazing

    def _attach_fragments(self, grid: CoarseGrid, labels: np.ndarray, comp: np.ndarray, grazing: np.ndarray) -> None:
        """Give fragments to a nearby object (in place): clusters too small to be objects (a thin rim or handle
        seen edge-on breaks off its object on the coarse grid) and faces seen edge-on (``grazing``, see
        :meth:`_grazing_clusters`). A fragment joins the object most of its points have a point of within two grid
        cells and twice the link tolerance (for a grazing face: ``self_occlusion_gap_m``, the depth it ramps over
        between two samples). Passes repeat so a face several columns wide attaches column by column. Small
        fragments with no such neighbour stay dropped; grazing faces with none stay objects of their own."""
        original = labels.copy()
        for _ in range(3):
            if not self._attach_pass(grid, labels, comp, grazing):
                break
        lone = grazing & (labels == 0)
        labels[lone] = original[lone]

    def _attach_pass(self, grid: CoarseGrid, labels: np.ndarray, comp: np.ndarray, grazing: np.ndarray) -> bool:
        """One pass of :meth:`_attach_fragments`; True when a fragment was attached."""
        cfg = self.config
        pts, fg, spacing = grid.points, grid.fg, grid.spacing
        small = fg & (labels == 0)
        if not small.any() or not labels.any():
            return False
        r = 2
        # Work in the box around the fragments (plus the search radius).
        rows, cols = np.flatnonzero(small.any(axis=1)), np.flatnonzero(small.any(axis=0))
        y0, y1 = rows[0], rows[-1] + 1
        x0, x1 = cols[0], cols[-1] + 1
        lab_p = np.pad(labels, r)[y0 : y1 + 2 * r, x0 : x1 + 2 * r]
        pts_p = np.pad(pts, ((r, r), (r, r), (0, 0)), constant_values=np.nan)[y0 : y1 + 2 * r, x0 : x1 + 2 * r]
        sub_small, sub_pts = small[y0:y1, x0:x1], pts[y0:y1, x0:x1]
        tol = 2.0 * np.maximum(cfg.cluster_tolerance_m, cfg.cluster_tolerance_spacing * spacing[y0:y1, x0:x1])
        tol = np.where(grazing[y0:y1, x0:x1], np.maximum(tol, cfg.self_occlusion_gap_m), tol)
        h, w = sub_small.shape
        best = np.full((h, w), np.inf)
        sub_label = np.zeros((h, w), dtype=np.int32)
        for dv in range(-r, r + 1):
            for du in range(-r, r + 1):
                if dv == 0 and du == 0:
                    continue
                other = lab_p[r + dv : r + dv + h, r + du : r + du + w]
                diff = sub_pts - pts_p[r + dv : r + dv + h, r + du : r + du + w]
                dist = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2)
                better = sub_small & (other > 0) & (dist < tol) & (dist < best)
                best[better] = dist[better]
                sub_label[better] = other[better]
        best_label = np.zeros(labels.shape, dtype=np.int32)
        best_label[y0:y1, x0:x1] = sub_label
        voted = small & (best_label > 0)
        if not voted.any():
            return False
        # Majority vote per fragment (there are few).
        frag, label = comp[voted], best_label[voted]
        for f in np.unique(frag):
            labels[small & (comp == f)] = np.bincount(label[frag == f]).argmax()
        return True

    def _cut_step_contacts(self, grid: CoarseGrid, comp: np.ndarray, links: Links) -> bool:
        """Unlink (in ``links.linked``) two parts of a cluster of the flat ``comp`` that meet along a depth step held
        together by only a few links: two touching objects whose faces meet at a point (a can against a mug) while
        the rest of their contact is a step. Contact samples are the ends of unlinked neighbour pairs of one cluster;
        the links between two contact samples are cut for a trial, and two parts of at least ``min_object_points``
        that fall apart stay apart when the pairs between them are at least ``min_step_contact_pairs`` steps and at
        most ``max_step_contact_links`` of them links (a min-cut of that size). Every other trial cut is undone, so
        noise on one surface (scattered unlinked pairs, always outnumbered by links) cuts nothing. True when a link
        was cut."""
        cfg = self.config
        pa, pb, link, gap = links.a, links.b, links.linked, links.gap
        fg = grid.fg.ravel()
        inside = fg[pa] & fg[pb] & (comp[pa] == comp[pb])
        step = inside & ~link & np.isfinite(gap)
        if np.count_nonzero(step) < cfg.min_step_contact_pairs:
            return False
        contact = np.zeros(len(comp), dtype=bool)
        contact[pa[step]] = contact[pb[step]] = True
        trial = link & inside & (contact[pa] | contact[pb])
        sub = self._join_slivers(grid, _components(pa[link & ~trial], pb[link & ~trial], len(comp)), pa, pb, trial)
        between = inside & (sub[pa] != sub[pb]) & (link | step)
        if not between.any():
            return False
        keys, inv, n_all = _part_pairs(sub, pa, pb, between)
        n_link = np.bincount(inv, weights=link[between])
        cut = (n_all - n_link >= cfg.min_step_contact_pairs) & (n_link <= cfg.max_step_contact_links * n_all)
        if not cut.any():
            return False
        idx = np.flatnonzero(between)[cut[inv] & link[between]]
        links.linked[idx] = False
        return True

    def _cut_crease_contacts(self, grid: CoarseGrid, comp: np.ndarray, links: Links) -> bool:
        """Unlink (in ``links.linked``) two parts of a cluster of the flat ``comp`` that meet along a concave crease
        ending in depth steps: a low box's top against a tall box's side. A sibling of :meth:`_cut_step_contacts`:
        the links at the crease and step samples (and one cell around them, where a crease turns into a step a few
        pairs still link) are cut for a trial; two parts of at least ``min_object_points`` that fall apart stay
        apart when at least ``min_step_contact_pairs`` of the pairs between them are concave creases, at most
        ``max_crease_contact_links`` of them are other links, at least three are depth steps (the crease ends in
        steps), the two parts make up their whole cluster (a drill's handle meets its battery and its head in
        concave junctions: cutting one leaves a third part joined to both; a mug's inside bottom meets its inside
        wall, both joined to its outside) and both reach the table (:meth:`_reach_table`; a handle standing out of
        a mug's side does not). True when a link was cut."""
        cfg = self.config
        pa, pb, link, gap = links.a, links.b, links.linked, links.gap
        fg = grid.fg.ravel()
        inside = fg[pa] & fg[pb] & (comp[pa] == comp[pb])
        crease = inside & link & links.concave
        if np.count_nonzero(crease) < cfg.min_step_contact_pairs:
            return False
        step = inside & ~link & np.isfinite(gap)
        if np.count_nonzero(step) < 3:
            return False
        h, w = grid.shape
        contact = np.zeros(len(comp), dtype=bool)
        sep = crease | step
        contact[pa[sep]] = contact[pb[sep]] = True
        # One cell wider: where the crease ends in a step, the last pairs before the step opens still link.
        contact = (ndimage.binary_dilation(contact.reshape(h, w), structure=np.ones((3, 3), bool)) & grid.fg).ravel()
        trial = link & inside & (contact[pa] | contact[pb])
        sub = _components(pa[link & ~trial], pb[link & ~trial], len(comp))
        for _ in range(8):  # the band is several cells wide: slivers join the parts ring by ring
            joined = self._join_slivers(grid, sub, pa, pb, trial)
            if np.array_equal(joined, sub):
                break
            sub = joined
        between = inside & (sub[pa] != sub[pb]) & (link | step)
        if not between.any():
            return False
        keys, inv, n_all = _part_pairs(sub, pa, pb, between)
        n_crease = np.bincount(inv, weights=crease[between])
        n_other = np.bincount(inv, weights=(link & ~crease)[between])
        # Only two parts large enough to be objects (slivers the trial cuts left are neither).
        size = np.bincount(sub[fg], minlength=len(comp))
        big = np.minimum(size[keys // len(comp)], size[keys % len(comp)]) >= cfg.min_object_points
        cand = big & (n_crease >= cfg.min_step_contact_pairs) & (n_other <= cfg.max_crease_contact_links * n_all)
        idx_between = np.flatnonzero(between)
        cut_any = False
        for k in np.flatnonzero(cand):
            sel = idx_between[inv == k]
            parts = (keys[k] // len(comp), keys[k] % len(comp))
            # The crease ends in depth steps (a crease alone, a fold of one surface, is not a contact).
            if np.count_nonzero(step[sel]) < 3:
                continue
            # The two parts are all of their cluster (a mug's inside bottom meets its inside wall in a crease, and
            # both meet the rest of the mug elsewhere).
            cluster = fg & (comp == comp[pa[sel[0]]])
            if np.count_nonzero(cluster & ~np.isin(sub, parts)) >= cfg.min_object_points:
                continue
            if not all(self._reach_table(grid, sub, p) for p in parts):
                continue
            links.linked[sel] = False
            # Judged a contact of two objects: no later bridge of self-occlusions (which joins same-coloured parts
            # across a small step) may join it again.
            links.gap[sel] = np.inf
            cut_any = True
        return cut_any

    def _reach_table(self, grid: CoarseGrid, labels: np.ndarray, part: int) -> bool:
        """Part ``part`` of the flat ``labels`` reaches within ``max_base_height_m`` of the table."""
        height = grid.height.ravel()[grid.fg.ravel() & (labels == part)]
        return bool(np.isfinite(height).any()) and float(np.nanmin(height)) <= self.config.max_base_height_m

    def _join_slivers(self, grid: CoarseGrid, sub: np.ndarray, pa: np.ndarray, pb: np.ndarray, trial: np.ndarray):
        """``sub`` (flat labels) with each part smaller than ``min_object_points`` (a sliver of contact samples cut
        off by the trial cuts of :meth:`_cut_step_contacts` or :meth:`_cut_crease_contacts`) relabelled as the large
        part it has most trial links to; slivers with none keep their label."""
        fg = grid.fg.ravel()
        size = np.bincount(sub[fg], minlength=len(sub))
        big = size[sub] >= self.config.min_object_points
        # Trial links from a sliver (s) to a large part (b), each pair once with the sliver first.
        one = trial & (big[pa] != big[pb])
        s = np.where(big[pa[one]], sub[pb[one]], sub[pa[one]])
        b = np.where(big[pa[one]], sub[pa[one]], sub[pb[one]])
        if len(s) == 0:
            return sub
        pairs, votes = np.unique(np.stack([s, b], axis=1), axis=0, return_counts=True)
        # Largest vote per sliver: sort by (sliver, votes) and keep each sliver's last row.
        order = np.lexsort((votes, pairs[:, 0]))
        pairs = pairs[order]
        last = np.r_[pairs[1:, 0] != pairs[:-1, 0], True]
        lut = np.arange(len(sub), dtype=sub.dtype)
        lut[pairs[last, 0]] = pairs[last, 1]
        return lut[sub]

    def _bridge_self_occlusions(self, grid: CoarseGrid, comp: np.ndarray, links: Links) -> np.ndarray:
        """Link two clusters across a depth step when they are one object occluding itself (a spray bottle's head
        over its body, a mug's inside seen over its front lip): they meet along several neighbour pairs, and either
        the smallest 3D step along that border is below ``self_occlusion_gap_m`` and nearly all of those pairs are of
        one colour, or the step is within the occluder's footprint size, the occluded cluster is not seen on the
        table anywhere (:meth:`_rests_on`: what lies right below
        it in the image is the cluster in front) and the two clusters' median chroma agree (the inside of a mug is
        shaded, so colour across its lip differs pair by pair, not in hue). Returns the new links; neither colour nor a
        concave crease cuts the links bridged by the second rule (``links`` is updated in place).
        The first rule does not join two clusters that each stand on the table (:meth:`_stand_apart`) and are more
        than ``self_occlusion_gap_m`` apart along most of their contact: two objects of one colour one behind the
        other."""
        cfg = self.config
        pa, pb, link, same, gap = links.a, links.b, links.linked, links.same_colour, links.gap
        across = ~link & np.isfinite(gap) & (comp[pa] != comp[pb])
        if not across.any():
            return link
        idx = np.flatnonzero(across)
        ca, cb = comp[pa[idx]], comp[pb[idx]]
        key = np.minimum(ca, cb).astype(np.int64) * len(comp) + np.maximum(ca, cb)
        bridged = link.copy()
        z = grid.points[..., 2].ravel()
        n_fg = np.bincount(comp[grid.fg.ravel()], minlength=len(comp))
        for k in np.unique(key):
            sel = idx[key == k]
            if len(sel) < 3:
                continue
            # The occluded cluster is the farther end of most pairs.
            far_b = np.median(z[pb[sel]] - z[pa[sel]]) > 0
            front, back = (comp[pa[sel[0]]], comp[pb[sel[0]]]) if far_b else (comp[pb[sel[0]]], comp[pa[sel[0]]])
            # Only clusters large enough to be objects are judged (specks attach later, as fragments).
            objects = min(n_fg[front], n_fg[back]) >= cfg.min_object_points
            if gap[sel].min() <= cfg.self_occlusion_gap_m and same[sel].mean() >= 0.75:
                # Two objects stand apart: each on the table, and farther apart than a part an object hides of
                # itself along most of the contact (a lying drill's head behind its battery meets it within a few cm).
                apart = objects and np.median(gap[sel]) > cfg.self_occlusion_gap_m
                if not (apart and self._stand_apart(grid, comp, front, back)):
                    bridged[sel[same[sel]]] = True
                continue
            if not objects:
                continue
            # What an object hides of itself lies within its own footprint: the step may be as wide as the
            # occluder (a mug's inside seen over its front lip is up to a diameter behind it).
            reach = max(cfg.self_occlusion_gap_m, self._footprint_size(grid, comp, front))
            if gap[sel].min() > reach:
                continue
            if self._same_chroma(grid, comp, front, back) and self._rests_on(grid, comp, back, np.array([front])):
                bridged[sel] = True
                # Across the step the pairs straddle no surface crease: neither colour nor "concavity" cuts them.
                same[sel] = True
                links.concave[sel] = False
        return bridged

    @staticmethod
    def _footprint_size(grid: CoarseGrid, comp: np.ndarray, c: int) -> float:
        """Largest extent (metres) of a cluster's footprint on the support plane (2nd to 98th percentile)."""
        pts = grid.points.reshape(-1, 3)[grid.fg.ravel() & (comp == c)]
        q = pts @ plane_axes(grid.plane)[:2].T
        lo, hi = np.percentile(q, [2, 98], axis=0)
        return float(np.max(hi - lo))

    def _same_chroma(self, grid: CoarseGrid, comp: np.ndarray, c1: int, c2: int) -> bool:
        """The median chroma (a*, b*) of two clusters differ by less than ``colour_edge_threshold``: one material
        under different shading (lightness and, on a shaded inside, saturation drop; hue stays)."""
        lab = grid.lab.reshape(-1, 3)
        fg = grid.fg.ravel()
        m1 = np.median(lab[fg & (comp == c1), 1:], axis=0)
        m2 = np.median(lab[fg & (comp == c2), 1:], axis=0)
        return bool(np.linalg.norm(m1 - m2) < self.config.colour_edge_threshold)

    def _stand_apart(self, grid: CoarseGrid, comp: np.ndarray, front: int, back: int) -> bool:
        """Clusters ``front`` and ``back`` (behind it) of the flat ``comp`` each have their own support on the table:
        the front one reaches down to it (within ``max_base_height_m``) and the back one is seen standing on it along
        its whole lower edge (the table below at least nine in ten of its lowest samples, :meth:`_below`; the mirror
        of :meth:`_rests_on`). Two objects standing one behind the other, or side by side at different depths; a
        part an object hides of itself (a bottle's body under its head, a lying drill's head behind its body) has its
        lower edge at least partly on the part in front, or does not reach the table."""
        if not self._reach_table(grid, comp, front):
            return False
        below = self._below(grid, comp, back)
        return len(below) > 0 and int(np.count_nonzero(~grid.fg.ravel()[below])) >= 0.9 * len(below)

    def _rests_on(self, grid: CoarseGrid, labels: np.ndarray, top: int, base: np.ndarray) -> bool:
        """Cluster (or piece) ``top`` of the flat ``labels`` is not seen on the table but rests on one of ``base``:
        below its lowest samples in the image lies ``base`` for at least half of them and the table for at most one
        in ten (:meth:`_below`). An object standing on the table behind another is seen on the table somewhere
        along its base, or else stands wholly hidden behind it."""
        below = self._below(grid, labels, top)
        if len(below) == 0:
            return False
        fg = grid.fg.ravel()
        n_base = int(np.count_nonzero(fg[below] & np.isin(labels[below], base)))
        n_table = int(np.count_nonzero(~fg[below]))
        return n_base > 0 and n_base >= 0.5 * len(below) and n_table <= 0.1 * len(below)

    def _below(self, grid: CoarseGrid, labels: np.ndarray, top: int) -> np.ndarray:
        """Flat grid indices of what is seen right below the lower edge of ``top`` (a label of the flat ``labels``)
        in the image: from each of its samples, down along the plane normal's image direction, the first sample
        with depth (across up to ``max_hole_px`` of missing depth) that is not ``top`` itself."""
        cfg = self.config
        h, w = grid.shape
        fg = grid.fg
        lab2d = labels.reshape(h, w)
        member = fg & (lab2d == top)
        rr, cc = np.nonzero(member)
        # Image direction of "down" at the cluster: project its centroid and a point 5 cm below it.
        centre = np.nanmean(grid.points[member], axis=0)
        uv = project_points(grid.intrinsics, np.stack([centre, centre - 0.05 * grid.plane[:3]]))
        step = uv[1] - uv[0]
        step = np.round(step / max(np.abs(step).max(), 1e-9)).astype(int)  # one of the 8 neighbour steps
        found: list[np.ndarray] = []
        pending = np.ones(len(rr), dtype=bool)
        for _ in range(max(1, cfg.max_hole_px // grid.stride) + 1):
            rr, cc = rr + step[1], cc + step[0]
            pending &= (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            r, c = np.clip(rr, 0, h - 1), np.clip(cc, 0, w - 1)
            seen = pending & grid.valid[r, c]
            pending &= ~seen  # the first sample with depth below decides
            seen &= ~(fg[r, c] & (lab2d[r, c] == top))
            found.append(r[seen] * w + c[seen])
        return np.concatenate(found)

    def _split_pieces(
        self, grid: CoarseGrid, comp: np.ndarray, pieces: np.ndarray, links: Links, link: np.ndarray, keep: np.ndarray
    ) -> np.ndarray:
        """Split clusters into surface pieces that are objects of their own.

        A piece is an object when it has at least ``min_object_points``, reaches down to the table like its cluster
        (within ``max_base_height_m`` of the cluster's lowest point: a bottle's cap does not) and most of its
        boundary is free (table, background, a depth edge) rather than contact with the rest of its cluster: a
        touching object meets its neighbour along a short contact, a label or a bowl's inside is surrounded by its
        own object. Clusters with two or more such pieces are split; the other pieces join the nearest object piece.
        ``comp`` and ``pieces`` are flat over the grid; ``keep`` are the links inside pieces.
        """
        cfg = self.config
        h, w = grid.shape
        fg = grid.fg.ravel()
        pa, pb = links.a, links.b
        n = len(comp)
        # Boundary of each piece: pairs whose two ends are not in the same piece, counted from the foreground ends.
        contact = link & ~keep & (pieces[pa] != pieces[pb])
        boundary = ~link | contact
        ends = np.concatenate([pa[boundary & fg[pa]], pb[boundary & fg[pb]]])
        contact_ends = np.concatenate([pa[contact], pb[contact]])
        n_boundary = np.bincount(pieces[ends], minlength=n)
        n_contact = np.bincount(pieces[contact_ends], minlength=n)
        size = np.bincount(pieces[fg], minlength=n)
        height = np.where(fg, np.nan_to_num(grid.height.ravel(), nan=np.inf), np.inf)
        piece_low = np.full(n, np.inf)
        np.minimum.at(piece_low, pieces[fg], height[fg])
        comp_low = np.full(n, np.inf)
        np.minimum.at(comp_low, comp[fg], height[fg])
        is_object = (size >= cfg.min_object_points) & (n_contact <= cfg.max_contact_fraction * n_boundary)
        out = comp.copy()
        next_id = int(comp.max()) + 1
        for cid in np.unique(comp[fg]):
            member = fg & (comp == cid)
            cand = np.unique(pieces[member & is_object[pieces]])
            objs = cand[piece_low[cand] <= comp_low[cid] + cfg.max_base_height_m]
            if len(objs) >= 2:
                # A piece enclosed by the rest of its cluster in the image (a mug's inside seen from above) is part
                # of it: an object standing on the table is never wholly framed by another one's silhouette.
                objs = objs[~self._enclosed(member.reshape(h, w), pieces.reshape(h, w), objs)]
            if len(objs) < 2:
                continue
            groups = None
            if cfg.colour_needs_geometry:
                groups = self._convex_groups(objs, pieces, contact, links, grid.spacing)
            if groups is not None and len(np.unique(groups)) < 2:
                continue
            # Nearest object piece of every point of the cluster, on the grid.
            member2d = member.reshape(h, w)
            rr, cc = np.nonzero(member2d)
            sl = (slice(rr.min(), rr.max() + 1), slice(cc.min(), cc.max() + 1))
            sub_pieces = pieces.reshape(h, w)[sl]
            sub_member = member2d[sl]
            seeds = np.zeros(sub_member.shape, dtype=np.int64)
            for j, p in enumerate(objs, start=1):
                seeds[sub_member & (sub_pieces == p)] = j if groups is None else groups[j - 1] + 1
            _, (ni, nj) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
            out2d = out.reshape(h, w)[sl]
            out2d[sub_member] = seeds[ni, nj][sub_member] - 1 + next_id
            next_id += len(objs)
        return out

    @staticmethod
    def _enclosed(member: np.ndarray, pieces: np.ndarray, objs: np.ndarray) -> np.ndarray:
        """(len(objs),) bool: each piece of the cluster ``member`` (h, w) lies inside the cluster's silhouette with
        its holes filled, without touching the outside (its 8-neighbours are all within the filled silhouette)."""
        filled = ndimage.binary_fill_holes(member)
        out = np.zeros(len(objs), dtype=bool)
        for i, p in enumerate(objs):
            piece = member & (pieces == p)
            ring = ndimage.binary_dilation(piece, structure=np.ones((3, 3), bool)) & ~piece
            out[i] = bool(ring.any()) and bool(filled[ring].all())
        return out

    @staticmethod
    def _convex_groups(
        objs: np.ndarray, pieces: np.ndarray, contact: np.ndarray, links: Links, spacing: np.ndarray
    ) -> np.ndarray:
        """Group index (0..) of each object piece: pieces whose contact links are mostly convex creases or convexly
        curved surface are one object (a carton's printed top and its side, a can's two-coloured label); touching
        objects meet along flat or concave contacts and stay apart."""
        parent = np.arange(len(objs))
        where = {int(p): i for i, p in enumerate(objs)}
        ea, eb = pieces[links.a[contact]], pieces[links.b[contact]]
        # Convex *and* smooth: one surface folds over an edge without a step (two grid spacings between
        # neighbours); an object standing before another meets it with a step, which can look convex as well.
        smooth = links.gap[contact] < 2.0 * spacing.ravel()[links.a[contact]]
        convex = links.convex[contact] & smooth
        for i, p in enumerate(objs):
            for j in range(i + 1, len(objs)):
                q = objs[j]
                sel = ((ea == p) & (eb == q)) | ((ea == q) & (eb == p))
                if sel.any() and convex[sel].mean() > 0.5:
                    ri, rj = i, j
                    while parent[ri] != ri:
                        ri = parent[ri]
                    while parent[rj] != rj:
                        rj = parent[rj]
                    parent[max(ri, rj)] = min(ri, rj)
        roots = np.array([_root(parent, i) for i in range(len(objs))])
        del where
        return np.unique(roots, return_inverse=True)[1]

    def _upsample_labels(self, grid: CoarseGrid, rgb: np.ndarray, coarse: np.ndarray) -> BoxedLabels:
        """Full-resolution labels: each foreground pixel takes the label of the neighbouring coarse sample closest
        to it in depth (and colour, when the grid has colour). Works in the box around the clusters only."""
        cfg = self.config
        s, off, depth, intr = grid.stride, grid.offset, grid.depth, grid.intrinsics
        H, W = depth.shape
        h, w = coarse.shape
        cv_, cu_ = np.nonzero(coarse)
        y0 = max(0, (cv_.min() - 1) * s + off - s)
        y1 = min(H, (cv_.max() + 1) * s + off + s + 1)
        x0 = max(0, (cu_.min() - 1) * s + off - s)
        x1 = min(W, (cu_.max() + 1) * s + off + s + 1)
        box = (slice(y0, y1), slice(x0, x1))
        d = depth[box]
        hf = height_image(grid.plane, depth, intr, box)
        fg = np.isfinite(d) & (hf > grid.min_height_m) & (hf < cfg.max_height_m)
        # Coarse neighbours of each pixel: rows i0, i0+1 and columns j0, j0+1.
        fi = np.clip(np.floor((np.arange(y0, y1) - off) / s).astype(np.int64), 0, h - 1)
        fj = np.clip(np.floor((np.arange(x0, x1) - off) / s).astype(np.int64), 0, w - 1)
        zc32 = np.where(coarse > 0, grid.points[..., 2], np.inf).astype(np.float32)  # a table sample never wins
        tol = np.maximum(cfg.cluster_tolerance_m, d * np.float32(2.0 * cfg.cluster_tolerance_spacing * s / intr.fx))
        # 1. Depth alone: the candidate on the same surface (within tol) closest in depth. Only foreground pixels can
        # take a label, so only they are looked at (a box is mostly table).
        fy, fx = np.nonzero(fg)
        d_fg, tol_fg = d[fy, fx], tol[fy, fx]
        # Each pixel's coarse row above / below and column left / right (clipped at the grid's edge).
        rows = (fi[fy], np.minimum(fi + 1, h - 1)[fy])
        cols = (fj[fx], np.minimum(fj + 1, w - 1)[fx])
        zc_flat, coarse_flat = zc32.ravel(), coarse.ravel()
        dz_all = np.empty((4, len(fy)), dtype=np.float32)
        lab_all = np.empty((4, len(fy)), dtype=coarse.dtype)
        for c, (di, dj) in enumerate(CORNERS):
            flat = rows[di] * w + cols[dj]
            dz = np.abs(d_fg - zc_flat[flat])
            dz_all[c] = np.where(dz < tol_fg, dz, np.inf)
            lab_all[c] = coarse_flat[flat]
        pick = np.argmin(dz_all, axis=0)
        best_dz = np.take_along_axis(dz_all, pick[None], 0)[0]
        best_label = np.take_along_axis(lab_all, pick[None], 0)[0]
        lab_box = None
        if grid.lab is not None:
            lab_box = colour_features(rgb[box])
            self._resolve_by_colour(grid, lab_box, (fy, fx, rows, cols), dz_all, lab_all, tol_fg, best_label, best_dz)
        labels = np.zeros(d.shape, dtype=np.int32)
        labels[fy, fx] = np.where(best_dz < tol_fg, best_label, 0)
        # Foreground pixels at an object's rim whose coarse neighbours are all table: take a neighbour's label.
        # Then the object's base, between grow_height_m and min_h above the table, the same way (a few pixels).
        base = np.isfinite(d) & (hf > cfg.grow_height_m) & (hf < cfg.max_height_m)
        kernel = np.ones((3, 3), np.uint8)
        small = labels.astype(np.uint16 if labels.max() < 2**16 else np.float32)  # the same maximum filter, fewer bytes
        free = labels == 0
        for candidates, steps in ((fg, s), (base, 3)):
            for _ in range(steps):
                todo = candidates & free
                if not todo.any():
                    break
                grown = cv2.dilate(small, kernel)
                take = todo & (grown > 0)
                if not take.any():
                    break
                labels[take] = grown[take]
                small[take] = grown[take]
                free[take] = False
        if lab_box is not None:
            self._claim_missing_depth(labels, np.isfinite(d), lab_box, np.isfinite(hf) & (hf <= grid.min_height_m))
        return BoxedLabels(labels=labels, height=hf, box=box, lab=lab_box)

    def _claim_missing_depth(
        self, labels: np.ndarray, has_depth: np.ndarray, lab: np.ndarray, table: np.ndarray
    ) -> None:
        """Give the pixels without depth or at table height (``table``) inside an object's convex silhouette its
        label (in place) where their colour is the object's rather than the table's: a face nearer than the
        sensor's minimum range, a dark or shiny patch, a rim seen edge-on, the bottom of a bowl millimetres above
        the table that its rim does not wholly enclose. Pixels with depth above the table keep what the depth says
        (another object); a shadow or an unmeasured background beside the object lies outside its silhouette.
        Among overlapping silhouettes the object nearest in colour wins."""
        todo = (~has_depth | table) & (labels == 0)
        if not todo.any() or not table.any():
            return
        held = labels > 0
        held_labels, held_lab = labels[held], lab[held]
        count = np.maximum(np.bincount(held_labels), 1)[1:, None]
        colours = np.stack([np.bincount(held_labels, held_lab[:, c])[1:] for c in range(3)], axis=1) / count
        at_table = np.flatnonzero(table)
        every = at_table[:: max(1, len(at_table) // 4096)]  # ~4 k pixels suffice
        table_colour = np.median(lab.reshape(-1, 3)[every], axis=0)
        # Only the candidates inside some silhouette are looked at (a box is mostly table): each gets its distance
        # to the table's colour when first seen. The closer to the object than to the table, and within twice the
        # colour edge threshold of it.
        limit = 2.0 * self.config.colour_edge_threshold
        best = np.zeros(labels.shape, dtype=np.float32)
        seen = np.zeros(labels.shape, dtype=bool)
        claim = np.zeros(labels.shape, dtype=np.int32)
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            hull = convex_silhouette(labels[sl] == k)
            yy, xx = np.nonzero(todo[sl] & hull)
            if len(yy) == 0:
                continue
            colour = lab[sl][yy, xx]
            sub_best, sub_seen = best[sl], seen[sl]
            fresh = ~sub_seen[yy, xx]
            sub_best[yy[fresh], xx[fresh]] = np.minimum(np.linalg.norm(colour[fresh] - table_colour, axis=1), limit)
            sub_seen[yy, xx] = True
            dist = np.linalg.norm(colour - colours[k - 1], axis=1)
            win = dist < sub_best[yy, xx]
            sub_best[yy[win], xx[win]] = dist[win]
            claim[sl][yy[win], xx[win]] = k
        labels[claim > 0] = claim[claim > 0]

    def _resolve_by_colour(
        self,
        grid: CoarseGrid,
        lab_box: np.ndarray,
        at: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
        dz_all: np.ndarray,
        lab_all: np.ndarray,
        tol: np.ndarray,
        best_label: np.ndarray,
        best_dz: np.ndarray,
    ) -> None:
        """Where candidates of two objects are both on the surface (touching objects at one depth), colour decides
        as well, with the clustering's colour weighting; updates ``best_label``/``best_dz`` in place. Only these
        few pixels pay for it. ``at``: the foreground pixels' rows and columns in the box, and their coarse
        neighbours' rows (above, below) and columns (left, right); ``dz_all``, ``lab_all`` (4, n): the depth step
        to and label of each of the four coarse neighbours (``CORNERS``) of each pixel, ``tol`` (n,) its link
        tolerance."""
        valid_c = np.isfinite(dz_all) & (lab_all > 0)
        lab_masked = np.where(valid_c, lab_all, 0)
        hi_l, lo_l = lab_masked.max(axis=0), np.where(valid_c, lab_all, np.iinfo(np.int32).max).min(axis=0)
        amb = np.flatnonzero(valid_c.any(axis=0) & (hi_l != lo_l))
        if len(amb) == 0:
            return
        fy, fx, rows, cols = at
        fy, fx = fy[amb], fx[amb]
        colour = lab_box[fy, fx]
        cost = np.full((4, len(amb)), np.inf, dtype=np.float32)
        for c, (di, dj) in enumerate(CORNERS):
            dc = colour - grid.lab[rows[di][amb], cols[dj][amb]]
            de = np.sqrt(dc[:, 0] ** 2 + dc[:, 1] ** 2 + dc[:, 2] ** 2)
            cost[c] = dz_all[c, amb] / tol[amb] + de / np.float32(self.config.colour_edge_threshold)
        best = np.argmin(cost, axis=0)
        best_label[amb] = lab_all[best, amb]
        best_dz[amb] = dz_all[best, amb]

    def _make_objects(
        self, grid: CoarseGrid, boxed: BoxedLabels, roi: tuple[int, int, int, int] | None
    ) -> tuple[list[SegmentedObject], np.ndarray]:
        """Clean each cluster's mask (specks, holes), keep the largest ``max_objects`` (inside ``roi`` when given)
        and measure them; returns the objects and the full-image label image."""
        cfg = self.config
        H, W = grid.depth.shape
        by, bx = boxed.box[0].start, boxed.box[1].start
        axes = plane_axes(grid.plane)
        objects: list[SegmentedObject] = []
        new_labels = np.zeros((H, W), dtype=np.int32)
        for m, (y0, _, x0, _), area in self._clean_masks(boxed)[: cfg.max_objects]:
            gy0, gx0 = y0 + by, x0 + bx  # crop origin in full-image pixels
            if roi is not None:
                rx0, ry0, rx1, ry1 = roi
                inside = m[max(0, ry0 - gy0) : max(0, ry1 - gy0), max(0, rx0 - gx0) : max(0, rx1 - gx0)].sum()
                if inside < cfg.min_roi_overlap * area:
                    continue
            obj = self._measure(grid, m, (gy0, gx0), axes, len(objects) + 1)
            if obj is not None:
                new_labels[obj.mask] = obj.id
                objects.append(obj)
        return objects, new_labels

    def _clean_masks(self, boxed: BoxedLabels) -> list[tuple[np.ndarray, tuple[int, int, int, int], int]]:
        """``(mask crop, (y0, y1, x0, x1) in the box, area)`` of every cleaned cluster large enough, largest first."""
        cfg = self.config
        labels = boxed.labels
        bh, bw = labels.shape
        table_seen = np.isfinite(boxed.height) & (boxed.height <= cfg.grow_height_m)
        candidates: list[tuple[np.ndarray, tuple[int, int, int, int], int]] = []
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            # Crop with a margin so hole filling and speck removal see the whole object.
            y0, y1 = max(0, sl[0].start - 2), min(bh, sl[0].stop + 2)
            x0, x1 = max(0, sl[1].start - 2), min(bw, sl[1].stop + 2)
            lab = labels[y0:y1, x0:x1]
            m = lab == k
            n_cc, cc, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
            if n_cc > 2:
                areas = stats[1:, cv2.CC_STAT_AREA]
                m = np.isin(cc, np.flatnonzero(areas >= cfg.speck_fraction * areas.max()) + 1)
            if cfg.fill_holes:
                crop = (slice(y0, y1), slice(x0, x1))
                colour = None if boxed.lab is None else boxed.lab[crop]
                m |= self._holes_to_fill(m, lab == 0, table_seen[crop], colour)
            area = int(m.sum())
            if area >= cfg.min_object_area_px:
                candidates.append((m, (y0, y1, x0, x1), area))
        candidates.sort(key=lambda item: -item[2])
        return candidates

    def _measure(
        self, grid: CoarseGrid, crop: np.ndarray, origin: tuple[int, int], axes: np.ndarray, obj_id: int
    ) -> SegmentedObject | None:
        """The object of a mask ``crop`` whose top-left pixel is ``origin`` (row, column): full mask, box, 3D
        centroid and extent, size on the plane, polar, confidence, border flag; None with fewer than 3 depth
        pixels."""
        plane = grid.plane
        H, W = grid.depth.shape
        vv, uu = np.nonzero(crop)
        vv, uu = vv + origin[0], uu + origin[1]
        z = grid.depth[vv, uu]
        ok = np.isfinite(z)
        if ok.sum() < 3:
            return None
        p = grid.intrinsics.backproject_pixels(uu[ok], vv[ok], z[ok])
        geometry = measure_points(p, plane, axes)
        coverage = float(ok.mean())
        # Confidence: depth backs the mask, and there are enough points to trust the cluster.
        size_term = min(1.0, len(p) / (20.0 * self.config.min_object_points))
        mask = np.zeros((H, W), dtype=bool)
        mask[vv, uu] = True
        box = (int(uu.min()), int(vv.min()), int(uu.max()) + 1, int(vv.max()) + 1)
        return SegmentedObject(
            id=obj_id,
            mask=mask,
            box_xyxy=box,
            centroid_cam=geometry.centroid_cam,
            extent_m=geometry.extent_m,
            score=float(np.clip(0.5 + 0.5 * coverage * size_term, 0.0, 1.0)),
            method=METHOD_RGBD,
            camera_polar_deg=geometry.camera_polar_deg,
            size_on_plane_m=geometry.size_on_plane_m,
            depth_coverage=coverage,
            truncated=touches_border(box, W, H),
        )

    @staticmethod
    def _holes_to_fill(
        mask: np.ndarray, free: np.ndarray, table_seen: np.ndarray, lab: np.ndarray | None
    ) -> np.ndarray:
        """Holes of ``mask`` (not held by another object: ``free``) that are part of the object: no valid depth or
        above the table, or at table height but coloured like the object, not like the table (the inside of a bowl,
        whose bottom is within millimetres of the table; a mug handle shows the table and stays open)."""
        # Close small gaps first: a thin rim seen edge-on (the front lip of a bowl) must not open the hole.
        closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) > 0
        filled = fill_holes(closed | mask)
        holes = filled & ~mask & free
        if not holes.any():
            return holes
        n, comp = cv2.connectedComponents(holes.astype(np.uint8), connectivity=4)
        hole_comp = comp[holes]  # per-hole sums over the hole pixels only (bincount, not ndimage's relabelling)
        fill = np.zeros(n, dtype=bool)
        fill[1:] = np.bincount(hole_comp[table_seen[holes]], minlength=n)[1:] == 0
        outside = table_seen & ~filled
        if lab is not None and outside.any() and not fill[1:].all():
            obj_colour, table_colour = lab[mask].mean(axis=0), lab[outside].mean(axis=0)
            count = np.bincount(hole_comp, minlength=n)[1:]
            hole_lab = lab[holes]
            colours = (
                np.stack([np.bincount(hole_comp, hole_lab[:, c], minlength=n)[1:] for c in range(3)], 1)
                / count[:, None]
            )  # (n - 1, 3)
            like_object = np.linalg.norm(colours - obj_colour, axis=1) < np.linalg.norm(colours - table_colour, axis=1)
            fill[1:] |= like_object
        return fill[comp] & holes

    # ------------------------------------------------------------------- RGB
    def _segment_rgb(self, rgb: np.ndarray, roi: tuple[int, int, int, int] | None) -> FrameSegmentation:
        t0 = time.perf_counter()
        objects = segment_rgb(rgb, roi, self.config, promptable=self.promptable)
        labels = np.zeros(rgb.shape[:2], dtype=np.int32)
        for obj in objects:
            labels[obj.mask] = obj.id
        return FrameSegmentation(objects=objects, labels=labels, timings={"total": time.perf_counter() - t0})
