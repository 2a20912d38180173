"""The seam for learned promptable segmenters, tested for plumbing with a tiny random-weight SAM (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _segmentation_helpers import box_scene

from z123_ros.errors import ModelLoadError
from z123_ros.segmentation import PromptableSegmenter, SamSegmenter, TabletopSegmenter
from z123_ros.segmentation.rgb import SCORE_LEARNED_MAX
from z123_ros.segmentation.testing import save_tiny_sam


@pytest.fixture(scope="module")
def tiny_sam(tmp_path_factory) -> SamSegmenter:
    folder = save_tiny_sam(tmp_path_factory.mktemp("tiny_sam"))
    return SamSegmenter.from_pretrained(folder)


def test_tiny_sam_loads_from_a_local_folder_and_segments_boxes(tiny_sam: SamSegmenter) -> None:
    assert isinstance(tiny_sam, PromptableSegmenter)
    rgb = np.random.default_rng(0).integers(0, 255, size=(90, 120, 3), dtype=np.uint8)
    masks, scores = tiny_sam.segment_boxes(rgb, [(10, 10, 60, 70), (50, 20, 110, 80)])
    assert masks.shape == (2, 90, 120) and masks.dtype == bool
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))
    empty_masks, empty_scores = tiny_sam.segment_boxes(rgb, [])
    assert empty_masks.shape == (0, 90, 120) and empty_scores.shape == (0,)


def test_segmenter_uses_the_learned_model_for_rgb_only_boxes(tiny_sam: SamSegmenter) -> None:
    class Fixed:
        """A stand-in promptable model: the box itself, score 0.8 (checks the plumbing, not SAM)."""

        name = "fixed_box"

        def segment_boxes(self, rgb, boxes_xyxy):
            masks = np.zeros((len(boxes_xyxy), *rgb.shape[:2]), dtype=bool)
            for k, (x0, y0, x1, y1) in enumerate(boxes_xyxy):
                masks[k, y0:y1, x0:x1] = True
            return masks, np.full(len(boxes_xyxy), 0.8)

    rgb, depth, _, intr, _ = box_scene([((0.0, 0.0, 0.0), (0.06, 0.06, 0.1), (200, 30, 30))])
    result = TabletopSegmenter(promptable=Fixed()).segment(rgb, intr, roi=(100, 80, 200, 160))
    (obj,) = result.objects
    assert obj.method == "fixed_box" and obj.box_xyxy == (100, 80, 200, 160)
    assert obj.score == pytest.approx(SCORE_LEARNED_MAX * 0.8) and obj.score < 0.5
    # The tiny SAM goes through the same path without error (its random masks may be empty).
    sam_result = TabletopSegmenter(promptable=tiny_sam).segment(rgb, intr, roi=(100, 80, 200, 160))
    assert all(o.method == "sam" for o in sam_result.objects)
    # With depth the RGB-D segmenter is used, not the learned model.
    assert {o.method for o in TabletopSegmenter(promptable=Fixed()).segment(rgb, intr, depth).objects} == {
        "rgbd_tabletop"
    }


def test_model_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        SamSegmenter.from_pretrained(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "pytorch_model.bin").write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match="safetensors"):
        SamSegmenter.from_pretrained(tmp_path)
