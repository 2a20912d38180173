"""Scoring segmentations frame by frame, in one place for ``z123 eval --conditions`` and bench/bench_segmentation.py.

The matching itself (one-to-one Hungarian on IoU, splits, merges, fragments, false positives) is
:func:`z123_ros.segmentation.evaluation.score_masks`; this module adds what a per-bucket report needs: the IoU of
every ground-truth object with its visible fraction, the ">= 70 % visible" flag that the found / missed goals are
judged on, and the aggregation of many frames into medians and 10th percentiles.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from z123_ros.segmentation.evaluation import score_masks

#: Objects at least this visible are the ones found / missed is counted on (smaller remnants are reported only).
MIN_VISIBLE = 0.7
#: IoU a prediction needs to count as finding its object.
MATCH_IOU = 0.5


@dataclass
class ObjectMatch:
    """One ground-truth object of a frame and its best one-to-one match."""

    gt_id: int
    """Ground-truth instance id."""
    iou: float
    """IoU with the matched prediction (0 when unmatched)."""
    visible_fraction: float
    """Visible pixels / pixels when alone in the image (NaN when unknown)."""
    evaluated: bool
    """Whether the object is at least ``min_visible`` visible (unknown visibility counts as visible)."""

    @property
    def found(self) -> bool:
        return self.iou >= MATCH_IOU


@dataclass
class FrameScore:
    """A segmentation of one frame against its ground truth."""

    objects: list[ObjectMatch] = field(default_factory=list)
    """Every ground-truth object, in id order."""
    predictions: int = 0
    """Number of predicted masks."""
    fragments: int = 0
    """Extra predictions lying mostly inside an object another prediction is matched to."""
    split: int = 0
    """Ground-truth objects cut into two or more sizeable predictions."""
    merged: int = 0
    """Predictions that hold two or more ground-truth objects."""
    false_positives: int = 0
    """Predictions on no ground-truth object (table, clutter, background)."""
    seconds: float = math.nan
    """Wall time of the segmenter on this frame."""

    @property
    def evaluated(self) -> list[ObjectMatch]:
        return [o for o in self.objects if o.evaluated]

    @property
    def found(self) -> int:
        return sum(o.found for o in self.evaluated)

    @property
    def missed(self) -> int:
        return sum(not o.found for o in self.evaluated)


def labels_to_masks(labels: np.ndarray) -> list[np.ndarray]:
    """(H, W) int label image -> one bool mask per label value > 0, in label order."""
    labels = np.asarray(labels)
    return [labels == k for k in np.unique(labels) if k > 0]


def score_frame(
    pred: np.ndarray | list[np.ndarray],
    gt_ids: np.ndarray,
    visible_fraction: Mapping[int, float] | None = None,
    min_visible: float = MIN_VISIBLE,
    seconds: float = math.nan,
) -> FrameScore:
    """Score one frame: ``pred`` is a label image or a list of bool masks, ``gt_ids`` the ground-truth ids."""
    masks = labels_to_masks(pred) if isinstance(pred, np.ndarray) else [np.asarray(m, bool) for m in pred]
    gt_ids = np.asarray(gt_ids)
    ids = [int(i) for i in np.unique(gt_ids) if i != 0]
    raw = score_masks(masks, gt_ids, evaluate_ids=ids, match_iou=MATCH_IOU)
    visible = visible_fraction or {}
    objects = []
    for gt_id, iou in zip(ids, raw.ious, strict=True):
        fraction = float(visible.get(gt_id, math.nan))
        evaluated = not fraction < min_visible  # NaN (unknown) counts as visible
        objects.append(ObjectMatch(gt_id=gt_id, iou=float(iou), visible_fraction=fraction, evaluated=evaluated))
    return FrameScore(
        objects=objects,
        predictions=len(masks),
        fragments=raw.fragments,
        split=raw.split,
        merged=raw.merged,
        false_positives=raw.false_positives,
        seconds=seconds,
    )


def _quantile(values: list[float], q: float) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.quantile(finite, q)) if finite else math.nan


def summarise_frames(scores: Iterable[FrameScore]) -> dict[str, float]:
    """Aggregate frames: IoU mean / median / 10th percentile over the evaluated objects, counts summed, rates."""
    scores = list(scores)
    ious = [o.iou for s in scores for o in s.evaluated]
    n_eval = len(ious)
    seconds = [s.seconds for s in scores]
    return {
        "frames": len(scores),
        "objects": n_eval,
        "objects_all": sum(len(s.objects) for s in scores),
        "iou_mean": float(np.mean(ious)) if ious else math.nan,
        "iou_median": _quantile(ious, 0.5),
        "iou_p10": _quantile(ious, 0.1),
        "found": sum(s.found for s in scores),
        "missed": sum(s.missed for s in scores),
        "found_rate": sum(s.found for s in scores) / n_eval if n_eval else math.nan,
        "fragments": sum(s.fragments for s in scores),
        "fragments_per_object": sum(s.fragments for s in scores) / n_eval if n_eval else math.nan,
        "split": sum(s.split for s in scores),
        "merged": sum(s.merged for s in scores),
        "false_positives": sum(s.false_positives for s in scores),
        "false_positives_per_frame": sum(s.false_positives for s in scores) / len(scores) if scores else math.nan,
        "ms_median": 1e3 * _quantile(seconds, 0.5),
        "ms_max": 1e3 * max((v for v in seconds if math.isfinite(v)), default=math.nan),
    }
