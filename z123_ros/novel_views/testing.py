"""Random-weight Zero-1-to-3 models in the exact published folder layouts, for tests and benchmarks.

No Zero-1-to-3 weights can be downloaded here, so tests build a model with the real architecture's wiring (8-channel
UNet, single-token cross-attention, CLIP vision tower with projection, 4 pose entries, SD VAE with a 1/8 latent)
but tiny widths, save it in a published layout and load it back through :func:`~z123_ros.novel_views.load_zero123`,
the same code path a user's real folder takes.

Layouts (folder and file names as published):

- ``"kxic"``: kxic/zero123-105000, -165000, -xl: ``cc_projection/`` (``CCProjection``, sizes not in its config),
  model_index.json class ``Zero1to3StableDiffusionPipeline``.
- ``"diffusers"``: bennyguo/zero123-xl-diffusers, ashawkey/zero123-xl-diffusers: ``clip_camera_projection/``
  (``CLIPCameraProjection`` with ``embedding_dim`` / ``additional_embeddings``), class ``Zero123Pipeline``.
- ``"stable"``: kxic/stable-zero123: the kxic layout with ``_name_or_path`` naming the Stable Zero123 repository,
  which is how the loader tells Stable Zero123 (4th pose entry = absolute input polar) from Zero-1-to-3.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from z123_ros.novel_views.clip import CLIP_MEAN, CLIP_STD
from z123_ros.novel_views.projection import POSE_DIM
from z123_ros.novel_views.saving import write_json, write_projection_and_index

Layout = Literal["kxic", "diffusers", "stable"]
Size = Literal["tiny", "real"]

#: diffusers version string written into the tiny configs (the published folders were saved with 0.19-0.21).

#: The DDIM settings of the diffusers Zero-1-to-3 port (its scheduler_config.json).
SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="epsilon",
)


def vae_config(size: Size = "tiny") -> dict:
    """AutoencoderKL config: SD v1 VAE (real) or a 4-level, 1/8-latent miniature (tiny, 64x64 images)."""
    if size == "real":
        return dict(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(128, 256, 512, 512),
            layers_per_block=2,
            latent_channels=4,
            norm_num_groups=32,
            sample_size=256,
            scaling_factor=0.18215,
        )
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
        scaling_factor=0.18215,
    )


def unet_config(size: Size = "tiny") -> dict:
    """UNet2DConditionModel config: 8 input channels (noisy latent + image latent), 4 out, one cross-attn token."""
    if size == "real":
        return dict(
            sample_size=32,
            in_channels=8,
            out_channels=4,
            down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            cross_attention_dim=768,
            attention_head_dim=8,
        )
    return dict(
        sample_size=8,
        in_channels=8,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=8,
    )


def clip_config(size: Size = "tiny") -> CLIPVisionConfig:
    """CLIP vision tower: ViT-L/14 (real) or a 2-layer miniature; both take 224x224 input as OpenAI CLIP does."""
    if size == "real":
        return CLIPVisionConfig(
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
            projection_dim=768,
            hidden_act="quick_gelu",
        )
    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=224,
        patch_size=32,
        projection_dim=32,
        hidden_act="quick_gelu",
    )


def build_components(size: Size = "tiny", seed: int = 0) -> dict:
    """Random-weight components (vae, image_encoder, unet, scheduler, projection) in fp32 on the CPU.

    The global RNG state is left untouched.
    """
    from z123_ros.novel_views.projection import CameraProjection

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**vae_config(size))
        image_encoder = CLIPVisionModelWithProjection(clip_config(size))
        unet = UNet2DConditionModel(**unet_config(size))
        clip_dim = image_encoder.config.projection_dim
        projection = CameraProjection(clip_dim + POSE_DIM, clip_dim)
        if size == "tiny":
            # Random (not identity) pose columns: a tiny model must react to the pose for the tests to mean anything.
            with torch.no_grad():
                projection.linear.weight.normal_(0.0, 0.3)
    return dict(
        vae=vae.eval(),
        image_encoder=image_encoder.eval(),
        unet=unet.eval(),
        scheduler=DDIMScheduler(**SCHEDULER_CONFIG),
        projection=projection.eval(),
    )


def save_tiny_zero123(folder: str | os.PathLike, layout: Layout = "kxic", seed: int = 0, size: Size = "tiny") -> Path:
    """Write a complete random-weight Zero-1-to-3 folder in a published layout and return its path.

    Args:
        folder: destination folder (created; existing files with the same names are overwritten).
        layout: ``"kxic"``, ``"diffusers"`` or ``"stable"`` (see the module docstring).
        seed: seed of the random weights; the same seed writes the same weights.
        size: ``"tiny"`` (UNet ~1 M parameters, 64x64 images, seconds on a CPU) or ``"real"`` (the published
            architecture, 1.25 B parameters: only for GPU benchmarks).
    """
    if layout not in ("kxic", "diffusers", "stable"):
        raise ValueError(f"layout must be 'kxic', 'diffusers' or 'stable', got {layout!r}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    parts = build_components(size, seed)

    parts["vae"].save_pretrained(folder / "vae", safe_serialization=True)
    parts["unet"].save_pretrained(folder / "unet", safe_serialization=True)
    parts["image_encoder"].save_pretrained(folder / "image_encoder", safe_serialization=True)
    parts["scheduler"].save_pretrained(folder / "scheduler")
    image_size = parts["image_encoder"].config.image_size
    # Written as the published folders hold it; the pipeline never uses it (CLIP preprocessing is done in torch the
    # way OpenAI's code does it, which differs slightly from the HF image processor).
    write_json(
        folder / "feature_extractor" / "preprocessor_config.json",
        {
            "crop_size": {"height": image_size, "width": image_size},
            "do_center_crop": True,
            "do_convert_rgb": True,
            "do_normalize": True,
            "do_rescale": True,
            "do_resize": True,
            "feature_extractor_type": "CLIPFeatureExtractor",
            "image_mean": list(CLIP_MEAN),
            "image_processor_type": "CLIPImageProcessor",
            "image_std": list(CLIP_STD),
            "resample": 3,
            "rescale_factor": 1 / 255,
            "size": {"shortest_edge": image_size},
        },
    )

    proj = parts["projection"].linear
    # kxic folders keep the published CCProjection config, which has no sizes.
    write_projection_and_index(
        folder,
        "diffusers" if layout == "diffusers" else "kxic",
        proj.weight,
        proj.bias,
        register_sizes=False,
        name_or_path="kxic/stable-zero123" if layout == "stable" else None,
    )
    return folder
