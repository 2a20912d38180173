"""Frame scoring (z123_ros.evaluation.segmentation) and the Open3D baseline segmenter (evaluation.baselines)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _segmentation_helpers import box_scene

from z123_ros.evaluation.segmentation import score_frame, summarise_frames


def _gt() -> np.ndarray:
    gt = np.zeros((40, 60), np.int32)
    gt[5:20, 5:20] = 1
    gt[5:20, 30:45] = 2
    gt[25:35, 5:15] = 3  # a small, partly hidden object
    return gt


def test_perfect_prediction_finds_everything():
    score = score_frame(_gt(), _gt())
    assert [o.iou for o in score.objects] == [1.0, 1.0, 1.0]
    assert (score.found, score.missed, score.fragments, score.merged, score.false_positives) == (3, 0, 0, 0, 0)


def test_fragments_merges_and_false_positives_are_counted():
    gt = _gt()
    pred = np.zeros_like(gt)
    pred[5:20, 5:16] = 1  # most of object 1 ...
    pred[5:20, 16:20] = 2  # ... and a piece broken off it
    pred[5:20, 30:45] = 3
    pred[25:35, 5:15] = 3  # objects 2 and 3 in one mask
    pred[36:40, 50:60] = 4  # on the table
    score = score_frame(pred, gt, visible_fraction={1: 1.0, 2: 0.9, 3: 0.4})
    assert [o.evaluated for o in score.objects] == [True, True, False]
    assert score.objects[0].found and score.fragments == 1
    assert score.merged == 1 and score.false_positives == 1
    assert (score.found, score.missed) == (2, 0)  # object 3 (40 % visible) is not counted


def test_summary_takes_medians_and_10th_percentiles_over_evaluated_objects():
    gt = _gt()
    empty = score_frame(np.zeros_like(gt), gt, seconds=0.02)
    perfect = score_frame(gt, gt, seconds=0.04)
    summary = summarise_frames([empty, perfect])
    assert summary["objects"] == 6 and summary["found"] == 3 and summary["missed"] == 3
    assert summary["iou_median"] == pytest.approx(0.5) and summary["iou_p10"] == 0.0
    assert summary["ms_median"] == pytest.approx(30.0) and summary["ms_max"] == pytest.approx(40.0)
    assert math.isnan(summarise_frames([])["iou_mean"])


def test_open3d_baseline_separates_boxes_standing_apart():
    pytest.importorskip("open3d")
    from z123_ros.evaluation.baselines import open3d_plane_dbscan

    rgb, depth, ids, intr, _ = box_scene(
        [((0.0, -0.1, 0.0), (0.06, 0.06, 0.08), (200, 30, 30)), ((0.0, 0.1, 0.0), (0.05, 0.08, 0.05), (30, 30, 200))]
    )
    labels = open3d_plane_dbscan(rgb, depth, intr)
    score = score_frame(labels, ids)
    assert score.found == 2 and min(o.iou for o in score.objects) > 0.8
    np.testing.assert_array_equal(labels, open3d_plane_dbscan(rgb, depth, intr))  # seeded: reproducible
