"""Training of the learned segmenter on simulated scenes (``z123 train-segmenter``), on the CPU.

Each step draws ``batch_size`` crops (mostly centred on an object pixel) from the cached training scenes, mirrors
half of them (x -> -x: a mirrored scene is as plausible as the original), and minimises binary cross-entropy of the
foreground plus a smooth-L1 loss of the centre offsets on object pixels with depth. Every ``eval_every`` steps the
network segments the held-out simulated validation scenes with the full inference path (clustering included) and a
checkpoint is written; ``best/`` is the checkpoint of the highest validation mean IoU. Real frames play no part.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from z123_ros.io import staged_output
from z123_ros.segmentation.evaluation import SegmentationScore, score_masks
from z123_ros.segmentation.learned_config import ClusterConfig, NetConfig, TrainSegmenterConfig
from z123_ros.segmentation.learned_data import SceneSample, build_split
from z123_ros.segmentation.learned_net import forward, init_params, save_weights, xyz_image
from z123_ros.segmentation.learned_segmenter import cluster_instances, predict

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "learned_seg.safetensors"
SIDECAR_NAME = "learned_seg.json"


def _crop_origin(sample: SceneSample, ch: int, cw: int, rng: np.random.Generator) -> tuple[int, int]:
    h, w = sample.ids.shape
    objects = np.flatnonzero(sample.ids.ravel())
    if len(objects) and rng.uniform() < 0.8:  # mostly around an object: most pixels of a scene are table
        cy, cx = divmod(int(rng.choice(objects)), w)
        y0, x0 = (
            cy - ch // 2 + int(rng.integers(-ch // 4, ch // 4 + 1)),
            cx - cw // 2 + int(rng.integers(-cw // 4, cw // 4 + 1)),
        )
    else:
        y0, x0 = int(rng.integers(0, max(1, h - ch + 1))), int(rng.integers(0, max(1, w - cw + 1)))
    return int(np.clip(y0, 0, max(0, h - ch))), int(np.clip(x0, 0, max(0, w - cw)))


def make_batch(samples: list[SceneSample], config: TrainSegmenterConfig, rng: np.random.Generator):
    """``(xyz (B, 3, ch, cw), height (B, 1, ch, cw), foreground (B, 1, ch, cw), offset targets (B, 3, ch, cw),
    offset mask (B, 1, ch, cw))`` as float32 numpy arrays (scenes smaller than the crop are zero-padded: no depth,
    background)."""
    ch, cw, B = config.crop_height, config.crop_width, config.batch_size
    xyz = np.zeros((B, 3, ch, cw), np.float32)
    height = np.zeros((B, 1, ch, cw), np.float32)
    fg = np.zeros((B, 1, ch, cw), np.float32)
    target = np.zeros((B, 3, ch, cw), np.float32)
    for b in range(B):
        sample = samples[int(rng.integers(len(samples)))]
        y0, x0 = _crop_origin(sample, ch, cw, rng)
        pts = xyz_image(sample.depth_m, sample.intrinsics)[:, y0 : y0 + ch, x0 : x0 + cw]
        ids = sample.ids[y0 : y0 + ch, x0 : x0 + cw]
        up = sample.height[y0 : y0 + ch, x0 : x0 + cw]
        offset = (sample.centres[ids].transpose(2, 0, 1) - pts) / config.net.offset_scale_m
        if rng.uniform() < 0.5:  # mirror the scene: columns reversed and x negated (heights do not change)
            up = up[:, ::-1]
            pts, ids, offset = (
                pts[:, :, ::-1] * np.array([-1, 1, 1], np.float32)[:, None, None],
                ids[:, ::-1],
                offset[:, :, ::-1] * np.array([-1, 1, 1], np.float32)[:, None, None],
            )
        hh, ww = ids.shape
        xyz[b, :, :hh, :ww] = pts
        height[b, 0, :hh, :ww] = up
        fg[b, 0, :hh, :ww] = ids > 0
        target[b, :, :hh, :ww] = offset
    mask = fg * (xyz[:, 2:3] > 0)
    return xyz, height, fg, target * mask, mask


def loss_terms(params: dict, batch, config: TrainSegmenterConfig):
    """``(total, foreground BCE, offset smooth-L1)`` torch scalars of one batch."""
    import torch
    import torch.nn.functional as F  # noqa: N812

    xyz, height, fg, target, mask = (torch.from_numpy(np.ascontiguousarray(a)) for a in batch)
    logits, offsets = forward(params, xyz, height, config.net)
    bce = F.binary_cross_entropy_with_logits(logits, fg)
    l1 = (F.smooth_l1_loss(offsets, target, reduction="none", beta=0.1) * mask).sum() / (3 * mask.sum() + 1.0)
    return bce + config.offset_weight * l1, bce, l1


def validate(params: dict, samples: list[SceneSample], net: NetConfig, cluster: ClusterConfig) -> dict:
    """Mean IoU (objects matched one-to-one, unmatched = 0), found (IoU >= 0.5), fragments and false positives of the
    full inference path on the simulated validation scenes, at the network's resolution."""
    total = SegmentationScore()
    for sample in samples:
        xyz = xyz_image(sample.depth_m, sample.intrinsics)
        prob, offsets = predict(params, net, xyz, sample.height)
        labels = cluster_instances(xyz, prob, offsets, cluster, 1.0 / sample.intrinsics.fx)
        pred = [labels == k for k in range(1, int(labels.max()) + 1) if (labels == k).any()]
        ids = sample.ids.astype(np.int32)
        evaluate = [int(k) for k in np.unique(ids) if k > 0 and (ids == k).sum() >= 20]  # a few pixels: not judged
        total.add(score_masks(pred, ids, evaluate_ids=evaluate))
    return {"mean_iou": total.mean_iou, "found": total.found, "objects": total.found + total.missed,
            "fragments": total.fragments, "false_positives": total.false_positives}  # fmt: skip


