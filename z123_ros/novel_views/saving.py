"""Writing the camera projection and model_index.json of a Zero-1-to-3 folder in a published layout.

Shared by the tiny test models (``testing.save_tiny_zero123``) and training checkpoints
(``z123_ros.training.checkpoint``), so both produce folders the loader reads through the same code path.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import save_file

from z123_ros.novel_views.projection import POSE_DIM

#: The diffusers version the published folders name; only recorded, never checked.
DIFFUSERS_VERSION = "0.21.0"


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def write_projection_and_index(
    folder: Path,
    layout: Literal["kxic", "diffusers"],
    weight: torch.Tensor,
    bias: torch.Tensor,
    *,
    register_sizes: bool,
    name_or_path: str | None = None,
) -> None:
    """Write ``<projection dir>/{config.json, diffusion_pytorch_model.safetensors}`` and ``model_index.json``.

    ``layout`` "kxic" (kxic/zero123-*: cc_projection/, class Zero1to3StableDiffusionPipeline) or "diffusers"
    (bennyguo / ashawkey: clip_camera_projection/, class Zero123Pipeline). ``weight`` (D, D + 4), ``bias`` (D,).
    ``register_sizes`` adds in/out sizes to the kxic config, which the published one lacks (its CCProjection never
    registered them, so a non-default size could not be reloaded). ``name_or_path`` is recorded in model_index.json:
    the loader recognises Stable Zero123 by it.
    """
    clip_dim = weight.shape[0]
    if layout == "diffusers":
        projection_dir, prefix = "clip_camera_projection", "proj"
        projection_class = ["zero123", "CLIPCameraProjection"]
        config = {"_class_name": "CLIPCameraProjection", "additional_embeddings": POSE_DIM, "embedding_dim": clip_dim}
        pipeline_class = "Zero123Pipeline"
    else:
        projection_dir, prefix = "cc_projection", "projection"
        projection_class = ["pipeline_zero1to3", "CCProjection"]
        config = {"_class_name": "CCProjection"}
        if register_sizes:
            config |= {"in_channel": clip_dim + POSE_DIM, "out_channel": clip_dim}
        pipeline_class = "Zero1to3StableDiffusionPipeline"
    config["_diffusers_version"] = DIFFUSERS_VERSION
    write_json(folder / projection_dir / "config.json", config)
    save_file(
        {
            f"{prefix}.weight": weight.detach().float().contiguous().cpu(),
            f"{prefix}.bias": bias.detach().float().contiguous().cpu(),
        },
        str(folder / projection_dir / "diffusion_pytorch_model.safetensors"),
    )
    model_index = {
        "_class_name": pipeline_class,
        "_diffusers_version": DIFFUSERS_VERSION,
        projection_dir: projection_class,
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "image_encoder": ["transformers", "CLIPVisionModelWithProjection"],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DDIMScheduler"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if name_or_path is not None:
        model_index["_name_or_path"] = name_or_path
    write_json(folder / "model_index.json", model_index)
