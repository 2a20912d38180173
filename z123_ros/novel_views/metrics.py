"""Image quality metrics for novel views: PSNR, SSIM and (when its weights are installed locally) LPIPS.

Images are (H, W, 3) or (N, H, W, 3) arrays, uint8 or float in [0, 1]; metrics are computed in float64 on [0, 1].
The paper reports PSNR, SSIM, LPIPS (VGG/Alex) and FID on Google Scanned Objects (PSNR 18.38).
"""

from __future__ import annotations

import logging

import numpy as np
from skimage.metrics import structural_similarity

from z123_ros.errors import InputError

logger = logging.getLogger(__name__)


def _as_float(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float64) / 255.0
    if not np.issubdtype(image.dtype, np.floating):
        raise InputError(f"{name} must be uint8 or float in [0, 1], got {image.dtype}")
    return image.astype(np.float64)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = _as_float(a, "a"), _as_float(b, "b")
    if a.shape != b.shape or a.ndim not in (3, 4) or a.shape[-1] != 3:
        raise InputError(f"images must both be (H, W, 3) or (N, H, W, 3), got {a.shape} and {b.shape}")
    return (a[None], b[None]) if a.ndim == 3 else (a, b)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB for images in [0, 1], averaged over the batch (inf when identical)."""
    a, b = _pair(a, b)
    mse = ((a - b) ** 2).reshape(len(a), -1).mean(axis=1)
    with np.errstate(divide="ignore"):
        values = 10.0 * np.log10(1.0 / mse)
    return float(np.mean(values))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity (Wang et al. 2004, 7x7 uniform window as scikit-image), averaged over the batch."""
    a, b = _pair(a, b)
    return float(
        np.mean([structural_similarity(x, y, channel_axis=-1, data_range=1.0) for x, y in zip(a, b, strict=True)])
    )


def lpips_available() -> bool:
    """Whether the ``lpips`` package and its pretrained weights are installed locally."""
    try:
        import lpips  # noqa: F401
    except ImportError:
        return False
    return True


def lpips_distance(a: np.ndarray, b: np.ndarray, net: str = "vgg") -> float | None:
    """LPIPS distance (lower is closer), or None when the ``lpips`` package or its weights are not installed.

    Nothing is downloaded: ``lpips`` ships its linear-layer weights in the wheel, but the VGG/Alex backbones come from
    torchvision's cache; when they are absent this returns None with a log message instead of downloading.
    """
    if not lpips_available():
        logger.info("LPIPS skipped: the lpips package is not installed")
        return None
    import lpips
    import torch

    a, b = _pair(a, b)
    try:
        model = lpips.LPIPS(net=net, verbose=False, pretrained=True)
    except (OSError, RuntimeError) as exc:  # backbone weights not in the local cache and no network
        logger.info("LPIPS skipped: weights not available locally (%s)", exc)
        return None
    to_t = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() * 2.0 - 1.0  # noqa: E731
    with torch.no_grad():
        return float(model(to_t(a), to_t(b)).mean())
