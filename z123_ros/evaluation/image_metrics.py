"""Image metrics of the novel-view protocol: PSNR, SSIM and silhouette IoU."""

from __future__ import annotations

import numpy as np

from z123_ros.errors import InputError


def _as_float_image(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise InputError(f"{name} must be an (H, W, 3) image, got shape {image.shape}")
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    return np.clip(image.astype(np.float64), 0.0, 1.0)


def psnr(prediction: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two RGB images (uint8, or float in [0, 1]); inf when identical."""
    a, b = _as_float_image(prediction, "prediction"), _as_float_image(target, "target")
    if a.shape != b.shape:
        raise InputError(f"image sizes differ: {a.shape} vs {b.shape}")
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def ssim(prediction: np.ndarray, target: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004, Gaussian window, as scikit-image computes it) of two RGB images."""
    from skimage.metrics import structural_similarity

    a, b = _as_float_image(prediction, "prediction"), _as_float_image(target, "target")
    if a.shape != b.shape:
        raise InputError(f"image sizes differ: {a.shape} vs {b.shape}")
    return float(
        structural_similarity(a, b, channel_axis=2, data_range=1.0, gaussian_weights=True, use_sample_covariance=False)
    )


def mask_iou(prediction: np.ndarray, target: np.ndarray) -> float:
    """IoU of two boolean masks; 1 when both are empty."""
    a, b = np.asarray(prediction, dtype=bool), np.asarray(target, dtype=bool)
    if a.shape != b.shape:
        raise InputError(f"mask sizes differ: {a.shape} vs {b.shape}")
    union = np.count_nonzero(a | b)
    return 1.0 if union == 0 else float(np.count_nonzero(a & b) / union)
