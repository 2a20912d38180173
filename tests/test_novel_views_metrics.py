"""PSNR / SSIM against their definitions; LPIPS only where its weights are installed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from z123_ros.errors import InputError
from z123_ros.novel_views.metrics import lpips_available, lpips_distance, psnr, ssim


def test_psnr_formula_and_identity():
    a = np.full((8, 8, 3), 0.5)
    b = a + 0.1
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.01))
    assert psnr(a, a) == math.inf
    u8 = (a * 255).astype(np.uint8)
    assert psnr(u8, u8) == math.inf
    batch_a, batch_b = np.stack([a, a]), np.stack([a + 0.1, a + 0.2])
    assert psnr(batch_a, batch_b) == pytest.approx((20.0 + 10 * math.log10(1 / 0.04)) / 2)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3))
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + rng.normal(0, 0.2, img.shape), 0, 1)
    assert ssim(img, noisy) < 0.9
    assert ssim(img, noisy) > ssim(img, rng.random(img.shape))


def test_shape_mismatch_is_an_input_error():
    with pytest.raises(InputError):
        psnr(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)))


def test_lpips_returns_none_or_a_distance():
    a = np.zeros((32, 32, 3))
    if not lpips_available():
        assert lpips_distance(a, a) is None
        pytest.skip("lpips is not installed here; lpips_distance returns None instead of downloading weights")
    d = lpips_distance(a, a)
    if d is None:
        pytest.skip("lpips backbone weights are not in the local cache")
    assert d == pytest.approx(0.0, abs=1e-6)
