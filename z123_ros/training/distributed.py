"""Run :func:`z123_ros.training.train` on N workers with Ray Train (``TorchTrainer``).

The training loop is the same function as a single-process run; Ray Train starts the workers (one per GPU on a
cluster, or CPU processes), sets up the ``torch.distributed`` process group (NCCL on GPUs, gloo on CPUs) and hands each
worker its rank and device. :func:`~z123_ros.training.train` wraps the trained part in DistributedDataParallel, gives
each rank its own pair/noise stream, averages the logged loss over ranks and writes checkpoints from rank 0 only.

Checkpoints are written by rank 0 straight into ``output_dir`` in the pipeline's folder layout, so on a multi-node
cluster ``output_dir`` must be storage every node reaches (NFS, a mounted bucket), as must ``data_dir``.
Ray is imported here only, lazily; the rest of the package never imports it.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from z123_ros.errors import ConfigError, DispatchError
from z123_ros.training.train import TrainConfig

logger = logging.getLogger(__name__)


@dataclass
class RayTrainResult:
    """What :func:`train_with_ray` did."""

    metrics: dict = field(default_factory=dict)
    """The last logged metrics (step, loss, lr, ...)."""
    checkpoint: Path | None = None
    """The newest checkpoint folder in ``output_dir`` (loads with ``load_zero123``)."""
    num_workers: int = 1
    """Workers the run used."""


def _worker_loop(config_dict: dict) -> None:
    """Body of each Ray Train worker: the ordinary training loop with this worker's rank and device."""
    import ray.train
    import ray.train.torch
    import torch

    from z123_ros.training.train import TrainConfig as _Config
    from z123_ros.training.train import WorkerContext, train

    threads = config_dict.pop("_torch_threads", None)
    if threads:
        torch.set_num_threads(int(threads))
    config = _Config(**config_dict)
    ctx = ray.train.get_context()
    context = WorkerContext(
        rank=ctx.get_world_rank(),
        world_size=ctx.get_world_size(),
        device=ray.train.torch.get_device(),
        report=lambda metrics: ray.train.report(metrics),
    )
    train(config, context)


def train_with_ray(config: TrainConfig, torch_threads_per_worker: int | None = None) -> RayTrainResult:
    """Train with ``config.num_workers`` Ray Train workers (``config.use_gpu``: one GPU each).

    Connects to ``config.ray_address`` (e.g. a cluster from ray_cluster/) or starts a local Ray sized to the workers.
    A Ray started here is shut down at the end; an existing connection is left alone.

    Args:
        config: the training config; ``num_workers``, ``use_gpu``, ``cpus_per_worker`` make the ScalingConfig.
        torch_threads_per_worker: ``torch.set_num_threads`` in each worker (default: torch's choice); on a small
            CPU machine 1 avoids workers fighting over cores.
    """
    config.validate()
    try:
        import ray
        from ray.train import RunConfig, ScalingConfig, TrainingFailedError
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError as exc:
        raise ConfigError(f"Ray Train is not installed ({exc}); pip install 'ray[train]'") from exc

    out = Path(config.output_dir).resolve()
    config = replace(config, output_dir=str(out), data_dir=str(Path(config.data_dir).resolve()))
    model = Path(config.model_path).expanduser()
    if model.exists():
        config = replace(config, model_path=str(model.resolve()))
    started_here = False
    if not ray.is_initialized():
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if config.ray_address:
            ray.init(address=config.ray_address)
        else:
            # The trainer's controller needs a little CPU beside the workers.
            ray.init(
                num_cpus=config.num_workers * config.cpus_per_worker + 1,
                include_dashboard=False,
                object_store_memory=200 * 1024 * 1024,
            )
        started_here = True
    loop_config = config.to_json()
    loop_config["adam_betas"] = tuple(loop_config["adam_betas"])
    for key in ("train_views", "objects"):
        if loop_config[key] is not None:
            loop_config[key] = tuple(loop_config[key])
    loop_config["_torch_threads"] = torch_threads_per_worker
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config=loop_config,
        torch_config=TorchConfig(backend="nccl" if config.use_gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=config.num_workers,
            use_gpu=config.use_gpu,
            resources_per_worker={"CPU": config.cpus_per_worker, **({"GPU": 1} if config.use_gpu else {})},
        ),
        run_config=RunConfig(name="z123-train", storage_path=str(out / "ray_results")),
    )
    try:
        result = trainer.fit()
    except TrainingFailedError as exc:
        raise DispatchError(f"Ray Train run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if started_here:
            ray.shutdown()
    from z123_ros.training.checkpoint import latest_checkpoint
    from z123_ros.training.train import read_log

    log = out / "train_log.jsonl"
    # Ray Train v2 keeps metrics only of reports that carry a checkpoint; rank 0's log has every line.
    metrics = dict(result.metrics or {}) or (read_log(log)[-1] if log.is_file() and read_log(log) else {})
    return RayTrainResult(metrics=metrics, checkpoint=latest_checkpoint(out), num_workers=config.num_workers)
