"""Image metrics of the novel-view protocol.

PSNR and SSIM are the novel-view pipeline's own (z123_ros.novel_views.metrics: one convention for the whole project,
so evaluation and training report comparable numbers); silhouette IoU is evaluation's.
"""

from __future__ import annotations

import numpy as np

from z123_ros.errors import InputError
from z123_ros.novel_views.metrics import psnr, ssim

__all__ = ["mask_iou", "psnr", "ssim"]


def mask_iou(prediction: np.ndarray, target: np.ndarray) -> float:
    """IoU of two boolean masks; 1 when both are empty."""
    a, b = np.asarray(prediction, dtype=bool), np.asarray(target, dtype=bool)
    if a.shape != b.shape:
        raise InputError(f"mask sizes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)
