"""Shared helpers of the novel-view tests: tiny models written once per session, a test image."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

from z123_ros.novel_views.testing import save_tiny_zero123

_ROOT = Path(tempfile.mkdtemp(prefix="z123_nv_models_"))


@functools.cache
def tiny_model(layout: str = "kxic", seed: int = 0) -> Path:
    """A tiny random model in ``layout``; folder names do not say "stable" so only the files can."""
    return save_tiny_zero123(_ROOT / f"model_{layout}_{seed}", layout=layout, seed=seed)


def object_image(size: int = 64, seed: int = 0) -> np.ndarray:
    """A coloured disc with texture on white, (size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (xx - size / 2) ** 2 + (yy - size / 2) ** 2 < (size * 0.35) ** 2
    image = np.full((size, size, 3), 255, np.uint8)
    image[disc] = rng.integers(0, 200, size=(int(disc.sum()), 3), dtype=np.uint8)
    return image


@pytest.fixture(autouse=True, scope="module")
def single_torch_thread():
    """One intra-op thread: on the shared 2-core CI machine OpenMP spin-waiting makes 2 threads ~10x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
