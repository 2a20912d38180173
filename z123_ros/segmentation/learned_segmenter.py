"""``segmentation.method: learned``: the depth-only network of z123_ros.segmentation.learned_net, trained on the
simulator by ``z123 train-segmenter``, as a :class:`~z123_ros.segmentation.factory.Segmenter`.

Pipeline of :meth:`LearnedSegmenter.segment` for one frame with depth:

1. Subsample the depth so its longer side is ~``input_long_side`` (640x480 -> 160x120), back-project it, and fit
   the dominant plane (RANSAC) for the heights above it.
2. The network: foreground probability and, per pixel, the offset to its object's 3D centre.
3. Group the foreground pixels: connected components of the pixel grid, neighbours linked where they lie on one
   surface and their predicted centres agree (closer than ``cluster_radius_m``). Foreground pixels without depth
   take the label of the nearest labelled pixel.
4. Back to full resolution guided by depth: each pixel takes the label of the neighbouring network-resolution
   sample closest to it in depth (so masks follow depth edges, not the subsampling grid).
5. Clean each mask (specks, holes) and measure the objects as the tabletop segmenter does (the plane: step 1's).

Without depth it falls back to the tabletop segmenter's RGB-only path (the network needs depth).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from z123_ros.camera import CameraIntrinsics, polar_over_plane
from z123_ros.geometry import plane_axes
from z123_ros.segmentation.config import SegmentationConfig
from z123_ros.segmentation.inputs import check_depth, check_rgb, check_roi
from z123_ros.segmentation.learned_config import PACKAGED_WEIGHTS, ClusterConfig, NetConfig
from z123_ros.segmentation.learned_net import forward, load_weights, plane_height, subsample_frame, xyz_image
from z123_ros.segmentation.masks import clean_mask, mask_box, measure_points, touches_border
from z123_ros.segmentation.tabletop import TabletopSegmenter
from z123_ros.segmentation.types import FrameSegmentation, SegmentedObject

logger = logging.getLogger(__name__)

METHOD_LEARNED = "rgbd_learned"


def predict(params: dict, cfg: NetConfig, xyz: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, h, w) points and (h, w) heights above the plane -> (foreground probability (h, w), offsets in metres (3,
    h, w)); pads to the network's multiple internally."""
    import torch

    mult = 2**cfg.levels
    h, w = xyz.shape[1:]
    H, W = -(-h // mult) * mult, -(-w // mult) * mult
    padded = np.zeros((1, 4, H, W), np.float32)
    padded[0, :3, :h, :w] = xyz
    padded[0, 3, :h, :w] = height
    with torch.no_grad():
        t = torch.from_numpy(padded)
        logits, offsets = forward(params, t[:, :3], t[:, 3:], cfg)
    prob = torch.sigmoid(logits[0, 0, :h, :w]).numpy()
    return prob, offsets[0, :, :h, :w].numpy() * cfg.offset_scale_m


def _links(xyz: np.ndarray, centres: np.ndarray, ok: np.ndarray, cc: ClusterConfig, spacing: float):
    """Edges (i, j) of flat pixel indices between 4-neighbours that are both object pixels with depth, on one surface
    (3D gap below ``max(link_distance_m, link_spacing * spacing * z)``) and pointing at one centre (predicted centres
    closer than ``cluster_radius_m``)."""
    h, w = ok.shape
    index = np.arange(h * w).reshape(h, w)
    rows, cols = [], []
    for dy, dx in ((0, 1), (1, 0)):
        a = (slice(0, h - dy), slice(0, w - dx))
        b = (slice(dy, h), slice(dx, w))
        gap = np.linalg.norm(xyz[:, a[0], a[1]] - xyz[:, b[0], b[1]], axis=0)
        tol = np.maximum(cc.link_distance_m, cc.link_spacing * spacing * xyz[2, a[0], a[1]])
        same = np.linalg.norm(centres[:, a[0], a[1]] - centres[:, b[0], b[1]], axis=0) < cc.cluster_radius_m
        link = ok[a] & ok[b] & (gap < tol) & same
        rows.append(index[a][link])
        cols.append(index[b][link])
    return np.concatenate(rows), np.concatenate(cols)


def cluster_instances(
    xyz: np.ndarray, prob: np.ndarray, offsets: np.ndarray, cc: ClusterConfig, spacing: float = 0.0
) -> np.ndarray:
    """(h, w) int32 labels (0 = background) at the network's resolution from its outputs.

    Object pixels are grouped by connected components of the pixel grid, linked where neighbours lie on one surface
    and their predicted centres agree: depth edges separate objects apart or in front of each other, the centres
    separate touching ones. Small pieces join the neighbouring object whose centre they point at, or are dropped.
    ``spacing``: 1 / focal length of the grid (metres between neighbours per metre of depth).
    """
    h, w = prob.shape
    fg = prob > cc.foreground_threshold
    ok = fg & (xyz[2] > 0)
    labels = np.zeros((h, w), np.int32)
    if ok.sum() < cc.min_object_pixels:
        return labels
    centres = xyz + offsets
    rows, cols = _links(xyz, centres, ok, cc, spacing)
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(h * w, h * w))
    comp = connected_components(graph, directed=False)[1].reshape(h, w)
    comp = np.where(ok, comp + 1, 0)
    _, comp = np.unique(comp, return_inverse=True)
    comp = comp.reshape(h, w).astype(np.int32)  # 0 = background (the smallest value), 1..K pieces
    labels = _absorb_small(comp, centres, cc)
    # Object pixels without depth (holes on dark or shiny parts): the label of the nearest labelled pixel nearby.
    holes = fg & (xyz[2] <= 0)
    if holes.any() and labels.any():
        dist_px, (iy, ix) = ndimage.distance_transform_edt(labels == 0, return_indices=True)
        fill = holes & (dist_px <= 2)
        labels[fill] = labels[iy, ix][fill]
    return labels


