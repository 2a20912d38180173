"""RGB-only fallbacks, for frames without depth (or without a support plane in the depth).

- ``rgb_grabcut``: OpenCV GrabCut seeded by a box (the caller's roi): good when the box is tight around one object.
- ``rgb_saliency``: no box given: the pixels whose colour is far from every colour on the image border (the border is
  assumed to be background, the object near the middle), refined by GrabCut seeded with that mask.
- a learned promptable segmenter (z123_ros.segmentation.learned) replaces GrabCut when one is given with a box.

They are clearly less reliable than the RGB-D segmenter: their objects carry no 3D centroid or extent and lower
scores (``SCORE_*`` below), and ``method`` says which one made the mask.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np
from scipy import ndimage

from z123_ros.segmentation.config import SegmentationConfig
from z123_ros.segmentation.learned import PromptableSegmenter
from z123_ros.segmentation.masks import clean_mask, mask_box
from z123_ros.segmentation.types import SegmentedObject

logger = logging.getLogger(__name__)

METHOD_GRABCUT = "rgb_grabcut"
METHOD_SALIENCY = "rgb_saliency"
#: Scores of the RGB-only methods: below every RGB-D object (>= 0.5), the box-seeded one above the unseeded one.
SCORE_GRABCUT = 0.4
SCORE_SALIENCY = 0.25
#: A learned segmenter's own confidence is scaled into 0..SCORE_LEARNED_MAX: still below every RGB-D object.
SCORE_LEARNED_MAX = 0.45


def _resize_factor(shape: tuple[int, ...], max_side: int) -> float:
    return min(1.0, max_side / max(shape[0], shape[1]))


def _upsample(mask_small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    up = cv2.resize(mask_small.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return up > 0.5


def grabcut_box(
    rgb: np.ndarray, box_xyxy: tuple[int, int, int, int], iterations: int = 3, max_side: int = 240
) -> np.ndarray:
    """(H, W) bool mask of the object in ``box_xyxy`` by GrabCut, run on a copy at most ``max_side`` pixels wide."""
    H, W = rgb.shape[:2]
    f = _resize_factor(rgb.shape, max_side)
    small = cv2.resize(rgb, (round(W * f), round(H * f)), interpolation=cv2.INTER_AREA) if f < 1 else rgb
    h, w = small.shape[:2]
    x0, y0, x1, y1 = box_xyxy
    # GrabCut needs background samples outside the rectangle: keep a 1-pixel frame free.
    rx0, ry0 = max(1, int(x0 * f)), max(1, int(y0 * f))
    rx1, ry1 = min(w - 1, int(np.ceil(x1 * f))), min(h - 1, int(np.ceil(y1 * f)))
    if rx1 - rx0 < 2 or ry1 - ry0 < 2:
        return np.zeros((H, W), dtype=bool)
    gc = np.zeros((h, w), np.uint8)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    bgr = np.ascontiguousarray(small[:, :, ::-1])
    cv2.grabCut(bgr, gc, (rx0, ry0, rx1 - rx0, ry1 - ry0), bgd, fgd, iterations, cv2.GC_INIT_WITH_RECT)
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    return clean_mask(_upsample(fg, (H, W)))


def saliency_mask(
    rgb: np.ndarray, iterations: int = 3, max_side: int = 240, border_fraction: float = 0.06
) -> np.ndarray:
    """(H, W) bool mask of the most salient object: colour contrast to the image border, refined by GrabCut."""
    H, W = rgb.shape[:2]
    f = _resize_factor(rgb.shape, max_side)
    small = cv2.resize(rgb, (round(W * f), round(H * f)), interpolation=cv2.INTER_AREA) if f < 1 else rgb
    h, w = small.shape[:2]
    lab = cv2.cvtColor(cv2.GaussianBlur(small, (5, 5), 0), cv2.COLOR_RGB2LAB).astype(np.float32)
    # 1. Background colours: k-means of the border pixels.
    b = max(2, round(border_fraction * min(h, w)))
    border = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3), lab[:, :b].reshape(-1, 3)])
    border = np.concatenate([border, lab[:, -b:].reshape(-1, 3)])
    k = min(6, len(border))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    cv2.setRNGSeed(0)  # k-means++ seeding is random: keep the fallback deterministic
    _, _, centres = cv2.kmeans(border, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    # 2. Contrast: distance of every pixel to its nearest background colour, a centre prior, Otsu threshold.
    dist = np.min(np.linalg.norm(lab[:, :, None, :] - centres[None, None], axis=-1), axis=-1)
    yy, xx = np.mgrid[0:h, 0:w]
    centre_prior = np.exp(-(((xx - w / 2) / (0.5 * w)) ** 2 + ((yy - h / 2) / (0.5 * h)) ** 2))
    sal = dist * centre_prior
    sal8 = cv2.normalize(sal, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    _, seed = cv2.threshold(sal8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    seed = seed > 0
    if seed.sum() < 0.002 * h * w:
        return np.zeros((H, W), dtype=bool)
    # 3. Keep the seed piece with the most saliency, refine with GrabCut seeded by it.
    n, cc = cv2.connectedComponents(seed.astype(np.uint8), connectivity=8)
    mass = ndimage.sum(sal, cc, index=np.arange(1, n))
    seed = cc == (int(np.argmax(mass)) + 1)
    gc = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    gc[seed] = cv2.GC_PR_FGD
    gc[cv2.erode(seed.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0] = cv2.GC_FGD
    gc[:b] = gc[-b:] = cv2.GC_BGD
    gc[:, :b] = gc[:, -b:] = cv2.GC_BGD
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(small[:, :, ::-1]), gc, None, bgd, fgd, iterations, cv2.GC_INIT_WITH_MASK)
    fg = (gc == cv2.GC_FGD) | (gc == cv2.GC_PR_FGD)
    n, cc, stats, _ = cv2.connectedComponentsWithStats(fg.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros((H, W), dtype=bool)
    # The piece overlapping the seed most is the object (GrabCut may add disjoint background patches).
    overlap = ndimage.sum(seed, cc, index=np.arange(1, n))
    fg = cc == (int(np.argmax(overlap)) + 1)
    return clean_mask(_upsample(fg, (H, W)))


def _object(mask: np.ndarray, score: float, method: str) -> SegmentedObject | None:
    if not mask.any():
        return None
    return SegmentedObject(
        id=1, mask=mask, box_xyxy=mask_box(mask), centroid_cam=None, extent_m=None, score=score, method=method
    )


def segment_rgb(
    rgb: np.ndarray,
    roi: tuple[int, int, int, int] | None,
    config: SegmentationConfig,
    promptable: PromptableSegmenter | None = None,
) -> list[SegmentedObject]:
    """The RGB-only fallback: at most one object, in ``roi`` when given. An empty list when nothing was found."""
    H, W = rgb.shape[:2]
    whole_image = roi is not None and (roi[2] - roi[0]) * (roi[3] - roi[1]) >= 0.95 * H * W
    if roi is not None and promptable is not None:
        masks, scores = promptable.segment_boxes(rgb, [roi])
        obj = _object(clean_mask(masks[0]), SCORE_LEARNED_MAX * float(np.clip(scores[0], 0, 1)), promptable.name)
    elif roi is not None and not whole_image:
        obj = _object(
            grabcut_box(rgb, roi, config.grabcut_iterations, config.grabcut_max_side), SCORE_GRABCUT, METHOD_GRABCUT
        )
    else:
        obj = _object(
            saliency_mask(rgb, config.grabcut_iterations, config.grabcut_max_side), SCORE_SALIENCY, METHOD_SALIENCY
        )
    if obj is None:
        logger.warning("RGB-only segmentation found no object%s", "" if roi is None else f" in roi {roi}")
        return []
    return [obj]