def _learning_rate(step: int, config: TrainSegmenterConfig) -> float:
    warmup = min(100, config.steps // 10 + 1)
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    t = (step - warmup) / max(1, config.steps - warmup)
    return config.learning_rate * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * t)))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _checkpoint(out: Path, name: str, params: dict, config: TrainSegmenterConfig, info: dict) -> Path:
    """Write ``out/checkpoints/<name>/`` (weights + JSON sidecar) as one atomic folder swap."""
    folder = out / "checkpoints" / name
    sidecar = {"train_config": dataclasses.asdict(config), "cluster_config": dataclasses.asdict(ClusterConfig()),
               "command": " ".join(["z123"] + sys.argv[1:]) if sys.argv else "", **info}  # fmt: skip
    with staged_output(folder) as staging:
        save_weights(staging / WEIGHTS_NAME, params, config.net, {"step": info.get("step"), "val": info.get("val")})
        _write_json(staging / SIDECAR_NAME, sidecar)
    return folder


def train(config: TrainSegmenterConfig) -> dict:
    """Generate (or reuse) the data, train, checkpoint; returns the history (also in ``out_dir/history.json``)."""
    import torch

    config.check()
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng([config.seed, 1])
    train_set, val_set = build_split(config, "train"), build_split(config, "val")
    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = init_params(config.net, config.seed)
    for tensor in params.values():
        tensor.requires_grad_(True)
    optimiser = torch.optim.AdamW(params.values(), lr=config.learning_rate, weight_decay=config.weight_decay)
    history: dict = {"steps": [], "val": [], "best": None}
    best_iou, t0, running = -1.0, time.perf_counter(), []
    for step in range(config.steps):
        for group in optimiser.param_groups:
            group["lr"] = _learning_rate(step, config)
        total, bce, l1 = loss_terms(params, make_batch(train_set, config, rng), config)
        optimiser.zero_grad()
        total.backward()
        optimiser.step()
        running.append((total.item(), bce.item(), l1.item()))
        if (step + 1) % config.eval_every == 0 or step + 1 == config.steps:
            mean = np.mean(running, axis=0)
            running = []
            history["steps"].append({"step": step + 1, "loss": float(mean[0]), "bce": float(mean[1]),
                                     "offset": float(mean[2]), "seconds": time.perf_counter() - t0})  # fmt: skip
            val = validate({k: v.detach() for k, v in params.items()}, val_set, config.net, ClusterConfig())
            history["val"].append({"step": step + 1, **val})
            logger.info("step %d loss %.4f (bce %.4f offset %.4f) val mean IoU %.3f found %d/%d (%.0f s)",
                        step + 1, mean[0], mean[1], mean[2], val["mean_iou"], val["found"], val["objects"],
                        time.perf_counter() - t0)  # fmt: skip
            name = f"step-{step + 1:06d}"
            _checkpoint(out, name, params, config, {"step": step + 1, "val": val})
            iou = val["mean_iou"] if np.isfinite(val["mean_iou"]) else 0.0
            if iou > best_iou:
                best_iou, history["best"] = iou, name
            _write_json(out / "history.json", history)
    with staged_output(out / "best") as staging:
        for f in (WEIGHTS_NAME, SIDECAR_NAME):
            shutil.copy2(out / "checkpoints" / history["best"] / f, staging / f)
    logger.info("best checkpoint: %s (validation mean IoU %.3f) -> %s", history["best"], best_iou, out / "best")
    return history