def _absorb_small(comp: np.ndarray, centres: np.ndarray, cc: ClusterConfig) -> np.ndarray:
    """Pieces under ``min_object_pixels`` join the touching piece whose mean predicted centre is nearest (within
    ``2 * cluster_radius_m``), else vanish; the rest are renumbered 1..K."""
    n = int(comp.max())
    if n == 0:
        return comp
    index = np.arange(1, n + 1)
    sizes = ndimage.sum(np.ones_like(comp), comp, index)
    mean_c = np.stack([ndimage.mean(centres[i], comp, index) for i in range(3)], axis=1)  # (n, 3)
    target = np.arange(n + 1)
    boxes = ndimage.find_objects(comp)
    h, w = comp.shape
    for k in np.flatnonzero(sizes < cc.min_object_pixels) + 1:
        sl = boxes[k - 1]
        y0, y1, x0, x1 = (
            max(0, sl[0].start - 2),
            min(h, sl[0].stop + 2),
            max(0, sl[1].start - 2),
            min(w, sl[1].stop + 2),
        )
        crop = comp[y0:y1, x0:x1]
        ring = ndimage.binary_dilation(crop == k, iterations=2)
        around = [int(j) for j in np.unique(crop[ring]) if j not in (0, k)]
        big = [j for j in around if sizes[j - 1] >= cc.min_object_pixels]
        target[k] = 0
        if big:
            d = np.linalg.norm(mean_c[np.array(big) - 1] - mean_c[k - 1], axis=1)
            if d.min() < 2.0 * cc.cluster_radius_m:
                target[k] = big[int(np.argmin(d))]
    # Pieces of one object parted by an occluder or a hole point at one centre: join them (largest first).
    big = [k for k in np.argsort(-sizes) + 1 if sizes[k - 1] >= cc.min_object_pixels]
    for i, k in enumerate(big):
        if target[k] != k:
            continue
        for j in big[i + 1 :]:
            if target[j] == j and np.linalg.norm(mean_c[j - 1] - mean_c[k - 1]) < 0.5 * cc.cluster_radius_m:
                target[j] = k
    out = target[target][comp]
    _, out = np.unique(out, return_inverse=True)
    return out.reshape(comp.shape).astype(np.int32)


def upsample_labels(labels: np.ndarray, small_depth: np.ndarray, depth: np.ndarray, stride: int) -> np.ndarray:
    """Full-resolution labels: each pixel takes the label of the 3x3 neighbouring samples (subsampled at ``stride``,
    offset ``stride // 2``) closest to it in depth; the nearest sample where depth says nothing."""
    if stride == 1:
        return labels.copy()
    H, W = depth.shape
    h, w = labels.shape
    off = stride // 2
    iy = np.clip(np.rint((np.arange(H) - off) / stride).astype(int), 0, h - 1)
    ix = np.clip(np.rint((np.arange(W) - off) / stride).astype(int), 0, w - 1)
    best_cost = np.full((H, W), np.inf, np.float32)
    out = labels[iy[:, None], ix[None, :]]
    full = np.where(np.isfinite(depth), depth, np.nan).astype(np.float32)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            yy, xx = np.clip(iy + dy, 0, h - 1)[:, None], np.clip(ix + dx, 0, w - 1)[None, :]
            cand_depth = small_depth[yy, xx]
            # Depth difference decides; a tiny spatial term breaks ties (and decides alone where depth is missing).
            cost = np.abs(full - cand_depth)
            cost = np.where(np.isfinite(cost), cost, 1.0) + 1e-4 * (dy * dy + dx * dx)
            better = cost < best_cost
            best_cost = np.where(better, cost, best_cost)
            out = np.where(better, labels[yy, xx], out)
    return out


