"""Mask helpers shared by the segmenters: tight boxes, speck removal, hole filling."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box ``(x0, y0, x1, y1)`` of a non-empty mask, x1/y1 exclusive."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def clean_mask(mask: np.ndarray, speck_fraction: float = 0.1) -> np.ndarray:
    """Keep the largest piece and the pieces at least ``speck_fraction`` of it; fill holes."""
    n, cc, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(mask.shape, dtype=bool)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = np.isin(cc, np.flatnonzero(areas >= speck_fraction * areas.max()) + 1)
    return ndimage.binary_fill_holes(keep)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with its holes filled: everything not reachable from the border through background (flood fill)."""
    h, w = mask.shape
    canvas = np.zeros((h + 2, w + 2), np.uint8)
    canvas[1:-1, 1:-1] = mask
    flood = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(canvas, flood, (0, 0), 1)
    return (canvas[1:-1, 1:-1] == 0) | mask
