"""Scoring a segmentation against ground-truth instance ids: IoU matching and found / missed / split / merged /
fragment counts.

Used by the tests and bench/bench_segmentation.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class SegmentationScore:
    """Comparison of predicted masks with the ground-truth instances of one or more frames."""

    #: IoU of each evaluated ground-truth object with its matched prediction (0 when unmatched).
    ious: list[float] = field(default_factory=list)
    #: Evaluated ground-truth objects matched by a prediction with IoU >= ``match_iou``.
    found: int = 0
    #: Evaluated ground-truth objects without such a match.
    missed: int = 0
    #: Ground-truth objects cut into two or more predictions (each mostly inside it).
    split: int = 0
    #: Predictions that hold two or more ground-truth objects (each mostly inside it).
    merged: int = 0
    #: Predictions matching no ground-truth object at all (table patches, clutter).
    false_positives: int = 0
    #: Extra predictions of any size lying mostly inside an instance that another prediction is matched to (a face
    #: or rim broken off its object); ``split`` ignores pieces under 5% of the instance, this counts them.
    fragments: int = 0

    @property
    def mean_iou(self) -> float:
        return float(np.mean(self.ious)) if self.ious else float("nan")

    def add(self, other: SegmentationScore) -> None:
        self.ious.extend(other.ious)
        self.found += other.found
        self.missed += other.missed
        self.split += other.split
        self.merged += other.merged
        self.false_positives += other.false_positives
        self.fragments += other.fragments


def score_masks(
    pred_masks: list[np.ndarray],
    gt_ids: np.ndarray,
    evaluate_ids: list[int] | None = None,
    match_iou: float = 0.5,
    part_fraction: float = 0.5,
) -> SegmentationScore:
    """Match predictions to ground-truth instances one-to-one by IoU (Hungarian) and count errors.

    Args:
        pred_masks: predicted (H, W) bool masks.
        gt_ids: (H, W) int ground-truth instance ids, 0 = background.
        evaluate_ids: ground-truth ids whose IoU is reported and counted as found/missed (e.g. those at least 70%
            visible); None = every id present. Splits, merges and false positives consider every id.
        match_iou: IoU a match needs to count as found.
        part_fraction: a prediction is "part of" an instance when this fraction of its area lies inside it (split)
            and an instance is "inside" a prediction when this fraction of its area lies inside it (merge).
    """
    gt_ids = np.asarray(gt_ids)
    all_ids = [int(i) for i in np.unique(gt_ids) if i != 0]
    evaluate = all_ids if evaluate_ids is None else [i for i in evaluate_ids if i in all_ids]
    n_p, n_g = len(pred_masks), len(all_ids)
    inter = np.zeros((n_p, n_g))
    p_area = np.array([float(m.sum()) for m in pred_masks])
    g_area = np.array([float((gt_ids == g).sum()) for g in all_ids])
    for i, m in enumerate(pred_masks):
        hits = gt_ids[m]
        for j, g in enumerate(all_ids):
            inter[i, j] = np.count_nonzero(hits == g)
    union = p_area[:, None] + g_area[None, :] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    match = {}
    if n_p and n_g:
        rows, cols = linear_sum_assignment(-iou)
        match = {all_ids[c]: (r, iou[r, c]) for r, c in zip(rows, cols, strict=True)}
    score = SegmentationScore()
    for g in evaluate:
        r_iou = match.get(g, (None, 0.0))[1]
        score.ious.append(float(r_iou))
        if r_iou >= match_iou:
            score.found += 1
        else:
            score.missed += 1
    if n_p and n_g:
        part_of = inter / np.maximum(p_area[:, None], 1)  # fraction of the prediction inside each instance
        inside = inter / np.maximum(g_area[None, :], 1)  # fraction of each instance inside the prediction
        score.split = int(((part_of >= part_fraction) & (inside >= 0.05)).sum(axis=0).__ge__(2).sum())
        score.merged = int((inside >= part_fraction).sum(axis=1).__ge__(2).sum())
        score.false_positives = int((inter.sum(axis=1) < 0.2 * np.maximum(p_area, 1)).sum())
        matched_row = {all_ids.index(g): r for g, (r, _) in match.items()}
        host = np.argmax(part_of, axis=1)
        score.fragments = sum(
            1 for i in range(n_p) if part_of[i, host[i]] >= part_fraction and matched_row.get(int(host[i]), i) != i
        )
    else:
        score.false_positives = n_p
    return score
