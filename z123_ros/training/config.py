"""``TrainConfig``: every setting of a Zero-1-to-3 fine-tuning run.

In its own module, free of torch and diffusers, so that ``z123 --help`` (which builds the ``train`` flags from these
fields) does not import them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from z123_ros.errors import ConfigError

MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Everything one training run needs. Defaults follow the paper where it states a value."""

    data_dir: str
    """Dataset folder written by ``z123 render-dataset`` / :func:`~z123_ros.training.render_dataset`."""
    model_path: str
    """Model to start from: a Zero-1-to-3 folder (any published layout, or one of our checkpoints), a Stable
    Diffusion image-variation folder, or a tiny random model for tests."""
    output_dir: str
    """Where checkpoints/ and train_log.jsonl go."""
    max_steps: int = 1000
    """Optimizer steps to train for (counted across resumes)."""
    batch_size: int = 8
    """Pairs per micro-batch per worker (the paper: 192 per GPU on 8 A100s)."""
    gradient_accumulation_steps: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size x this x workers)."""
    learning_rate: float = 1e-4
    """AdamW learning rate of the UNet (the paper: 1e-4)."""
    projection_lr_multiplier: float = 10.0
    """Learning rate of the camera projection relative to the UNet (the paper: 10x)."""
    adam_betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    weight_decay: float = 0.01
    """AdamW weight decay (torch's default)."""
    warmup_steps: int = 100
    """Linear learning-rate warm-up from ~0 (the paper: 100 steps), constant afterwards."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm (0 disables)."""
    conditioning_dropout: float = 0.05
    """Probability of each of the three dropout cases (CLIP alone, both, image latent alone): 5% in the paper."""
    mixed_precision: str = "no"
    """"no" (fp32), "bf16" (autocast, CPU or GPU) or "fp16" (autocast + GradScaler, CUDA only)."""
    use_ema: bool = True
    """Keep an exponential moving average of the trained weights; checkpoints' unet/ hold the EMA weights."""
    ema_decay: float = 0.9999
    """EMA decay (the effective decay ramps up as (1 + step) / (10 + step) early on)."""
    checkpoint_every: int = 500
    """Write a checkpoint every this many steps (and always at the end)."""
    keep_checkpoints: int = 2
    """Number of newest checkpoints kept (0 = all)."""
    log_every: int = 10
    """Log the mean loss every this many steps (JSONL line + logger)."""
    seed: int = 0
    """Seed of the pair sampling, noise, timesteps and dropout."""
    image_size: int | None = None
    """Training image size; default the model's (256 for the published models)."""
    train_views: tuple[int, ...] | None = None
    """View indices used for training (default all), e.g. (0..9) to hold out views 10 and 11."""
    objects: tuple[str, ...] | None = None
    """Object ids used for training (default all in data_dir)."""
    data_workers: int = 0
    """DataLoader worker processes per training worker (0 = load in the training process)."""
    cache_images: bool = False
    """Keep decoded images in memory (small datasets)."""
    cache_latents: bool = False
    """Keep the frozen encoders' outputs (VAE posterior, CLIP embedding) of every image seen, on the device: the VAE
    and CLIP then run once per image instead of every step. Exact (no augmentation), memory ~2 x 4 x h x w + clip_dim
    floats per image."""
    resume: str | None = "auto"
    """"auto": continue from the newest checkpoint in output_dir if there is one; a checkpoint path; None: fresh."""
    device: str = "auto"
    """"auto" (CUDA when available), "cpu", "cuda", "cuda:1"; Ray Train workers use the device Ray assigns."""
    projection_init: str = "auto"
    """"auto": keep the starting model's projection (identity-initialised when it has none); "identity": re-init."""
    save_layout: str | None = None
    """Checkpoint folder layout: "kxic" (cc_projection/) or "diffusers" (clip_camera_projection/); default the
    starting model's."""
    num_workers: int = 1
    """Ray Train workers (``train_with_ray``); one process per GPU on a cluster."""
    use_gpu: bool = False
    """Ray Train workers each take one GPU."""
    cpus_per_worker: int = 1
    """CPUs each Ray Train worker reserves."""
    ray_address: str | None = None
    """Ray cluster address ("auto", "ray://host:10001"); None starts a local Ray."""
    progress_bar: bool = False
    """Show a tqdm progress bar (rank 0)."""

    def validate(self) -> None:
        """Raise ConfigError naming the first bad value."""
        positive = ("max_steps", "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ConfigError(f"mixed_precision must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if not 0.0 <= self.conditioning_dropout <= 1.0 / 3.0:
            raise ConfigError(f"conditioning_dropout must be in [0, 1/3], got {self.conditioning_dropout}")
        if not (self.learning_rate > 0 and self.projection_lr_multiplier > 0):
            raise ConfigError("learning_rate and projection_lr_multiplier must be positive")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if self.save_layout not in (None, "kxic", "diffusers"):
            raise ConfigError(f"save_layout must be 'kxic', 'diffusers' or None, got {self.save_layout!r}")
        if self.num_workers < 1 or self.data_workers < 0 or self.cpus_per_worker < 1:
            raise ConfigError("num_workers and cpus_per_worker must be >= 1 and data_workers >= 0")

    def to_json(self) -> dict:
        data = asdict(self)
        data["adam_betas"] = list(self.adam_betas)
        return data
