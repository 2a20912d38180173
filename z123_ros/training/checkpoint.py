"""Loading the model training starts from, and writing checkpoints in the pipeline's own folder layout.

A checkpoint folder is a complete Zero-1-to-3 model folder in a published layout (``cc_projection/`` as
kxic/zero123-*, or ``clip_camera_projection/`` as the ``*-diffusers`` ports), so
:func:`z123_ros.novel_views.load_zero123` and ``z123 views --model`` load it as it is, plus a ``training_state/``
sub-folder the pipeline ignores::

    step-000500/
      model_index.json  scheduler/  vae/  image_encoder/  feature_extractor/   (frozen parts: hard links, written once)
      unet/  cc_projection/                      the trained weights (the EMA weights when EMA is on)
      training_state/
        trainable.safetensors                    raw (non-EMA) weights, keys unet.* and projection.*
        ema.safetensors                          EMA weights of the same parameters (when EMA is on)
        optimizer.pt                             optimizer, LR schedule and grad-scaler state (torch.load weights_only)
        state.json                               step, config, world size, RNG states
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPVisionModelWithProjection

from z123_ros.errors import ModelLoadError
from z123_ros.novel_views.clip import CLIP_MEAN, CLIP_STD
from z123_ros.novel_views.loading import build_scheduler, detect_layout
from z123_ros.novel_views.pipeline import load_zero123
from z123_ros.novel_views.projection import CameraProjection
from z123_ros.novel_views.saving import write_json, write_projection_and_index

logger = logging.getLogger(__name__)

#: diffusers version string written into the model_index.json / projection configs of checkpoints.
_FROZEN_PARTS = ("vae", "image_encoder", "feature_extractor", "scheduler")


@dataclass
class TrainingComponents:
    """The model parts training works with, loaded in float32 on the CPU."""

    vae: AutoencoderKL
    """Frozen SD VAE."""
    image_encoder: CLIPVisionModelWithProjection
    """Frozen CLIP vision tower."""
    unet: UNet2DConditionModel
    """Trained: 8 input channels (noisy latent + image latent)."""
    projection: CameraProjection
    """Trained: ``[CLIP embedding, pose] -> token``."""
    noise_scheduler: DDPMScheduler
    """The training noise schedule (the model's scheduler config as a DDPM scheduler)."""
    scheduler_config: dict
    """The DDIM sampling scheduler config written into checkpoints."""
    stable_zero123: bool
    """Whether the 4th pose entry is the absolute input polar (Stable Zero123)."""
    layout: str
    """Folder layout of the source ("kxic" or "diffusers"; an SD image-variation source counts as "kxic")."""
    source: Path
    """The folder the components were loaded from."""
    projection_initialised: bool
    """True when the projection was freshly identity-initialised rather than loaded."""


def _is_zero123_folder(folder: Path) -> bool:
    return any((folder / p).is_dir() for p in ("cc_projection", "clip_camera_projection"))


def _expand_conv_in(unet: UNet2DConditionModel, in_channels: int) -> UNet2DConditionModel:
    """A copy of ``unet`` taking ``in_channels`` inputs; the new input channels start at zero (as Zero-1-to-3
    extended the image-variation UNet for the concatenated image latent), so the model's output is unchanged."""
    config = dict(unet.config)
    config["in_channels"] = in_channels
    wider = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    old = state.pop("conv_in.weight")
    new = torch.zeros(old.shape[0], in_channels, *old.shape[2:], dtype=old.dtype)
    new[:, : old.shape[1]] = old
    state["conv_in.weight"] = new
    wider.load_state_dict(state)
    return wider


def load_training_components(model_path: str | os.PathLike, projection_init: str = "auto") -> TrainingComponents:
    """Load the model training starts from.

    Args:
        model_path: a Zero-1-to-3 folder in any published layout (loaded with
            :func:`~z123_ros.novel_views.load_zero123`, so every check applies), or a diffusers Stable Diffusion
            image-variation folder (``unet/`` with 4 input channels, ``vae/``, ``image_encoder/``, ``scheduler/``),
            whose UNet is widened to 8 input channels and which gets a fresh camera projection.
        projection_init: "auto" (load the folder's projection, identity-initialise when it has none) or "identity"
            (always the paper's initialisation: identity on the CLIP part, zero pose columns and bias).
    """
    if projection_init not in ("auto", "identity"):
        raise ModelLoadError(f"projection_init must be 'auto' or 'identity', got {projection_init!r}")
    folder = Path(model_path).expanduser()
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist or is not a directory")
    if _is_zero123_folder(folder):
        layout = detect_layout(folder)
        pipe = load_zero123(folder, device="cpu", dtype=torch.float32, progress_bar=False)
        vae, image_encoder, unet, projection = pipe.vae, pipe.image_encoder, pipe.unet, pipe.projection
        stable, layout_name = pipe.is_stable_zero123, layout.layout
    else:
        missing = [p for p in ("vae", "image_encoder", "unet", "scheduler") if not (folder / p).is_dir()]
        if missing:
            raise ModelLoadError(
                f"model folder {folder} is neither a Zero-1-to-3 model nor a Stable Diffusion image-variation model: "
                f"missing {', '.join(p + '/' for p in missing)}"
            )
        try:
            vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", use_safetensors=True)
            unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", use_safetensors=True)
            image_encoder = CLIPVisionModelWithProjection.from_pretrained(
                folder / "image_encoder", use_safetensors=True
            )
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(
                f"cannot load the image-variation model in {folder} ({type(exc).__name__}: {exc}); weights are read "
                "from safetensors only (convert .bin files with `python -m z123_ros.novel_views.convert FOLDER`)"
            ) from exc
        latent = vae.config.latent_channels
        if unet.config.in_channels == latent:
            unet = _expand_conv_in(unet, 2 * latent)
        elif unet.config.in_channels != 2 * latent:
            raise ModelLoadError(f"unet/ of {folder} has {unet.config.in_channels} input channels; expected {latent}")
        clip_dim = int(image_encoder.config.projection_dim)
        if unet.config.cross_attention_dim != clip_dim:
            raise ModelLoadError(f"unet/ cross_attention_dim {unet.config.cross_attention_dim} != CLIP size {clip_dim}")
        projection = CameraProjection.identity_init(clip_dim)
        stable, layout_name = False, "kxic"
        projection_init = "loaded-fresh"
    fresh = projection_init in ("identity", "loaded-fresh")
    if projection_init == "identity":
        projection = CameraProjection.identity_init(int(image_encoder.config.projection_dim))
    scheduler = build_scheduler(folder, "ddim")
    return TrainingComponents(
        vae=vae.float().eval().requires_grad_(False),
        image_encoder=image_encoder.float().eval().requires_grad_(False),
        unet=unet.float().train(),
        projection=projection.float().train(),
        noise_scheduler=DDPMScheduler.from_config(scheduler.config),
        scheduler_config=dict(scheduler.config),
        stable_zero123=stable,
        layout=layout_name,
        source=folder,
        projection_initialised=fresh,
    )


def _save_frozen(parts: TrainingComponents, folder: Path) -> None:
    """VAE, CLIP, feature extractor config and sampling scheduler: written once per run, linked into checkpoints."""
    from diffusers import DDIMScheduler

    parts.vae.save_pretrained(folder / "vae", safe_serialization=True)
    parts.image_encoder.save_pretrained(folder / "image_encoder", safe_serialization=True)
    DDIMScheduler.from_config(parts.scheduler_config).save_pretrained(folder / "scheduler")
    size = int(parts.image_encoder.config.image_size)
    write_json(
        folder / "feature_extractor" / "preprocessor_config.json",
        {
            "crop_size": {"height": size, "width": size},
            "do_center_crop": True,
            "do_normalize": True,
            "do_resize": True,
            "image_mean": list(CLIP_MEAN),
            "image_processor_type": "CLIPImageProcessor",
            "image_std": list(CLIP_STD),
            "resample": 3,
            "size": {"shortest_edge": size},
        },
    )


def _link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` into ``dst`` (copy where the filesystem cannot link)."""
    for path in src.rglob("*"):
        if path.is_file():
            target = dst / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target)
            except OSError:
                shutil.copy2(path, target)


def write_model_folder(
    folder: Path,
    parts: TrainingComponents,
    unet: UNet2DConditionModel,
    projection: CameraProjection,
    layout: str,
    frozen_cache: Path,
) -> None:
    """Write a complete Zero-1-to-3 folder (``layout`` "kxic" or "diffusers") with the given trained weights."""
    if not (frozen_cache / "vae").is_dir():
        tmp = frozen_cache.with_name(frozen_cache.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _save_frozen(parts, tmp)
        tmp.rename(frozen_cache)
    for part in _FROZEN_PARTS:
        _link_tree(frozen_cache / part, folder / part)
    unet.save_pretrained(folder / "unet", safe_serialization=True)

    write_projection_and_index(
        folder,
        layout,
        projection.linear.weight,
        projection.linear.bias,
        register_sizes=True,
        # How the loader recognises the Stable Zero123 pose convention (see z123_ros.novel_views.loading).
        name_or_path="stable-zero123-finetuned" if parts.stable_zero123 else None,
    )


def latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The newest complete checkpoint under ``output_dir/checkpoints`` (None when there is none)."""
    root = Path(output_dir) / "checkpoints"
    candidates = sorted(p for p in root.glob("step-*") if (p / "training_state" / "state.json").is_file())
    return candidates[-1] if candidates else None


def prune_checkpoints(output_dir: Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints (keep <= 0 keeps all)."""
    if keep <= 0:
        return
    root = output_dir / "checkpoints"
    complete = sorted(p for p in root.glob("step-*") if (p / "training_state" / "state.json").is_file())
    for old in complete[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
