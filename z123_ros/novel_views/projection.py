"""The Zero-1-to-3 camera projection: ``Linear(clip_dim + 4 -> clip_dim)`` on ``[CLIP image embedding, pose]``.

Two published spellings of the same layer exist and both load into :class:`CameraProjection`:

- kxic/zero123-* (``cc_projection/``): the diffusers port's ``CCProjection``, weights ``projection.weight/bias``,
  sizes NOT registered in its config.json (so reloading a non-default size fails there);
- bennyguo / ashawkey ``*-diffusers`` (``clip_camera_projection/``): ``CLIPCameraProjection``, weights
  ``proj.weight/bias``, config ``{"embedding_dim": 768, "additional_embeddings": 4}``.

Our module registers ``in_features`` / ``out_features`` in its config and takes the sizes from the weight shapes,
cross-checked against whatever sizes the folder's config.json states. Weights are read from safetensors only.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from safetensors.torch import load_file

from z123_ros.errors import ModelLoadError

logger = logging.getLogger(__name__)

#: Weight-name prefixes of the two published projection classes (kxic CCProjection, bennyguo CLIPCameraProjection).
_PUBLISHED_PREFIXES = ("projection.", "proj.")

#: Number of pose entries appended to the CLIP embedding: [d_polar, sin d_az, cos d_az, d_radius or polar].
POSE_DIM = 4


class CameraProjection(ModelMixin, ConfigMixin):
    """``Linear(in_features -> out_features)``: ``[clip_embedding, pose]`` -> the single cross-attention token."""

    @register_to_config
    def __init__(self, in_features: int = 772, out_features: int = 768):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    @classmethod
    def identity_init(cls, clip_dim: int) -> CameraProjection:
        """The paper's initialisation: identity on the CLIP part, zero on the pose columns, zero bias."""
        module = cls(clip_dim + POSE_DIM, clip_dim)
        with torch.no_grad():
            module.linear.weight.zero_()
            module.linear.weight[:, :clip_dim] = torch.eye(clip_dim)
            module.linear.bias.zero_()
        return module

    def forward(self, clip_and_pose: torch.Tensor) -> torch.Tensor:
        """(B, 1, in_features) -> (B, 1, out_features)."""
        return self.linear(clip_and_pose)


def _stated_sizes(config: dict) -> tuple[int | None, int | None]:
    """Sizes a published projection config.json states, if any: (in_features, out_features)."""
    if "in_features" in config or "out_features" in config:
        return config.get("in_features"), config.get("out_features")
    if "in_channel" in config or "out_channel" in config:  # kxic CCProjection, when someone registered them
        return config.get("in_channel"), config.get("out_channel")
    if "embedding_dim" in config:  # bennyguo CLIPCameraProjection
        dim = int(config["embedding_dim"])
        return dim + int(config.get("additional_embeddings", POSE_DIM)), dim
    return None, None


def load_projection(folder: Path, dtype: torch.dtype = torch.float32) -> CameraProjection:
    """Load a projection folder (``cc_projection/`` or ``clip_camera_projection/``) from safetensors.

    Raises ModelLoadError naming the folder and what is missing or inconsistent.
    """
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"camera projection folder {folder} has no config.json")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelLoadError(f"{config_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ModelLoadError(f"{config_path} must hold a JSON object")

    weight_files = sorted(folder.glob("*.safetensors"))
    if not weight_files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
        if pickles:
            raise ModelLoadError(
                f"camera projection folder {folder} holds only pickle weights ({', '.join(pickles)}); they are not "
                "loaded because unpickling runs code. Convert them to safetensors "
                "(python -m z123_ros.novel_views.convert FOLDER) or use a safetensors revision of the model."
            )
        raise ModelLoadError(f"camera projection folder {folder} has no weights (*.safetensors)")
    try:
        state: dict[str, torch.Tensor] = {}
        for path in weight_files:
            state.update(load_file(str(path)))
    except (OSError, ValueError, RuntimeError) as exc:  # safetensors raises SafetensorError (a ValueError/OSError)
        raise ModelLoadError(f"cannot read camera projection weights in {folder}: {exc}") from exc

    for prefix in (*_PUBLISHED_PREFIXES, "linear."):
        if f"{prefix}weight" in state and f"{prefix}bias" in state:
            weight, bias = state[f"{prefix}weight"], state[f"{prefix}bias"]
            break
    else:
        raise ModelLoadError(
            f"camera projection weights in {folder} have none of the published names "
            f"(projection.weight/bias, proj.weight/bias); found {sorted(state)[:6]}"
        )
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ModelLoadError(
            f"camera projection weights in {folder} have shapes {tuple(weight.shape)}, {tuple(bias.shape)}"
        )
    out_features, in_features = (int(s) for s in weight.shape)
    if in_features != out_features + POSE_DIM:
        raise ModelLoadError(
            f"camera projection in {folder} maps {in_features} -> {out_features}; Zero-1-to-3 needs "
            f"clip_dim + {POSE_DIM} -> clip_dim"
        )
    stated_in, stated_out = _stated_sizes(config)
    if (stated_in is not None and stated_in != in_features) or (stated_out is not None and stated_out != out_features):
        raise ModelLoadError(
            f"{config_path} states sizes {stated_in} -> {stated_out}, the weights are {in_features} -> {out_features}"
        )
    module = CameraProjection(in_features, out_features)
    with torch.no_grad():
        module.linear.weight.copy_(weight)
        module.linear.bias.copy_(bias)
    # nn.Module.to on the layer: ModelMixin.to warns about dtype casts meant for from_pretrained models.
    module.linear.to(dtype)
    return module
