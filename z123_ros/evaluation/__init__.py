"""Paper-style evaluation on real scanned objects: ``z123 eval``.

``build_eval_set`` / ``iter_eval_set`` draw a seeded set (GT mesh + 64^3 occupancy, one robot-like RGB-D view on a
table, 12 held-out views on white at 256x256, FoV 49.1 deg); ``evaluate`` runs a backend and a baseline and scores
them (3D metrics in metres in the world frame and after unit-box normalisation, silhouette IoU, PSNR/SSIM with a
model); ``write_report`` writes Markdown, JSON and plots. ``load_real_frames`` reads real RGB-D frames with their
posed ground-truth meshes, ``open3d_plane_dbscan`` is the segmentation baseline and ``score_frame`` /
``summarise_frames`` score segmentations per frame and per condition bucket.
"""

from __future__ import annotations

from z123_ros._lazy import lazy_exports

_EXPORTS = {
    "EvalObject": "z123_ros.evaluation.dataset",
    "EvalSetConfig": "z123_ros.evaluation.dataset",
    "InputView": "z123_ros.evaluation.dataset",
    "build_eval_object": "z123_ros.evaluation.dataset",
    "build_eval_set": "z123_ros.evaluation.dataset",
    "iter_eval_set": "z123_ros.evaluation.dataset",
    "occupancy_grid": "z123_ros.evaluation.dataset",
    "save_eval_object": "z123_ros.evaluation.dataset",
    "mask_iou": "z123_ros.evaluation.image_metrics",
    "psnr": "z123_ros.evaluation.image_metrics",
    "ssim": "z123_ros.evaluation.image_metrics",
    "summary_table": "z123_ros.evaluation.report",
    "write_report": "z123_ros.evaluation.report",
    "DEFAULT_REAL_ROOT": "z123_ros.evaluation.real",
    "RealFrame": "z123_ros.evaluation.real",
    "RealObject": "z123_ros.evaluation.real",
    "load_real_frame": "z123_ros.evaluation.real",
    "load_real_frames": "z123_ros.evaluation.real",
    "Open3DBaselineConfig": "z123_ros.evaluation.baselines",
    "open3d_plane_dbscan": "z123_ros.evaluation.baselines",
    "FrameScore": "z123_ros.evaluation.segmentation",
    "score_frame": "z123_ros.evaluation.segmentation",
    "summarise_frames": "z123_ros.evaluation.segmentation",
    "BackendScore": "z123_ros.evaluation.runner",
    "EvalConfig": "z123_ros.evaluation.runner",
    "EvalResult": "z123_ros.evaluation.runner",
    "NovelViewScore": "z123_ros.evaluation.runner",
    "ObjectEvaluation": "z123_ros.evaluation.runner",
    "evaluate": "z123_ros.evaluation.runner",
    "score_backend": "z123_ros.evaluation.runner",
    "score_novel_views": "z123_ros.evaluation.runner",
}

__all__ = sorted(_EXPORTS)
# Lazy: `z123 --help` must not import torch and diffusers.
__getattr__ = lazy_exports(__name__, _EXPORTS)
