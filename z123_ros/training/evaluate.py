"""Held-out-view evaluation of a (fine-tuned) model on a rendered dataset: PSNR and SSIM of synthesised views."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from z123_ros.errors import InputError
from z123_ros.novel_views import Zero123Pipeline, load_zero123
from z123_ros.novel_views.metrics import psnr, ssim
from z123_ros.training.dataset import ViewPairDataset

logger = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Scores of :func:`evaluate_views`, averaged over the evaluated pairs."""

    psnr: float
    """Mean PSNR (dB) of the synthesised target views against the renders (on white)."""
    ssim: float
    """Mean SSIM."""
    pairs: list[tuple[str, int, int]] = field(default_factory=list)
    """(object id, condition view, target view) of each evaluated pair."""
    per_pair_psnr: list[float] = field(default_factory=list)
    """PSNR of each pair, in ``pairs`` order."""
    images: np.ndarray | None = None
    """(N, S, S, 3) float32 synthesised views in [0, 1], in ``pairs`` order."""


def evaluate_views(
    model: Zero123Pipeline | str | os.PathLike,
    data_dir: str | os.PathLike,
    cond_views: Sequence[int],
    target_views: Sequence[int],
    objects: Sequence[str] | None = None,
    num_inference_steps: int = 50,
    guidance_scale: float = 3.0,
    seed: int = 0,
) -> EvalResult:
    """Synthesise each target view of each object from each condition view and score it against the render.

    Args:
        model: a loaded pipeline or a model folder (e.g. a training checkpoint).
        data_dir: dataset folder written by :func:`~z123_ros.training.render_dataset`.
        cond_views: view indices used as inputs.
        target_views: view indices to synthesise (held out from training for a fair score).
        objects: object ids (default all).
        num_inference_steps, guidance_scale: sampler settings (the paper's demo: 50, 3.0).
        seed: noise seed; the same seed gives the same images for any model, so two models compare fairly.
    """
    pipe = model if isinstance(model, Zero123Pipeline) else load_zero123(model, progress_bar=False)
    if not cond_views or not target_views:
        raise InputError("evaluate_views needs at least one condition view and one target view")
    views = sorted(set(cond_views) | set(target_views))
    data = ViewPairDataset(data_dir, image_size=pipe.image_size, objects=objects, views=views)
    pairs, scores, ssims, images = [], [], [], []
    for o, record in enumerate(data.records):
        for c in cond_views:
            targets = [t for t in target_views if t != c]
            if not targets:
                continue
            cond = (data.image(o, c).permute(1, 2, 0).numpy() + 1.0) / 2.0
            rel = []
            for t in targets:
                pose = data.relative_pose(o, c, t)
                # Back from the pose vector to (d_polar_deg, d_azimuth_deg, d_radius), the pipeline's view tuple.
                rel.append(
                    (float(np.degrees(pose[0])), float(np.degrees(np.arctan2(pose[1], pose[2]))), float(pose[3]))
                )
            generator = torch.Generator().manual_seed(seed)
            out = pipe(
                cond,
                views=rel,
                input_polar_deg=float(record.polar_deg[c]),
                num_inference_steps=num_inference_steps,
                guidance_scale=guidance_scale,
                generator=generator,
            )
            for t, image in zip(targets, out.images, strict=True):
                truth = (data.image(o, t).permute(1, 2, 0).numpy() + 1.0) / 2.0
                pairs.append((record.id, c, t))
                scores.append(psnr(image, truth))
                ssims.append(ssim(image, truth))
                images.append(image)
    if not pairs:
        raise InputError("no (condition, target) pairs to evaluate")
    return EvalResult(
        psnr=float(np.mean(scores)),
        ssim=float(np.mean(ssims)),
        pairs=pairs,
        per_pair_psnr=scores,
        images=np.stack(images).astype(np.float32),
    )
