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
from z123_ros.errors import ConfigError, InputError
from z123_ros.io import check_frame
from z123_ros.segmentation.plane import PlaneFit, fit_plane_ransac, plane_axes, signed_distance
from z123_ros.segmentation.types import FrameSegmentation, SegmentedObject

logger = logging.getLogger(__name__)

METHOD_RGBD = "rgbd_tabletop"


@dataclass
class SegmentationConfig:
    """Settings of :class:`TabletopSegmenter`. Distances in metres, sizes in full-resolution pixels."""

    stride: int = 4
    """Back-project and cluster every ``stride``-th pixel in each direction (4 on VGA: ~19 k points)."""
    plane_distance_m: float = 0.008
    """RANSAC inlier threshold for the support plane."""
    ransac_iterations: int = 200
    """Plane hypotheses drawn by RANSAC."""
    ransac_sample_points: int = 1000
    """Points each hypothesis is scored on (a random subsample of the coarse grid)."""
    min_plane_fraction: float = 0.1
    """The plane must hold at least this fraction of the valid coarse points, else the frame has no support plane."""
    min_height_m: float = 0.006
    """Points lower than this above the plane are table. Raised to 4 sigma of the plane's depth noise when larger."""
    grow_height_m: float = 0.0015
    """Pixels between this height and ``min_height_m`` next to an object are added back to it (its base)."""
    max_height_m: float = 0.6
    """Points higher than this above the plane are not objects on the table (shelves, people, walls)."""
    max_depth_m: float = 4.0
    """Workspace range along the optical axis."""
    restrict_to_table: bool = True
    """Keep only points whose foot on the plane falls inside the image hull of the plane's inlier pixels."""
    cluster_tolerance_m: float = 0.012
    """Neighbouring coarse points closer than this in 3D belong to the same object."""
    cluster_tolerance_spacing: float = 2.5
    """...or closer than this many times the coarse grid spacing at their depth (far or slanted surfaces)."""
    colour_split: bool = True
    """Split a depth cluster whose colour falls apart into several large pieces (touching objects of different
    colours at the same depth). Turn off for strongly multi-coloured objects."""
    colour_edge_threshold: float = 18.0
    """Colour difference (see ``colour_features``) that cuts a link between neighbouring points."""
    self_occlusion_gap_m: float = 0.04
    """Join two clusters of one colour across a depth step whose smallest 3D gap is below this (one object hiding
    part of itself); 0 = never. Needs ``colour_split``."""
    grazing_angle_deg: float = 70.0
    """A cluster one coarse cell wide whose surface is seen at more than this angle from its normal (a box's side
    face seen edge-on, its depth ramping steeply across the image) joins the object within
    ``self_occlusion_gap_m`` of it; 90 = never. Thin clusters facing the camera (a pen) stay objects."""
    max_contact_fraction: float = 0.5
    """A colour piece counts as an object of its own when at most this fraction of its boundary is contact with
    other colours of the same cluster (the rest: table, background, depth edges)."""
    min_object_points: int = 15
    """Clusters with fewer coarse points are dropped as noise."""
    min_object_area_px: int = 200
    """Objects whose final mask is smaller are dropped."""
    speck_fraction: float = 0.1
    """Disconnected pieces of a mask smaller than this fraction of its largest piece are dropped as specks."""
    fill_holes: bool = True
    """Fill holes of a mask unless the table (valid depth on the plane) or another object shows through them."""
    max_objects: int = 32
    """At most this many objects per frame (the largest win)."""
    seed: int = 0
    """Seed of the RANSAC sampler: the same frame always gives the same result."""
    rgb_fallback: bool = True
    """Without depth, or with depth but no plane, fall back to RGB-only segmentation (lower scores)."""
    grabcut_iterations: int = 3
    """GrabCut iterations of the RGB-only fallback."""
    grabcut_max_side: int = 240
    """The RGB-only fallback works on an image resized so its longer side is at most this (speed)."""
    min_roi_overlap: float = 0.5
    """With an roi, RGB-D objects are kept when at least this fraction of their mask lies inside it."""

    def validate(self) -> None:
        if not 1 <= self.stride <= 32:
            raise ConfigError(f"stride must be in 1..32, got {self.stride}")
        for name in ("plane_distance_m", "min_height_m", "max_height_m", "max_depth_m", "cluster_tolerance_m"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.max_height_m <= self.min_height_m:
            raise ConfigError(f"max_height_m ({self.max_height_m}) must exceed min_height_m ({self.min_height_m})")
        if not 0 < self.min_plane_fraction < 1:
            raise ConfigError(f"min_plane_fraction must be in (0, 1), got {self.min_plane_fraction}")
        if self.ransac_iterations < 1 or self.ransac_sample_points < 3:
            raise ConfigError("ransac_iterations must be >= 1 and ransac_sample_points >= 3")
        if not 0 < self.grazing_angle_deg <= 90:
            raise ConfigError(f"grazing_angle_deg must be in (0, 90], got {self.grazing_angle_deg}")


def check_roi(roi: tuple | list | np.ndarray | None, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Validate an roi ``(x0, y0, x1, y1)`` (pixels, x1/y1 exclusive) and clip it to the image."""
    if roi is None:
        return None
    arr = np.asarray(roi, dtype=np.float64).ravel()
    if arr.size != 4 or not np.all(np.isfinite(arr)):
        raise InputError(f"roi must be 4 finite numbers (x0, y0, x1, y1), got {roi!r}")
    x0, y0 = int(max(0, np.floor(arr[0]))), int(max(0, np.floor(arr[1])))
    x1, y1 = int(min(width, np.ceil(arr[2]))), int(min(height, np.ceil(arr[3])))
    if x1 - x0 < 2 or y1 - y0 < 2:
        raise InputError(f"roi {tuple(arr.tolist())} is empty or outside the {width}x{height} image")
    return x0, y0, x1, y1


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box ``(x0, y0, x1, y1)`` of a non-empty mask, x1/y1 exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _check_depth(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    if not isinstance(depth_m, np.ndarray):
        raise InputError(f"depth must be a numpy array, got {type(depth_m).__name__}")
    if not np.issubdtype(depth_m.dtype, np.floating):
        raise InputError(
            f"depth must be float metres, got {depth_m.dtype} (convert raw 16-bit millimetres with "
            "z123_ros.io.load_depth or depth.astype(np.float32) / 1000)"
        )
    if depth_m.shape != (intrinsics.height, intrinsics.width):
        raise InputError(
            f"depth is {depth_m.shape[1] if depth_m.ndim > 1 else '?'}x{depth_m.shape[0]} but the camera says "
            f"{intrinsics.width}x{intrinsics.height}"
        )
    depth = depth_m.astype(np.float32, copy=True)
    depth[~np.isfinite(depth) | (depth <= 0)] = np.nan
    if not np.isfinite(depth).any():
        raise InputError("depth has no valid pixel (all NaN, zero or negative): is the depth stream running?")
    return depth


def colour_features(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) float32 colour features whose Euclidean distance separates objects more than shading: CIE Lab
    (OpenCV 8-bit scaling) with lightness halved, since shading across one object mostly changes lightness."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    lab[..., 0] *= 0.5
    return lab


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: everything not reachable from the border through background (flood fill)."""
    h, w = mask.shape
    canvas = np.zeros((h + 2, w + 2), np.uint8)
    canvas[1:-1, 1:-1] = mask
    flood = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(canvas, flood, (0, 0), 1)
    return (canvas[1:-1, 1:-1] == 0) | mask


def _components(rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
    """Connected-component id of each of ``n`` nodes of the undirected graph with edges ``rows[i] - cols[i]``."""
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def check_rgb(rgb: np.ndarray, intrinsics: CameraIntrinsics) -> None:
    if not isinstance(rgb, np.ndarray):
        raise InputError(f"RGB must be a numpy array, got {type(rgb).__name__}")
    check_frame(rgb, intrinsics)


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
            depth = _check_depth(depth_m, intrinsics)
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
        s = cfg.stride
        H, W = depth.shape
        off = s // 2  # sample pixel centres, so the coarse grid is symmetric in the image

        # 1. Coarse back-projection: (h, w) grids of camera-frame coordinates.
        us = np.arange(off, W, s, dtype=np.float64)
        vs = np.arange(off, H, s, dtype=np.float64)
        zc = depth[off::s, off::s].astype(np.float64)
        xc = (us[None, :] - intr.cx) / intr.fx * zc
        yc = (vs[:, None] - intr.cy) / intr.fy * zc
        valid = np.isfinite(zc) & (zc < cfg.max_depth_m)
        pts = np.stack([xc, yc, zc], axis=-1)  # (h, w, 3)
        timings["backproject"] = time.perf_counter() - t0

        # 2. Support plane.
        t = time.perf_counter()
        flat_valid = pts[valid]
        fit = fit_plane_ransac(
            flat_valid,
            cfg.plane_distance_m,
            cfg.ransac_iterations,
            cfg.ransac_sample_points,
            rng=np.random.default_rng(cfg.seed),
        )
        timings["plane"] = time.perf_counter() - t
        if fit is None or fit.inlier_fraction < cfg.min_plane_fraction:
            frac = 0.0 if fit is None else fit.inlier_fraction
            logger.info("support plane holds %.0f%% of the points (< %.0f%%)", 100 * frac, 100 * cfg.min_plane_fraction)
            return None
        plane = fit.plane
        min_h = max(cfg.min_height_m, 4.0 * fit.sigma_m)

        # 3. Workspace: above the plane, below max height, foot on the table.
        t = time.perf_counter()
        height = np.full(zc.shape, np.nan)
        height[valid] = signed_distance(plane, flat_valid)
        fg = valid & (height > min_h) & (height < cfg.max_height_m)
        if cfg.restrict_to_table and fg.any():
            fg &= self._on_table(pts, height, fg, valid, fit, intr, s, off)
        timings["workspace"] = time.perf_counter() - t

        # 4. Cluster the coarse grid.
        t = time.perf_counter()
        lab = None
        if cfg.colour_split:
            # Mean colour of each coarse cell, CIE Lab (8-bit scaling), for splitting touching objects.
            small = cv2.resize(rgb[: zc.shape[0] * s, : zc.shape[1] * s], (zc.shape[1], zc.shape[0]), cv2.INTER_AREA)
            lab = colour_features(small)
        coarse_labels = self._cluster(pts, fg, lab, intr, s, depth, off)
        timings["cluster"] = time.perf_counter() - t

        # 5. Full-resolution masks.
        t = time.perf_counter()
        objects: list[SegmentedObject] = []
        labels = np.zeros(depth.shape, dtype=np.int32)
        if coarse_labels.any():
            box_labels, hf, box, lab_box = self._upsample_labels(
                rgb, depth, coarse_labels, zc, lab, plane, intr, s, off, min_h
            )
            timings["upsample"] = time.perf_counter() - t
            t = time.perf_counter()
            objects, labels = self._make_objects(box_labels, box, depth, hf, lab_box, plane, intr, roi)
            timings["objects"] = time.perf_counter() - t
        polar = None
        if objects:
            centre = np.mean([o.centroid_cam for o in objects], axis=0)
            polar = polar_over_plane(plane, centre)
        timings["total"] = time.perf_counter() - t0
        return FrameSegmentation(
            objects=objects, plane_cam=plane, camera_polar_deg=polar, labels=labels, timings=timings
        )

    def _on_table(
        self,
        pts: np.ndarray,
        height: np.ndarray,
        fg: np.ndarray,
        valid: np.ndarray,
        fit: PlaneFit,
        intr: CameraIntrinsics,
        s: int,
        off: int,
    ) -> np.ndarray:
        """(h, w) bool: the foot of each point on the plane projects inside the image hull of the plane's inliers."""
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
        feet = pts[fg] - height[fg, None] * fit.plane[None, :3]
        out = np.zeros((h, w), dtype=bool)
        in_front = feet[:, 2] > 1e-6
        fu = np.full(len(feet), -1, dtype=np.int64)
        fv = np.full(len(feet), -1, dtype=np.int64)
        fu[in_front] = np.round((intr.fx * feet[in_front, 0] / feet[in_front, 2] + intr.cx - off) / s).astype(np.int64)
        fv[in_front] = np.round((intr.fy * feet[in_front, 1] / feet[in_front, 2] + intr.cy - off) / s).astype(np.int64)
        inside = (fu >= 0) & (fu < w) & (fv >= 0) & (fv < h)
        keep = np.zeros(len(feet), dtype=bool)
        keep[inside] = table[fv[inside], fu[inside]] > 0
        out[fg] = keep
        return out

    def _cluster(
        self,
        pts: np.ndarray,
        fg: np.ndarray,
        lab: np.ndarray | None,
        intr: CameraIntrinsics,
        s: int,
        depth: np.ndarray,
        off: int,
    ) -> np.ndarray:
        """(h, w) int32 coarse labels 1..K (largest first, some numbers may be unused): connected components of the
        8-neighbour grid with links cut at 3D gaps; then clusters that fall apart into colour pieces touching only
        along a short contact are split (touching objects at the same depth); then fragments join their objects."""
        cfg = self.config
        h, w = fg.shape
        index = np.arange(h * w).reshape(h, w)
        spacing = pts[..., 2] * s / min(intr.fx, intr.fy)  # metres between grid neighbours, fronto-parallel
        pairs_a, pairs_b, linked, same_colour, gaps = [], [], [], [], []
        for dv, du in ((0, 1), (1, 0), (1, 1), (1, -1)):
            a = (slice(0, h - dv), slice(max(0, -du), w - max(0, du)))
            b = (slice(dv, h), slice(max(0, du), w + min(0, du)))
            diff = pts[a] - pts[b]
            dist = np.sqrt(diff[..., 0] ** 2 + diff[..., 1] ** 2 + diff[..., 2] ** 2)
            step = np.hypot(dv, du)
            tol = np.maximum(cfg.cluster_tolerance_m * step, cfg.cluster_tolerance_spacing * step * spacing[a])
            touches = fg[a] | fg[b]  # every pair with at least one object point: links and object boundaries
            pairs_a.append(index[a][touches])
            pairs_b.append(index[b][touches])
            linked.append((fg[a] & fg[b] & (dist < tol))[touches])
            gaps.append(np.where(fg[a] & fg[b], dist, np.inf)[touches])
            if lab is not None:
                dc = lab[a][touches] - lab[b][touches]
                de = np.sqrt(dc[:, 0] ** 2 + dc[:, 1] ** 2 + dc[:, 2] ** 2)
                same_colour.append(de < cfg.colour_edge_threshold)
        pa, pb, link = np.concatenate(pairs_a), np.concatenate(pairs_b), np.concatenate(linked)
        comp = _components(pa[link], pb[link], h * w)
        if lab is not None:
            same = np.concatenate(same_colour)
            if cfg.self_occlusion_gap_m > 0:
                link = self._bridge_self_occlusions(comp, pa, pb, link, same, np.concatenate(gaps))
                comp = _components(pa[link], pb[link], h * w)
            keep = link & same
            pieces = _components(pa[keep], pb[keep], h * w)
            comp = self._split_by_colour(comp, pieces, fg, pa, pb, link, keep)
        comp = comp.reshape(h, w)
        # Relabel the surviving clusters 1..K, largest first.
        ids, counts = np.unique(comp[fg], return_counts=True)
        order = np.argsort(-counts, kind="stable")
        lut = np.zeros(max(int(comp.max()) + 1, 1), dtype=np.int32)
        big = order[counts[order] >= cfg.min_object_points]
        lut[ids[big]] = np.arange(1, len(big) + 1, dtype=np.int32)
        out = np.zeros((h, w), dtype=np.int32)
        out[fg] = lut[comp[fg]]
        grazing = self._grazing_clusters(out, depth, s, off, intr)
        self._attach_fragments(out, comp, pts, fg, spacing, grazing)
        return out

    def _grazing_clusters(
        self, labels: np.ndarray, depth: np.ndarray, s: int, off: int, intr: CameraIntrinsics
    ) -> np.ndarray:
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
        H, W = depth.shape
        ii, jj = np.nonzero(np.isin(labels, thin))
        v, u = ii * s + off, jj * s + off
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

    def _attach_fragments(
        self,
        labels: np.ndarray,
        comp: np.ndarray,
        pts: np.ndarray,
        fg: np.ndarray,
        spacing: np.ndarray,
        grazing: np.ndarray,
    ) -> None:
        """Give fragments to a nearby object (in place): clusters too small to be objects (a thin rim or handle
        seen edge-on breaks off its object on the coarse grid) and faces seen edge-on (``grazing``, see
        :meth:`_grazing_clusters`). A fragment joins the object most of its points have a point of within two grid
        cells and twice the link tolerance (for a grazing face: ``self_occlusion_gap_m``, the depth it ramps over
        between two samples). Passes repeat so a face several columns wide attaches column by column. Small
        fragments with no such neighbour stay dropped; grazing faces with none stay objects of their own."""
        original = labels.copy()
        for _ in range(3):
            if not self._attach_pass(labels, comp, pts, fg, spacing, grazing):
                break
        lone = grazing & (labels == 0)
        labels[lone] = original[lone]

    def _attach_pass(
        self,
        labels: np.ndarray,
        comp: np.ndarray,
        pts: np.ndarray,
        fg: np.ndarray,
        spacing: np.ndarray,
        grazing: np.ndarray,
    ) -> bool:
        """One pass of :meth:`_attach_fragments`; True when a fragment was attached."""
        cfg = self.config
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

    def _bridge_self_occlusions(
        self, comp: np.ndarray, pa: np.ndarray, pb: np.ndarray, link: np.ndarray, same: np.ndarray, gap: np.ndarray
    ) -> np.ndarray:
        """Link two clusters across a depth step when they are one object occluding itself (a spray bottle's head
        over its body, a cup's rim before its inner wall): they meet along several neighbour pairs, nearly all of one
        colour, and the smallest 3D step along that border is below ``self_occlusion_gap_m``. Returns the new links.
        Two objects of one colour standing right behind each other are joined too: the price of this rule."""
        cfg = self.config
        across = ~link & np.isfinite(gap) & (comp[pa] != comp[pb])
        if not across.any():
            return link
        idx = np.flatnonzero(across)
        ca, cb = comp[pa[idx]], comp[pb[idx]]
        key = np.minimum(ca, cb).astype(np.int64) * len(comp) + np.maximum(ca, cb)
        bridged = link.copy()
        for k in np.unique(key):
            sel = idx[key == k]
            if len(sel) < 3 or same[sel].mean() < 0.75 or gap[sel].min() > cfg.self_occlusion_gap_m:
                continue
            bridged[sel[same[sel]]] = True
        return bridged

    def _split_by_colour(
        self,
        comp: np.ndarray,
        pieces: np.ndarray,
        fg: np.ndarray,
        pa: np.ndarray,
        pb: np.ndarray,
        link: np.ndarray,
        same: np.ndarray,
    ) -> np.ndarray:
        """Split depth clusters into colour pieces that are objects of their own.

        A piece is an object when it has at least ``min_object_points`` and most of its boundary is free (table,
        background, a depth edge) rather than contact with the rest of its cluster: a touching object meets its
        neighbour along a short contact, a printed label is surrounded by its own object. Clusters with two or more
        such pieces are split; the other pieces (texture, rims) join the nearest object piece. All arrays are flat
        over the coarse grid except ``fg`` (h, w); ``pa``/``pb`` are neighbour pairs with at least one foreground end.
        """
        cfg = self.config
        h, w = fg.shape
        fg = fg.ravel()
        n = len(comp)
        # Boundary of each piece: pairs whose two ends are not in the same piece, counted from the foreground ends.
        contact = link & ~same & (pieces[pa] != pieces[pb])
        boundary = ~link | contact
        ends = np.concatenate([pa[boundary & fg[pa]], pb[boundary & fg[pb]]])
        contact_ends = np.concatenate([pa[contact], pb[contact]])
        n_boundary = np.bincount(pieces[ends], minlength=n)
        n_contact = np.bincount(pieces[contact_ends], minlength=n)
        size = np.bincount(pieces[fg], minlength=n)
        is_object = (size >= cfg.min_object_points) & (n_contact <= cfg.max_contact_fraction * n_boundary)
        out = comp.copy()
        next_id = int(comp.max()) + 1
        for cid in np.unique(comp[fg]):
            member = fg & (comp == cid)
            objs = np.unique(pieces[member & is_object[pieces]])
            if len(objs) < 2:
                continue
            # Nearest object piece of every point of the cluster, on the grid.
            member2d = member.reshape(h, w)
            rr, cc = np.nonzero(member2d)
            sl = (slice(rr.min(), rr.max() + 1), slice(cc.min(), cc.max() + 1))
            sub_pieces = pieces.reshape(h, w)[sl]
            sub_member = member2d[sl]
            seeds = np.zeros(sub_member.shape, dtype=np.int64)
            for j, p in enumerate(objs, start=1):
                seeds[sub_member & (sub_pieces == p)] = j
            _, (ni, nj) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
            out2d = out.reshape(h, w)[sl]
            out2d[sub_member] = seeds[ni, nj][sub_member] - 1 + next_id
            next_id += len(objs)
        return out

    def _upsample_labels(
        self,
        rgb: np.ndarray,
        depth: np.ndarray,
        coarse: np.ndarray,
        zc: np.ndarray,
        lab: np.ndarray | None,
        plane: np.ndarray,
        intr: CameraIntrinsics,
        s: int,
        off: int,
        min_h: float,
    ) -> tuple[np.ndarray, np.ndarray, tuple[slice, slice], np.ndarray | None]:
        """Full-resolution labels: each foreground pixel takes the label of the neighbouring coarse sample closest
        to it in depth (and colour, with ``lab``). Works in the box around the clusters only; returns
        ``(labels, height above the plane, box, Lab colour or None)``, all of the box."""
        cfg = self.config
        H, W = depth.shape
        h, w = coarse.shape
        cv_, cu_ = np.nonzero(coarse)
        y0 = max(0, (cv_.min() - 1) * s + off - s)
        y1 = min(H, (cv_.max() + 1) * s + off + s + 1)
        x0 = max(0, (cu_.min() - 1) * s + off - s)
        x1 = min(W, (cu_.max() + 1) * s + off + s + 1)
        box = (slice(y0, y1), slice(x0, x1))
        d = depth[box]
        # Height above the plane: z * (n . ray) + d with ray = ((u - cx)/fx, (v - cy)/fy, 1).
        n = plane[:3]
        ray_u = n[0] * (np.arange(x0, x1, dtype=np.float32) - intr.cx) / intr.fx
        ray_v = n[1] * (np.arange(y0, y1, dtype=np.float32) - intr.cy) / intr.fy + n[2]
        hf = d * (ray_v[:, None] + ray_u[None, :]).astype(np.float32) + np.float32(plane[3])
        fg = np.isfinite(d) & (hf > min_h) & (hf < cfg.max_height_m)
        # Coarse neighbours of each pixel: rows i0, i0+1 and columns j0, j0+1.
        fi = np.clip(np.floor((np.arange(y0, y1) - off) / s).astype(np.int64), 0, h - 1)
        fj = np.clip(np.floor((np.arange(x0, x1) - off) / s).astype(np.int64), 0, w - 1)
        zc32 = np.where(coarse > 0, zc, np.inf).astype(np.float32)  # a table sample never wins
        tol = np.maximum(cfg.cluster_tolerance_m, d * np.float32(2.0 * cfg.cluster_tolerance_spacing * s / intr.fx))
        lab_box = None
        if lab is not None:
            lab_box = colour_features(rgb[box])
        # 1. Depth alone: the candidate on the same surface (within tol) closest in depth.
        cand_labels, cand_dz = [], []
        for di in (0, 1):
            ii = np.minimum(fi + di, h - 1)[:, None]
            for dj in (0, 1):
                jj = np.minimum(fj + dj, w - 1)[None, :]
                dz = np.abs(d - zc32[ii, jj])
                cand_dz.append(np.where(dz < tol, dz, np.inf))
                cand_labels.append(np.broadcast_to(coarse[ii, jj], d.shape))
        dz_all = np.stack(cand_dz)  # (4, h_box, w_box)
        lab_all = np.stack(cand_labels)
        pick = np.argmin(dz_all, axis=0)
        best_dz = np.take_along_axis(dz_all, pick[None], 0)[0]
        best_label = np.take_along_axis(lab_all, pick[None], 0)[0]
        # 2. Where candidates of two objects are both on the surface (touching objects at one depth), colour
        # decides as well, with the clustering's colour weighting. Only these few pixels pay for it.
        if lab_box is not None:
            valid_c = np.isfinite(dz_all) & (lab_all > 0)
            lab_masked = np.where(valid_c, lab_all, 0)
            hi_l, lo_l = lab_masked.max(axis=0), np.where(valid_c, lab_all, np.iinfo(np.int32).max).min(axis=0)
            amb = fg & valid_c.any(axis=0) & (hi_l != lo_l)
            if amb.any():
                av, au = np.nonzero(amb)
                cost = np.full((4, len(av)), np.inf, dtype=np.float32)
                for c, (di, dj) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
                    ii = np.minimum(fi[av] + di, h - 1)
                    jj = np.minimum(fj[au] + dj, w - 1)
                    dc = lab_box[av, au] - lab[ii, jj]
                    de = np.sqrt(dc[:, 0] ** 2 + dc[:, 1] ** 2 + dc[:, 2] ** 2)
                    cost[c] = dz_all[c, av, au] / tol[av, au] + de / np.float32(cfg.colour_edge_threshold)
                best = np.argmin(cost, axis=0)
                best_label[av, au] = lab_all[best, av, au]
                best_dz[av, au] = dz_all[best, av, au]
        labels = np.where(fg & (best_dz < tol), best_label, 0).astype(np.int32)
        # Foreground pixels at an object's rim whose coarse neighbours are all table: take a neighbour's label.
        # Then the object's base, between grow_height_m and min_h above the table, the same way (a few pixels).
        base = np.isfinite(d) & (hf > cfg.grow_height_m) & (hf < cfg.max_height_m)
        kernel = np.ones((3, 3), np.uint8)
        for candidates, steps in ((fg, s), (base, 3)):
            for _ in range(steps):
                todo = candidates & (labels == 0)
                grown = cv2.dilate(labels.astype(np.float32), kernel).astype(np.int32)
                take = todo & (grown > 0)
                if not take.any():
                    break
                labels[take] = grown[take]
        return labels, hf, box, lab_box

    def _make_objects(
        self,
        labels: np.ndarray,
        box: tuple[slice, slice],
        depth: np.ndarray,
        hf: np.ndarray,
        lab_box: np.ndarray | None,
        plane: np.ndarray,
        intr: CameraIntrinsics,
        roi: tuple[int, int, int, int] | None,
    ) -> tuple[list[SegmentedObject], np.ndarray]:
        """Clean each cluster's mask (specks, holes) and measure it. ``labels``, ``hf`` and ``lab_box`` (Lab colour
        or None) cover ``box`` only."""
        cfg = self.config
        H, W = depth.shape
        by, bx = box[0].start, box[1].start
        bh, bw = labels.shape
        d_box = depth[box]
        table_seen = np.isfinite(d_box) & (hf <= cfg.grow_height_m)
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
                m |= self._holes_to_fill(m, lab == 0, table_seen[crop], None if lab_box is None else lab_box[crop])
            area = int(m.sum())
            if area >= cfg.min_object_area_px:
                candidates.append((m, (y0, y1, x0, x1), area))
        candidates.sort(key=lambda item: -item[2])
        axes = plane_axes(plane)
        objects: list[SegmentedObject] = []
        new_labels = np.zeros((H, W), dtype=np.int32)
        for m, (y0, y1, x0, x1), area in candidates[: cfg.max_objects]:
            gy0, gy1, gx0, gx1 = y0 + by, y1 + by, x0 + bx, x1 + bx  # crop in full-image pixels
            if roi is not None:
                rx0, ry0, rx1, ry1 = roi
                inside = m[max(0, ry0 - gy0) : max(0, ry1 - gy0), max(0, rx0 - gx0) : max(0, rx1 - gx0)].sum()
                if inside < cfg.min_roi_overlap * area:
                    continue
            vv, uu = np.nonzero(m)
            z = d_box[y0:y1, x0:x1][vv, uu]
            ok = np.isfinite(z)
            if ok.sum() < 3:
                continue
            z = z[ok].astype(np.float64)
            u = uu[ok] + gx0
            v = vv[ok] + gy0
            p = np.stack([(u - intr.cx) / intr.fx * z, (v - intr.cy) / intr.fy * z, z], axis=1)
            centroid = p.mean(axis=0)
            q = p[:, 0:1] * axes[:, 0] + p[:, 1:2] * axes[:, 1] + p[:, 2:3] * axes[:, 2]  # plane frame
            size_on_plane = np.array([np.ptp(q[:, 0]), np.ptp(q[:, 1]), max(0.0, float(q[:, 2].max() + plane[3]))])
            coverage = float(ok.mean())
            # Confidence: depth backs the mask, and there are enough points to trust the cluster.
            size_term = min(1.0, len(z) / (20.0 * cfg.min_object_points))
            obj_id = len(objects) + 1
            full = np.zeros((H, W), dtype=bool)
            full[gy0:gy1, gx0:gx1] = m
            new_labels[gy0:gy1, gx0:gx1][m] = obj_id
            objects.append(
                SegmentedObject(
                    id=obj_id,
                    mask=full,
                    box_xyxy=(
                        int(uu.min() + gx0),
                        int(vv.min() + gy0),
                        int(uu.max() + gx0 + 1),
                        int(vv.max() + gy0 + 1),
                    ),
                    centroid_cam=centroid,
                    extent_m=p.max(axis=0) - p.min(axis=0),
                    score=float(np.clip(0.5 + 0.5 * coverage * size_term, 0.0, 1.0)),
                    method=METHOD_RGBD,
                    camera_polar_deg=polar_over_plane(plane, centroid),
                    size_on_plane_m=size_on_plane,
                    depth_coverage=coverage,
                )
            )
        return objects, new_labels

    @staticmethod
    def _holes_to_fill(
        mask: np.ndarray, free: np.ndarray, table_seen: np.ndarray, lab: np.ndarray | None
    ) -> np.ndarray:
        """Holes of ``mask`` (not held by another object: ``free``) that are part of the object: no valid depth or
        above the table, or at table height but coloured like the object, not like the table (the inside of a bowl,
        whose bottom is within millimetres of the table; a mug handle shows the table and stays open)."""
        # Close small gaps first: a thin rim seen edge-on (the front lip of a bowl) must not open the hole.
        closed = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8)) > 0
        filled = _fill_holes(closed | mask)
        holes = filled & ~mask & free
        if not holes.any():
            return holes
        n, comp = cv2.connectedComponents(holes.astype(np.uint8), connectivity=4)
        at_table = ndimage.sum(table_seen, comp, index=np.arange(1, n))
        fill = np.zeros(n, dtype=bool)
        fill[1:] = at_table == 0
        outside = table_seen & ~filled
        if lab is not None and outside.any() and not fill[1:].all():
            obj_colour, table_colour = lab[mask].mean(axis=0), lab[outside].mean(axis=0)
            index = np.arange(1, n)
            colours = np.stack([ndimage.mean(lab[..., c], comp, index) for c in range(3)], axis=1)  # (n - 1, 3)
            like_object = np.linalg.norm(colours - obj_colour, axis=1) < np.linalg.norm(colours - table_colour, axis=1)
            fill[1:] |= like_object
        return fill[comp] & holes

    # ------------------------------------------------------------------- RGB
    def _segment_rgb(self, rgb: np.ndarray, roi: tuple[int, int, int, int] | None) -> FrameSegmentation:
        from z123_ros.segmentation.rgb import segment_rgb

        t0 = time.perf_counter()
        objects = segment_rgb(rgb, roi, self.config, promptable=self.promptable)
        labels = np.zeros(rgb.shape[:2], dtype=np.int32)
        for obj in objects:
            labels[obj.mask] = obj.id
        return FrameSegmentation(objects=objects, labels=labels, timings={"total": time.perf_counter() - t0})
