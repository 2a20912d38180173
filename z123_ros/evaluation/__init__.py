"""Paper-style evaluation on real scanned objects: ``z123 eval``.

``build_eval_set`` / ``iter_eval_set`` draw a seeded set (GT mesh + 64^3 occupancy, one robot-like RGB-D view on a
table, 12 held-out views on white at 256x256, FoV 49.1 deg); ``evaluate`` runs a backend and a baseline and scores
them (3D metrics in metres in the world frame and after unit-box normalisation, silhouette IoU, PSNR/SSIM with a
model); ``write_report`` writes Markdown, JSON and plots.
"""

from z123_ros.evaluation.dataset import (
    EvalObject,
    EvalSetConfig,
    InputView,
    build_eval_object,
    build_eval_set,
    iter_eval_set,
    occupancy_grid,
    save_eval_object,
)
from z123_ros.evaluation.image_metrics import mask_iou, psnr, ssim
from z123_ros.evaluation.report import summary_table, write_report
from z123_ros.evaluation.runner import (
    BackendScore,
    EvalConfig,
    EvalResult,
    NovelViewScore,
    ObjectEvaluation,
    evaluate,
    score_backend,
    score_novel_views,
)

__all__ = [
    "BackendScore",
    "EvalConfig",
    "EvalObject",
    "EvalResult",
    "EvalSetConfig",
    "InputView",
    "NovelViewScore",
    "ObjectEvaluation",
    "build_eval_object",
    "build_eval_set",
    "evaluate",
    "iter_eval_set",
    "mask_iou",
    "occupancy_grid",
    "psnr",
    "save_eval_object",
    "score_backend",
    "score_novel_views",
    "ssim",
    "summary_table",
    "write_report",
]
