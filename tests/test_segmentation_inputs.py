"""Bad input gives InputError (or ConfigError) with a message that names the problem, never a crash."""

from __future__ import annotations

import numpy as np
import pytest
from _segmentation_helpers import box_scene

from z123_ros.errors import ConfigError, InputError
from z123_ros.segmentation import SegmentationConfig, TabletopSegmenter


@pytest.fixture(scope="module")
def frame():
    rgb, depth, _, intr, _ = box_scene([((0.0, 0.0, 0.0), (0.06, 0.06, 0.1), (200, 30, 30))])
    return rgb, depth, intr


def test_nan_depth_everywhere(frame) -> None:
    rgb, depth, intr = frame
    with pytest.raises(InputError, match="no valid pixel"):
        TabletopSegmenter().segment(rgb, intr, np.full_like(depth, np.nan))
    with pytest.raises(InputError, match="no valid pixel"):
        TabletopSegmenter().segment(rgb, intr, np.zeros_like(depth))


def test_size_mismatch(frame) -> None:
    rgb, depth, intr = frame
    with pytest.raises(InputError, match="depth is"):
        TabletopSegmenter().segment(rgb, intr, depth[:-10])
    with pytest.raises(InputError, match="camera says"):
        TabletopSegmenter().segment(rgb[:, :-4], intr, depth)
    with pytest.raises(InputError, match="camera says"):
        TabletopSegmenter().segment(rgb[:, :-4], intr)


def test_wrong_dtypes_and_shapes(frame) -> None:
    rgb, depth, intr = frame
    with pytest.raises(InputError, match="uint8"):
        TabletopSegmenter().segment(rgb.astype(np.float32) / 255, intr, depth)
    with pytest.raises(InputError, match="uint8"):
        TabletopSegmenter().segment(rgb[:, :, 0], intr, depth)
    with pytest.raises(InputError, match="float metres"):
        TabletopSegmenter().segment(rgb, intr, (depth * 1000).astype(np.uint16))
    with pytest.raises(InputError, match="numpy array"):
        TabletopSegmenter().segment(rgb.tolist(), intr, depth)


def test_bad_roi(frame) -> None:
    rgb, depth, intr = frame
    for roi in [(0, 0, 1), (10, 10, 5, 5), (1000, 1000, 2000, 2000), (0, 0, np.nan, 5)]:
        with pytest.raises(InputError, match="roi"):
            TabletopSegmenter().segment(rgb, intr, depth, roi=roi)


def test_bad_config() -> None:
    with pytest.raises(ConfigError):
        TabletopSegmenter(SegmentationConfig(stride=0))
    with pytest.raises(ConfigError):
        TabletopSegmenter(SegmentationConfig(min_height_m=0.5, max_height_m=0.1))


def test_sparse_depth_does_not_crash(frame) -> None:
    rgb, depth, intr = frame
    sparse = np.full_like(depth, np.nan)
    sparse[::37, ::41] = depth[::37, ::41]
    result = TabletopSegmenter().segment(rgb, intr, sparse)  # too few points for any object: no crash
    assert all(o.area_px > 0 for o in result.objects)
