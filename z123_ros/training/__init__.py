"""Fine-tune Zero-1-to-3 on your own objects: render a dataset, train (alone or with Ray Train), load the result.

    z123 render-dataset --objects ycb --out data/          # 12 views per object, the paper's camera distribution
    z123 train --data data/ --model zero123-xl/ --out run/  # run/checkpoints/step-*/ load in `z123 views`

Library use::

    from z123_ros.training import RenderConfig, render_dataset, TrainConfig, train
    render_dataset(["006_mustard_bottle", "meshes/"], "data", RenderConfig(), workers=8)
    result = train(TrainConfig(data_dir="data", model_path="zero123-xl", output_dir="run"))
    pipe = load_zero123(result.checkpoint)

Names are imported lazily: rendering does not import torch, and Ray is imported only by ``train_with_ray``.
"""

from __future__ import annotations

from z123_ros._lazy import lazy_exports

_EXPORTS = {
    "ObjectSource": "z123_ros.training.render",
    "RenderConfig": "z123_ros.training.render",
    "RenderDatasetResult": "z123_ros.training.render",
    "RenderedObject": "z123_ros.training.render",
    "render_dataset": "z123_ros.training.render",
    "resolve_objects": "z123_ros.training.render",
    "ObjectRecord": "z123_ros.training.dataset",
    "ViewPairDataset": "z123_ros.training.dataset",
    "read_object": "z123_ros.training.dataset",
    "TrainConfig": "z123_ros.training.train",
    "TrainResult": "z123_ros.training.train",
    "WorkerContext": "z123_ros.training.train",
    "train": "z123_ros.training.train",
    "read_log": "z123_ros.training.train",
    "load_training_components": "z123_ros.training.checkpoint",
    "latest_checkpoint": "z123_ros.training.checkpoint",
    "EvalResult": "z123_ros.training.evaluate",
    "evaluate_views": "z123_ros.training.evaluate",
    "RayTrainResult": "z123_ros.training.distributed",
    "train_with_ray": "z123_ros.training.distributed",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
