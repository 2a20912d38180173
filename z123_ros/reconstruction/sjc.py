"""The ``zero123`` backend: Score Jacobian Chaining of a voxel latent field guided by Zero-1-to-3 (the paper's method).

Per step: render the field's latents from a random camera (radius 1.8-2.2, +z up), noise them at a level drawn from
the middle of the schedule and push them along the variance-reduced score ``eps_hat - eps`` of the guided UNet
(guidance 100 in the paper); reconstruct the input view (weight 1e4); keep near views consistent (L1 on latents and
depth against a jittered pose, 1e5); smooth depth in the second half (1e5). With metric depth the visible surface is
a constraint too, the depth backend's completion initialises the density, and the object frame is metric (scale and
placement from the depth), so the mesh comes back in metres in the camera frame. The input view's polar angle comes
from the camera pose (support plane or ``T_cam_from_world``). The setup, losses and meshing shared with the
multiview fast path live in learned.py.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the universal torch idiom)

from z123_ros.errors import ReconstructionError
from z123_ros.reconstruction.base import ReconstructionConfig, ReconstructionInput, ReconstructionResult
from z123_ros.reconstruction.field import VoxelField, orbit_camera
from z123_ros.reconstruction.learned import (
    LearnedSetup,
    field_to_result,
    input_view_loss,
    make_field,
    pose_batch,
    prepare_learned_setup,
    progress_bar,
    stratified_offsets,
)

logger = logging.getLogger(__name__)


@dataclass
class _SJCState:
    """What every SJC step reads: the run's random streams and the model's noise schedule."""

    rng: np.random.Generator
    gen: torch.Generator
    alphas: torch.Tensor
    latent_size: int


def noise_level(config: ReconstructionConfig, step: int, rng: np.random.Generator) -> float:
    """The step's noise level as a fraction of the schedule: uniform in ``t_range``, annealed to ``t_range_end``."""
    cfg = config.sjc
    lo, hi = cfg.t_range
    if cfg.t_range_end is not None:
        frac = step / max(1, cfg.steps - 1)
        lo += frac * (cfg.t_range_end[0] - lo)
        hi += frac * (cfg.t_range_end[1] - hi)
    return float(rng.uniform(lo, hi))


def sjc_step_loss(
    field: VoxelField, setup: LearnedSetup, pipeline, config: ReconstructionConfig, state: _SJCState, step: int
) -> torch.Tensor:
    """The loss of one SJC step (score at a random view + input view + near-view consistency + smoothness)."""
    cfg, fcfg = config.sjc, config.voxel_field
    rng, device = state.rng, setup.input_latents.device
    polar = float(rng.uniform(*cfg.polar_range_deg))
    azimuth = float(rng.uniform(0.0, 360.0))
    radius = float(rng.uniform(*cfg.radius_range))
    jitter = rng.normal(0.0, cfg.near_view_jitter_deg, size=2)
    near_pose = (polar + float(jitter[0]), azimuth + float(jitter[1]), radius)
    cams = [orbit_camera(polar, azimuth, radius), orbit_camera(*near_pose)]
    # Rays at random positions within their pixels: in expectation the render is then the pixel's area average,
    # which is what the model's latent of a pixel summarises (pixel centres fit a blurred, half-transparent edge).
    offsets = stratified_offsets(2, fcfg.render_size, state.gen) if cfg.stratified_rays else None
    out = field.render(cams, fcfg.render_size, generator=state.gen, offsets=offsets)
    # 1. SJC score at the random view: variance-reduced (eps_hat - eps).
    size = state.latent_size
    # A render finer than the latents is area-averaged to them (supersampling: a latent summarises its pixels).
    z = out.latents[:1]
    if z.shape[-1] != size:
        mode = "area" if z.shape[-1] > size else "bilinear"
        z = F.interpolate(z, size=(size, size), mode=mode, **({} if mode == "area" else {"align_corners": False}))
    t = int(noise_level(config, step, rng) * (len(state.alphas) - 1))
    a = state.alphas[t]
    eps = torch.randn(z.shape, generator=state.gen, device=device)
    noisy = a.sqrt() * z.detach() + (1 - a).sqrt() * eps
    eps_hat = pipeline.guided_noise(
        noisy,
        torch.tensor([t], device=device),
        setup.cond,
        pose_batch(pipeline, setup, [(polar, azimuth, radius)]),
        guidance_scale=cfg.guidance_scale,
    ).float()
    grad = torch.nan_to_num((1 - a) * (eps_hat - eps))
    score_loss = 0.5 * ((z - (z - grad).detach()) ** 2).sum()
    # 2. Input-view reconstruction (+ metric depth on the visible surface).
    in_loss, depth_loss = input_view_loss(field, setup, config, state.gen if cfg.stratified_rays else None)
    # 3. Near-view consistency: L1 on latents and depth against a jittered pose.
    near_loss = (out.latents[0] - out.latents[1]).abs().mean() + (out.depth[0] - out.depth[1]).abs().mean()
    loss = cfg.score_weight * score_loss + cfg.input_view_weight * in_loss + cfg.metric_depth_weight * depth_loss
    loss = loss + cfg.near_view_weight * near_loss
    # 4. Depth smoothness, second half of training.
    if step >= cfg.steps // 2:
        d = out.depth[:1]
        tv = (d[..., 1:, :] - d[..., :-1, :]).abs().mean() + (d[..., :, 1:] - d[..., :, :-1]).abs().mean()
        loss = loss + cfg.depth_smooth_weight * tv
    return loss


def optimise_sjc(field: VoxelField, setup: LearnedSetup, pipeline, config: ReconstructionConfig, callback=None) -> None:
    """Run ``config.sjc.steps`` Adamax steps on ``field``; ``callback(step, field)`` after each (for studies)."""
    cfg = config.sjc
    device = setup.input_latents.device
    state = _SJCState(
        rng=np.random.default_rng(cfg.seed),
        gen=torch.Generator(device=device).manual_seed(cfg.seed),
        alphas=pipeline.scheduler.alphas_cumprod.to(device).float(),
        latent_size=int(pipeline.latent_size),
    )
    optimiser = torch.optim.Adamax(
        [{"params": [field.features], "lr": cfg.lr}, {"params": [field.density], "lr": cfg.density_lr}]
    )
    field.train()
    with progress_bar(cfg.steps, config.show_progress, "SJC") as bar:
        for step in range(cfg.steps):
            loss = sjc_step_loss(field, setup, pipeline, config, state, step)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            bar.update()
            if not math.isfinite(loss.item()):
                raise ReconstructionError(f"SJC diverged at step {step} (loss {loss.item()})")
            if callback is not None:
                callback(step, field)
    field.eval()


def reconstruct_sjc(inp: ReconstructionInput, pipeline, config: ReconstructionConfig) -> ReconstructionResult:
    """Score Jacobian Chaining with the paper's losses (see the module docstring)."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    setup = prepare_learned_setup(inp, pipeline, config)
    field = make_field(setup, config, from_depth=config.sjc.init_from_depth)
    timings["prepare"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    optimise_sjc(field, setup, pipeline, config)
    timings["optimise"] = time.perf_counter() - t0
    info = {"steps": float(config.sjc.steps), "input_polar_deg": setup.input_pose[0], "confidence": 0.5}
    return field_to_result(field, setup, config, "zero123", timings, info)
