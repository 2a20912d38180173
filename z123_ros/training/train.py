"""Fine-tune Zero-1-to-3 on rendered views: the paper's training recipe as one loop.

The recipe (the reference implementation, cvlab-columbia/zero123 ``ldm/models/diffusion/ddpm.py``,
``LatentDiffusion.get_input`` / ``configure_optimizers``):

- a pair of views of one object: the condition view and the target view, with the relative pose
  ``[d_polar rad, sin d_az, cos d_az, d_radius]`` from the condition camera to the target camera;
- the target's VAE latent (a posterior sample x the scaling factor) is noised at a uniform timestep of the model's
  DDPM schedule and the UNet predicts the noise (epsilon objective, plain MSE);
- conditioning: one cross-attention token ``projection([CLIP(cond), pose])`` and the condition's VAE latent
  (posterior mode, unscaled) concatenated on channels;
- classifier-free-guidance dropout, one draw r ~ U(0, 1) per sample: r < 5% drops the CLIP embedding alone,
  5-10% drops both, 10-15% drops the image latent alone; the pose is never dropped. As in the reference, a dropped
  CLIP embedding is zeros *before* the projection (the pose still goes through it);
- the UNet and the projection are trained (VAE and CLIP frozen); the projection has a 10x learning rate; AdamW with a
  linear warm-up, then constant.

Around it: mixed precision (bf16 autocast on CPU and GPU, fp16 autocast + GradScaler on CUDA), gradient accumulation,
EMA of the trained weights, checkpoints in the pipeline's folder layout with everything needed to resume, a JSONL loss
log. Every random draw of a micro-step (which pairs, noise, timesteps, dropout) comes from a generator seeded by
(seed, micro-step, worker rank), so a resumed run reproduces the uninterrupted one. The same :func:`train` runs alone
or as one worker of a ``torch.distributed`` group (Ray Train: :mod:`z123_ros.training.distributed`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from diffusers.utils.torch_utils import randn_tensor
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from z123_ros.errors import ConfigError, InputError
from z123_ros.io import new_staging, replace_folder
from z123_ros.novel_views.clip import clip_preprocess
from z123_ros.training.checkpoint import (
    TrainingComponents,
    latest_checkpoint,
    load_training_components,
    prune_checkpoints,
    write_model_folder,
)
from z123_ros.training.config import TrainConfig
from z123_ros.training.dataset import ViewPairDataset

logger = logging.getLogger(__name__)


@dataclass
class WorkerContext:
    """Where this copy of the training loop runs: alone (defaults) or as one rank of a distributed group."""

    rank: int = 0
    """Global rank; rank 0 writes checkpoints and the log."""
    world_size: int = 1
    """Number of workers (torch.distributed must be initialised when > 1)."""
    device: torch.device | None = None
    """Device of this worker (None: from TrainConfig.device)."""
    report: Callable[[dict], None] | None = None
    """Called on every rank with each logged metrics dict (Ray Train's ``ray.train.report``)."""


@dataclass
class TrainResult:
    """What :func:`train` did."""

    step: int
    """Optimizer steps done in total (including steps before a resume)."""
    start_step: int
    """Step the run started from (0, or the resumed checkpoint's)."""
    losses: list[tuple[int, float]] = field(default_factory=list)
    """(step, mean loss over the steps since the previous log line), this run's log lines in order."""
    checkpoint: Path | None = None
    """The final checkpoint (a model folder :func:`~z123_ros.novel_views.load_zero123` loads)."""
    log_path: Path | None = None
    """The JSONL loss log."""
    seconds: float = 0.0
    """Wall time of the training loop (loading excluded)."""
    steps_per_second: float = 0.0
    """Optimizer steps per second of this run."""


class Zero123Denoiser(torch.nn.Module):
    """The trained part of Zero-1-to-3: camera projection + 8-channel UNet, one forward for DDP to wrap."""

    def __init__(self, unet: torch.nn.Module, projection: torch.nn.Module):
        super().__init__()
        self.unet = unet
        self.projection = projection

    def forward(
        self,
        noisy_latents: torch.Tensor,  # (B, 4, h, w), scaled latents with noise
        timesteps: torch.Tensor,  # (B,)
        clip_embeds: torch.Tensor,  # (B, 1, clip_dim), zeros where dropped
        poses: torch.Tensor,  # (B, 4)
        image_latents: torch.Tensor,  # (B, 4, h, w) unscaled posterior mode, zeros where dropped
    ) -> torch.Tensor:
        tokens = self.projection(torch.cat([clip_embeds, poses[:, None, :].to(clip_embeds.dtype)], dim=-1))
        sample = torch.cat([noisy_latents, image_latents], dim=1)
        return self.unet(sample, timesteps, encoder_hidden_states=tokens).sample


def _seed(*parts: int) -> int:
    """A 63-bit seed mixing integers (SplitMix64-style), stable across processes and Python versions."""
    x = 0x9E3779B97F4A7C15
    for p in parts:
        x = (x ^ (int(p) + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2))) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
        x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
        x ^= x >> 31
    return x & 0x7FFFFFFFFFFFFFFF


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of pair indices for micro-steps ``start..stop-1``: each drawn with replacement from a generator seeded
    by (seed, micro-step, rank), so any run or resume sees the same data at the same step."""

    def __init__(self, num_items: int, batch_size: int, seed: int, rank: int, start: int, stop: int):
        self.num_items, self.batch_size, self.seed, self.rank = num_items, batch_size, seed, rank
        self.start, self.stop = start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for micro_step in range(self.start, self.stop):
            g = torch.Generator().manual_seed(_seed(self.seed, micro_step, self.rank, 1))
            yield torch.randint(self.num_items, (self.batch_size,), generator=g).tolist()

    def __len__(self) -> int:
        return self.stop - self.start


def _resolve_device(config: TrainConfig, context: WorkerContext) -> torch.device:
    if context.device is not None:
        return torch.device(context.device)
    if config.device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device")
    return device


def _lr_lambda(warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        return 1.0 if warmup_steps <= 0 else min(1.0, (step + 1) / warmup_steps)

    return factor


class _Ema:
    """EMA of a list of parameters (shadow copies in float32), decay ramped as (1 + n) / (10 + n)."""

    def __init__(self, params: list[torch.nn.Parameter], decay: float):
        self.decay = decay
        self.shadow = [p.detach().float().clone() for p in params]
        self.num_updates = 0

    @torch.no_grad()
    def update(self, params: list[torch.nn.Parameter]) -> None:
        self.num_updates += 1
        d = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, params, strict=True):
            s.lerp_(p.detach().float(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, params: list[torch.nn.Parameter]) -> None:
        for s, p in zip(self.shadow, params, strict=True):
            p.copy_(s.to(p.dtype))


def _named_trainable(model: Zero123Denoiser) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def _save_checkpoint(
    config: TrainConfig,
    parts: TrainingComponents,
    model: Zero123Denoiser,
    ema: _Ema | None,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
    step: int,
    world_size: int,
) -> Path:
    """Write ``output_dir/checkpoints/step-NNNNNN`` atomically (rank 0 only) and prune old ones."""
    out = Path(config.output_dir)
    root = out / "checkpoints"
    final = root / f"step-{step:06d}"
    tmp = new_staging(final)  # swapped in as a whole: a killed save leaves no half checkpoint
    named = _named_trainable(model)
    params = [p for _, p in named]
    state_dir = tmp / "training_state"
    state_dir.mkdir()
    save_file({n: p.detach().float().contiguous().cpu() for n, p in named}, str(state_dir / "trainable.safetensors"))
    if ema is not None:
        save_file(
            {n: s.contiguous().cpu() for (n, _), s in zip(named, ema.shadow, strict=True)},
            str(state_dir / "ema.safetensors"),
        )
        # The model folder holds the EMA weights (what inference should use); the raw ones are restored after.
        backup = [p.detach().clone() for p in params]
        ema.copy_to(params)
    try:
        layout = config.save_layout or parts.layout
        write_model_folder(tmp, parts, model.unet, model.projection, layout, root / ".frozen")
    finally:
        if ema is not None:
            with torch.no_grad():
                for p, b in zip(params, backup, strict=True):
                    p.copy_(b)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "lr_scheduler": lr_scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
        },
        state_dir / "optimizer.pt",
    )
    state = {
        "step": step,
        "ema_updates": ema.num_updates if ema is not None else None,
        "world_size": world_size,
        "config": config.to_json(),
        "torch_rng_state": torch.get_rng_state().tolist(),
        "numpy_rng_state": np.random.get_state()[1].tolist(),
    }
    (state_dir / "state.json").write_text(json.dumps(state) + "\n")
    replace_folder(tmp, final)
    prune_checkpoints(out, config.keep_checkpoints)
    return final


def _load_checkpoint(
    path: Path,
    model: Zero123Denoiser,
    ema: _Ema | None,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler | None,
) -> int:
    """Restore a checkpoint's training state into the live objects; returns its step."""
    state_dir = path / "training_state"
    try:
        state = json.loads((state_dir / "state.json").read_text())
        weights = load_file(str(state_dir / "trainable.safetensors"))
        opt = torch.load(state_dir / "optimizer.pt", map_location="cpu", weights_only=True)
    except (OSError, json.JSONDecodeError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot resume from {path}: {type(exc).__name__}: {exc}") from exc
    named = _named_trainable(model)
    missing = [n for n, _ in named if n not in weights]
    if missing:
        raise InputError(f"checkpoint {path} does not match the model: missing {missing[:3]}")
    with torch.no_grad():
        for n, p in named:
            p.copy_(weights[n].to(p.device, p.dtype))
    if ema is not None:
        ema_file = state_dir / "ema.safetensors"
        if ema_file.is_file():
            ema_weights = load_file(str(ema_file))
            ema.shadow = [ema_weights[n].float().to(p.device) for n, p in named]
            ema.num_updates = int(state.get("ema_updates") or state["step"])
        else:
            logger.warning("checkpoint %s has no EMA weights; EMA restarts from the current weights", path)
            ema.shadow = [p.detach().float().clone() for _, p in named]
    optimizer.load_state_dict(opt["optimizer"])
    lr_scheduler.load_state_dict(opt["lr_scheduler"])
    if scaler is not None and opt.get("scaler"):
        scaler.load_state_dict(opt["scaler"])
    torch.set_rng_state(torch.tensor(state["torch_rng_state"], dtype=torch.uint8))
    return int(state["step"])


def _append_log(path: Path, record: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines after ``step`` (written by an interrupted run past its last checkpoint)."""
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    path.write_text("".join(line + "\n" for line in kept))


def conditioning_dropout_masks(r: torch.Tensor, p: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Classifier-free-guidance dropout from one uniform draw per sample, as the reference's ``get_input``:
    r < p drops the CLIP embedding alone, p <= r < 2p both, 2p <= r < 3p the image latent alone.

    Returns boolean (B,) masks ``(drop_clip, drop_image_latent)``; the pose is never dropped.
    """
    return r < 2 * p, (r >= p) & (r < 3 * p)


def encode_batch(
    parts: TrainingComponents,
    cond: torch.Tensor,
    target: torch.Tensor,
    generator: torch.Generator,
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Frozen encoders: (target latents scaled, condition latents unscaled mode, CLIP embeds (B, 1, D))."""
    vae, encoder = parts.vae, parts.image_encoder
    with torch.no_grad():
        posterior = vae.encode(torch.cat([target, cond]).to(dtype)).latent_dist
        target_post_mean = posterior.mean[: len(target)].float()
        target_post_std = posterior.std[: len(target)].float()
        eps = randn_tensor(target_post_mean.shape, generator=generator, device=target.device, dtype=torch.float32)
        target_latents = (target_post_mean + target_post_std * eps) * vae.config.scaling_factor
        cond_latents = posterior.mode()[len(target) :].float()
        pixels = clip_preprocess(cond, int(encoder.config.image_size)).to(dtype)
        clip_embeds = encoder(pixel_values=pixels).image_embeds[:, None, :].float()
    return target_latents, cond_latents, clip_embeds


class EncoderCache:
    """Frozen-encoder outputs per (object, view): posterior mean and std of the VAE, CLIP image embedding."""

    def __init__(self) -> None:
        self._store: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self._store)

    @torch.no_grad()
    def _fill(self, parts: TrainingComponents, keys: list[tuple[int, int]], images: torch.Tensor, dtype: torch.dtype):
        missing = {}
        for k, x in zip(keys, images, strict=True):
            if k not in self._store and k not in missing:
                missing[k] = x
        if not missing:
            return
        x = torch.stack(list(missing.values()))
        posterior = parts.vae.encode(x.to(dtype)).latent_dist
        pixels = clip_preprocess(x, int(parts.image_encoder.config.image_size)).to(dtype)
        clip = parts.image_encoder(pixel_values=pixels).image_embeds.float()
        for i, k in enumerate(missing):
            self._store[k] = (posterior.mean[i].float(), posterior.std[i].float(), clip[i])

    def encode(
        self, parts: TrainingComponents, batch: dict, cond: torch.Tensor, target: torch.Tensor, generator, dtype
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Same outputs and random draws as :func:`encode_batch`."""
        objects = batch["object"].tolist()
        cond_keys = list(zip(objects, batch["cond_view"].tolist(), strict=True))
        target_keys = list(zip(objects, batch["target_view"].tolist(), strict=True))
        self._fill(parts, target_keys + cond_keys, torch.cat([target, cond]), dtype)
        mean = torch.stack([self._store[k][0] for k in target_keys])
        std = torch.stack([self._store[k][1] for k in target_keys])
        eps = randn_tensor(mean.shape, generator=generator, device=mean.device, dtype=torch.float32)
        target_latents = (mean + std * eps) * parts.vae.config.scaling_factor
        cond_latents = torch.stack([self._store[k][0] for k in cond_keys])
        clip_embeds = torch.stack([self._store[k][2] for k in cond_keys])[:, None, :]
        return target_latents, cond_latents, clip_embeds


def train(config: TrainConfig, context: WorkerContext | None = None) -> TrainResult:
    """Run (or resume) training; returns on every rank, checkpoints and log written by rank 0."""
    config.validate()
    run = _TrainingRun(config, context or WorkerContext())  # 1-3: model, optimizer, dataset
    resume_from = run.resume()  # 4
    loader = run.loader()  # 5
    return run.loop(loader, resume_from)  # 6


class _TrainingRun:
    """One call of :func:`train` on one worker: its model, optimizer and data, and the steps of its loop."""

    def __init__(self, config: TrainConfig, context: WorkerContext) -> None:
        self.config, self.context = config, context
        self.rank, self.world = context.rank, context.world_size
        self.distributed = self.world > 1
        if self.distributed and not torch.distributed.is_initialized():
            raise ConfigError(f"world_size {self.world} needs an initialised torch.distributed process group")
        self.device = _resolve_device(config, context)
        if config.mixed_precision == "fp16" and self.device.type != "cuda":
            raise ConfigError("mixed_precision='fp16' needs a CUDA device (use 'bf16' on the CPU)")
        self.amp_dtype = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}[config.mixed_precision]
        self.out = Path(config.output_dir)
        self.log_path = self.out / "train_log.jsonl"
        self.start_step = 0
        self._build_model()
        self._build_optimizer()
        # 3. Dataset (checked before anything is written)
        self.dataset = ViewPairDataset(
            config.data_dir,
            image_size=self.image_size,
            objects=config.objects,
            views=config.train_views,
            cache=config.cache_images,
        )

    def _build_model(self) -> None:
        """1. Model: frozen encoders in the compute dtype, trained parts in float32 (autocast casts per op)."""
        config, device = self.config, self.device
        parts = load_training_components(config.model_path, config.projection_init)
        self.frozen_dtype = self.amp_dtype or torch.float32
        parts.vae.to(device, self.frozen_dtype)
        parts.image_encoder.to(device, self.frozen_dtype)
        self.model = Zero123Denoiser(parts.unet, parts.projection).to(device)
        self.model.train()
        self.image_size = config.image_size or int(parts.unet.config.sample_size) * 2 ** (
            len(parts.vae.config.block_out_channels) - 1
        )
        self.num_train_timesteps = int(parts.noise_scheduler.config.num_train_timesteps)
        self.prediction_type = parts.noise_scheduler.config.prediction_type
        self.parts = parts

    def _build_optimizer(self) -> None:
        """2. Optimizer: the projection at a higher learning rate (param groups), linear warm-up."""
        config, model = self.config, self.model
        self.optimizer = torch.optim.AdamW(
            [
                {"params": list(model.unet.parameters()), "lr": config.learning_rate, "name": "unet"},
                {
                    "params": list(model.projection.parameters()),
                    "lr": config.learning_rate * config.projection_lr_multiplier,
                    "name": "projection",
                },
            ],
            lr=config.learning_rate,
            betas=tuple(config.adam_betas),
            weight_decay=config.weight_decay,
        )
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _lr_lambda(config.warmup_steps))
        self.scaler = torch.amp.GradScaler("cuda") if config.mixed_precision == "fp16" else None
        self.ema = _Ema([p for _, p in _named_trainable(model)], config.ema_decay) if config.use_ema else None

    def resume(self) -> Path | None:
        """4. Resume (the checkpoint resumed from, or None), then the output folder and the (DDP-wrapped) model."""
        config, out = self.config, self.out
        resume_from = None
        if config.resume == "auto":
            resume_from = latest_checkpoint(out)
        elif config.resume:
            resume_from = Path(config.resume)
            if not (resume_from / "training_state" / "state.json").is_file():
                raise InputError(f"resume checkpoint {resume_from} has no training_state/state.json")
        if resume_from is not None:
            self.start_step = _load_checkpoint(
                resume_from, self.model, self.ema, self.optimizer, self.lr_scheduler, self.scaler
            )
            logger.info("resumed from %s at step %d", resume_from, self.start_step)
        if self.rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            _truncate_log(self.log_path, self.start_step)
            (out / "train_config.json").write_text(json.dumps(config.to_json(), indent=1) + "\n")
        self.ddp_model: torch.nn.Module = self.model
        if self.distributed:
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        return resume_from

    def loader(self) -> torch.utils.data.DataLoader:
        """5. Data: batches indexed by micro-step, so resuming picks up exactly where the run stopped."""
        config, dataset = self.config, self.dataset
        accum = config.gradient_accumulation_steps
        sampler = StepBatchSampler(
            len(dataset), config.batch_size, config.seed, self.rank, self.start_step * accum, config.max_steps * accum
        )
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=config.data_workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=False,
        )
        logger.info(
            "training %s on %d pairs (%d objects) at %dx%d, steps %d -> %d, batch %d x %d x %d workers, %s on %s",
            self.parts.source,
            len(dataset),
            len(dataset.records),
            self.image_size,
            self.image_size,
            self.start_step,
            config.max_steps,
            config.batch_size,
            accum,
            self.world,
            config.mixed_precision,
            self.device,
        )
        return loader

    def loop(self, loader: torch.utils.data.DataLoader, resume_from: Path | None) -> TrainResult:
        """6. Loop: micro-steps, an optimizer step every ``gradient_accumulation_steps``, log lines, checkpoints."""
        config, start_step = self.config, self.start_step
        accum = config.gradient_accumulation_steps
        step = start_step
        losses: list[tuple[int, float]] = []
        pending: list[float] = []
        last_checkpoint: Path | None = resume_from
        progress = None
        if config.progress_bar and self.rank == 0 and step < config.max_steps:
            progress = tqdm(total=config.max_steps, initial=step, desc="train", unit="step")
        start_time = time.perf_counter()
        micro = 0
        step_loss = 0.0
        cache = EncoderCache() if config.cache_latents else None
        for batch in loader:
            sync = micro == accum - 1
            step_loss += self._micro_step(batch, step * accum + micro, cache, sync) / accum
            micro += 1
            if not sync:
                continue
            grad_norm = self._optimizer_step()
            step += 1
            micro = 0
            pending.append(step_loss)
            step_loss = 0.0
            if progress is not None:
                progress.update()
            if step % config.log_every == 0 or step == config.max_steps:
                losses.append(self._log(step, pending, grad_norm, time.perf_counter() - start_time, progress))
                pending.clear()
            if step % config.checkpoint_every == 0 or step == config.max_steps:
                if self.rank == 0:
                    last_checkpoint = _save_checkpoint(
                        config,
                        self.parts,
                        self.model,
                        self.ema,
                        self.optimizer,
                        self.lr_scheduler,
                        self.scaler,
                        step,
                        self.world,
                    )
                if self.distributed:
                    torch.distributed.barrier()
        if progress is not None:
            progress.close()
        seconds = time.perf_counter() - start_time
        if self.rank == 0 and last_checkpoint is not None:
            last_checkpoint = latest_checkpoint(self.out) or last_checkpoint
        return TrainResult(
            step=step,
            start_step=start_step,
            losses=losses,
            checkpoint=last_checkpoint,
            log_path=self.log_path,
            seconds=seconds,
            steps_per_second=(step - start_step) / seconds if seconds > 0 else math.nan,
        )

    def _micro_step(self, batch: dict, micro_step: int, cache: EncoderCache | None, sync: bool) -> float:
        """Forward and backward of one batch (gradients synchronised across workers only when ``sync``); its loss.

        Every random draw comes from a generator seeded by (seed, micro-step, rank), in a fixed order: the encoders'
        posterior samples, the noise, the timesteps, the dropout draw."""
        config, device, parts, amp_dtype = self.config, self.device, self.parts, self.amp_dtype
        g = torch.Generator().manual_seed(_seed(config.seed, micro_step, self.rank, 2))
        cond = batch["cond"].to(device, non_blocking=True)
        target = batch["target"].to(device, non_blocking=True)
        poses = batch["pose"].to(device)
        if parts.stable_zero123:
            poses[:, 3] = batch["cond_polar_rad"].to(device)
        bsz = cond.shape[0]
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            if cache is not None:
                latents, cond_latents, clip_embeds = cache.encode(parts, batch, cond, target, g, self.frozen_dtype)
            else:
                latents, cond_latents, clip_embeds = encode_batch(parts, cond, target, g, self.frozen_dtype)
        noise = torch.randn(latents.shape, generator=g).to(device)
        timesteps = torch.randint(0, self.num_train_timesteps, (bsz,), generator=g).to(device)
        drop_clip, drop_image = conditioning_dropout_masks(
            torch.rand(bsz, generator=g).to(device), config.conditioning_dropout
        )
        clip_embeds = torch.where(drop_clip[:, None, None], torch.zeros_like(clip_embeds), clip_embeds)
        cond_latents = torch.where(drop_image[:, None, None, None], torch.zeros_like(cond_latents), cond_latents)
        noisy = parts.noise_scheduler.add_noise(latents, noise, timesteps)
        target_pred = self._target(latents, noise, timesteps)

        ctx = self.ddp_model.no_sync() if self.distributed and not sync else contextlib.nullcontext()
        with ctx:
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
                pred = self.ddp_model(noisy, timesteps, clip_embeds, poses, cond_latents)
            loss = F.mse_loss(pred.float(), target_pred)
            scaled = loss / config.gradient_accumulation_steps
            (self.scaler.scale(scaled) if self.scaler is not None else scaled).backward()
        return float(loss.detach())

    def _target(self, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """What the UNet learns to predict, by the model's scheduler's prediction type."""
        if self.prediction_type == "epsilon":
            return noise
        if self.prediction_type == "v_prediction":
            return self.parts.noise_scheduler.get_velocity(latents, noise, timesteps)
        raise ConfigError(
            f"the model's scheduler has prediction_type {self.prediction_type!r}; training supports "
            "'epsilon' (Zero-1-to-3) and 'v_prediction'"
        )

    def _optimizer_step(self) -> float:
        """Clip, step the optimizer (through the GradScaler with fp16), the learning rate and the EMA; the gradient
        norm before clipping (NaN when clipping is off)."""
        config, optimizer, scaler, model = self.config, self.optimizer, self.scaler, self.model
        if scaler is not None:
            scaler.unscale_(optimizer)
        grad_norm = (
            float(torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm))
            if config.max_grad_norm > 0
            else float("nan")
        )
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.lr_scheduler.step()
        if self.ema is not None:
            self.ema.update([p for _, p in _named_trainable(model)])
        return grad_norm

    def _log(self, step: int, pending: list[float], grad_norm: float, elapsed: float, progress) -> tuple[int, float]:
        """One log line: the mean loss since the last one (averaged over the workers), to the JSONL log (rank 0)
        and the context's ``report``; returns (step, mean loss)."""
        mean_loss = float(np.mean(pending))
        if self.distributed:
            t = torch.tensor([mean_loss], device=self.device)
            torch.distributed.all_reduce(t)
            mean_loss = float(t) / self.world
        record = {
            "step": step,
            "loss": mean_loss,
            "lr": self.optimizer.param_groups[0]["lr"],
            "lr_projection": self.optimizer.param_groups[1]["lr"],
            "grad_norm": grad_norm,
            "steps_per_second": (step - self.start_step) / max(elapsed, 1e-9),
            "elapsed_s": elapsed,
            "world_size": self.world,
        }
        if self.rank == 0:
            _append_log(self.log_path, record)
            logger.info("step %d loss %.5f", step, mean_loss)
            if progress is not None:
                progress.set_postfix(loss=f"{mean_loss:.4f}")
        if self.context.report is not None:
            self.context.report(record)
        return step, mean_loss


def read_log(path: str | os.PathLike) -> list[dict]:
    """The records of a train_log.jsonl."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