class LearnedSegmenter:
    """The learned depth-only segmenter (see the module docstring).

    Args:
        config: segmentation settings; ``learned_weights`` names the weights (empty: the packaged ones).
        cluster: settings of the clustering (no retraining needed to change them).

    Raises:
        ModelLoadError: the weights are missing, unreadable or not ours (one line).
    """

    def __init__(self, config: SegmentationConfig | None = None, cluster: ClusterConfig | None = None) -> None:
        self.config = config or SegmentationConfig()
        self.cluster = cluster or ClusterConfig()
        path = Path(self.config.learned_weights or os.environ.get("Z123_LEARNED_SEG_WEIGHTS", "") or PACKAGED_WEIGHTS)
        self.params, self.net, self.meta = load_weights(path)
        self.weights_path = path
        self._fallback = TabletopSegmenter(self.config)
        logger.info("learned segmenter: %s (%d parameters)", path, sum(int(v.numel()) for v in self.params.values()))

    def segment(
        self,
        rgb: np.ndarray,
        intrinsics: CameraIntrinsics,
        depth_m: np.ndarray | None = None,
        roi: tuple[int, int, int, int] | None = None,
        T_cam_from_world: np.ndarray | None = None,
    ) -> FrameSegmentation:
        """Segment one frame (arguments and errors as :meth:`TabletopSegmenter.segment`)."""
        check_rgb(rgb, intrinsics)
        roi_box = check_roi(roi, intrinsics.width, intrinsics.height)
        if depth_m is None:
            return self._fallback.segment(rgb, intrinsics, None, roi, T_cam_from_world)
        depth = check_depth(depth_m, intrinsics)
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        small, small_intr, stride = subsample_frame(depth, intrinsics, self.net.input_long_side)
        xyz = xyz_image(small, small_intr)
        height, plane = plane_height(xyz, self.config.plane_distance_m, self.config.seed)
        prob, offsets = predict(self.params, self.net, xyz, height)
        timings["network"] = time.perf_counter() - t0
        t = time.perf_counter()
        coarse = cluster_instances(xyz, prob, offsets, self.cluster, 1.0 / small_intr.fx)
        timings["cluster"] = time.perf_counter() - t
        t = time.perf_counter()
        labels = upsample_labels(coarse, small, depth, stride)
        objects, label_image = self._objects(labels, depth, intrinsics, plane, roi_box, prob, coarse)
        timings["objects"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        polar = None
        if objects and plane is not None:
            polar = polar_over_plane(plane, np.mean([o.centroid_cam for o in objects], axis=0))
        return FrameSegmentation(
            objects=objects, plane_cam=plane, camera_polar_deg=polar, labels=label_image, timings=timings,
            T_cam_from_world=None if T_cam_from_world is None else np.asarray(T_cam_from_world, np.float64),
        )  # fmt: skip

    def _objects(self, labels, depth, intr, plane, roi, prob, coarse) -> tuple[list[SegmentedObject], np.ndarray]:
        """Cleaned, measured objects (largest first, at most ``max_objects``) and the full-resolution label image."""
        cc = self.cluster
        H, W = depth.shape
        masks = []
        for k, sl in enumerate(ndimage.find_objects(labels), start=1):
            if sl is None:
                continue
            m = np.zeros((H, W), bool)
            m[sl] = clean_mask(labels[sl] == k, self.config.speck_fraction)
            area = int(m.sum())
            if area < cc.min_object_area_px:
                continue
            if roi is not None and m[roi[1] : roi[3], roi[0] : roi[2]].sum() < self.config.min_roi_overlap * area:
                continue
            score = float(prob[coarse == k].mean()) if (coarse == k).any() else 0.5
            masks.append((area, m, score))
        masks.sort(key=lambda item: -item[0])
        axes = None if plane is None else plane_axes(plane)
        objects: list[SegmentedObject] = []
        label_image = np.zeros((H, W), np.int32)
        for _, m, score in masks[: cc.max_objects]:
            m &= label_image == 0  # hole filling may reach into a neighbour: first (largest) keeps it
            obj = _measure(m, depth, intr, plane, axes, len(objects) + 1, score)
            if obj is not None:
                label_image[obj.mask] = obj.id
                objects.append(obj)
        return objects, label_image


def _measure(mask, depth, intr, plane, axes, obj_id: int, score: float) -> SegmentedObject | None:
    """One object from its full-resolution mask (as TabletopSegmenter measures them); None with < 3 depth pixels."""
    H, W = depth.shape
    vv, uu = np.nonzero(mask)
    z = depth[vv, uu]
    ok = np.isfinite(z)
    if ok.sum() < 3:
        return None
    p = intr.backproject_pixels(uu[ok], vv[ok], z[ok])
    geometry = measure_points(p, plane, axes)
    box = mask_box(mask)
    return SegmentedObject(
        id=obj_id, mask=mask, box_xyxy=box, centroid_cam=geometry.centroid_cam, extent_m=geometry.extent_m,
        score=float(np.clip(score, 0.0, 1.0)), method=METHOD_LEARNED, camera_polar_deg=geometry.camera_polar_deg,
        size_on_plane_m=geometry.size_on_plane_m, depth_coverage=float(ok.mean()),
        truncated=touches_border(box, W, H),
    )  # fmt: skip
