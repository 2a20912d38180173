"""Load the parts of any published Zero-1-to-3 checkpoint folder (or hub id); ``load_zero123`` (in
:mod:`z123_ros.novel_views.pipeline`) assembles them into a ``Zero123Pipeline``.

The components are loaded one by one with their own diffusers / transformers classes. ``model_index.json`` names a
custom pipeline class (``Zero1to3StableDiffusionPipeline`` or ``Zero123Pipeline``) whose code lives outside diffusers;
``DiffusionPipeline.from_pretrained`` on it breaks whenever diffusers changes, and would run code from the folder.
Nothing from the folder is executed and weights are read from safetensors only (pickle ``.bin`` files are refused;
:mod:`z123_ros.novel_views.convert` converts them with ``torch.load(weights_only=True)``).

Layouts: ``cc_projection/`` (kxic/zero123-105000, -165000, -xl, stable-zero123) or ``clip_camera_projection/``
(bennyguo / ashawkey ``*-diffusers``), plus vae/ image_encoder/ unet/ scheduler/ (feature_extractor/ is not used).

Stable Zero123 (4th pose entry = absolute polar of the input view) has the same architecture and files as
Zero-1-to-3, so nothing in the weights tells them apart. As the ports do (dreamgaussian: ``'stable' in model_key``),
it is recognised by name: the hub id, the folder path or a ``_name_or_path`` in model_index.json / unet/config.json
matching ``stable[-_ ]zero123``. Pass ``stable_zero123=True/False`` to override.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    UNet2DConditionModel,
)
from transformers import CLIPVisionModelWithProjection

from z123_ros.errors import ConfigError, ModelLoadError
from z123_ros.novel_views.projection import POSE_DIM, load_projection

logger = logging.getLogger(__name__)

#: Schedulers selectable by name; all are built from the folder's scheduler config (the training schedule).
SCHEDULERS = {
    "ddim": DDIMScheduler,
    "ddpm": DDPMScheduler,
    "pndm": PNDMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
    "dpm++": DPMSolverMultistepScheduler,
}

#: Accepted names for the dtype argument.
DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}

_PROJECTION_DIRS = ("cc_projection", "clip_camera_projection")
_STABLE_NAME = re.compile(r"(?<![a-z])stable[-_ ]?zero123", re.IGNORECASE)
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


@dataclass(frozen=True)
class ModelLayout:
    """What :func:`detect_layout` found in a model folder."""

    #: The model folder.
    folder: Path
    #: "kxic" (cc_projection/) or "diffusers" (clip_camera_projection/).
    layout: str
    #: Name of the projection sub-folder.
    projection_dir: str
    #: The pipeline class model_index.json names (informational; never imported).
    pipeline_class: str | None
    #: Whether the names mark the model as Stable Zero123.
    stable_zero123: bool


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not a readable JSON file: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def _check_weights(folder: Path, part: str) -> None:
    """Raise ModelLoadError unless ``folder/part`` has config.json and safetensors weights."""
    sub = folder / part
    if not (sub / "config.json").is_file():
        raise ModelLoadError(f"model folder {folder}: {part}/config.json is missing")
    if any(sub.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in sub.iterdir() if p.suffix in _PICKLE_SUFFIXES)
    if pickles:
        raise ModelLoadError(
            f"model folder {folder}: {part}/ holds only pickle weights ({', '.join(pickles)}). They are not loaded "
            "because unpickling can run code. Convert them once with "
            f"`python -m z123_ros.novel_views.convert {folder}` or download a safetensors revision."
        )
    raise ModelLoadError(
        f"model folder {folder}: {part}/ has no weights (*.safetensors; pickle .bin/.ckpt files are never read)"
    )


def detect_layout(folder: str | os.PathLike, name_hint: str | None = None) -> ModelLayout:
    """Check a model folder and tell its layout; raises ModelLoadError naming everything that is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelLoadError(f"model folder {folder} does not exist or is not a directory")
    missing = [f"{p}/" for p in ("vae", "image_encoder", "unet", "scheduler") if not (folder / p).is_dir()]
    projection_dirs = [p for p in _PROJECTION_DIRS if (folder / p).is_dir()]
    if not projection_dirs:
        missing.append("cc_projection/ or clip_camera_projection/ (the 772->768 camera projection)")
    if missing:
        raise ModelLoadError(
            f"model folder {folder} is not a Zero-1-to-3 model: missing {', '.join(missing)}. Expected the published "
            "layout (vae/ image_encoder/ unet/ scheduler/ and cc_projection/ or clip_camera_projection/)."
        )
    if len(projection_dirs) > 1:
        logger.warning(
            "model folder %s has both cc_projection/ and clip_camera_projection/; using cc_projection/", folder
        )
    projection_dir = projection_dirs[0]
    for part in ("vae", "image_encoder", "unet"):
        _check_weights(folder, part)
    if not (folder / "scheduler" / "scheduler_config.json").is_file():
        raise ModelLoadError(f"model folder {folder}: scheduler/scheduler_config.json is missing")

    names = [str(folder.resolve()), name_hint or ""]
    pipeline_class = None
    if (folder / "model_index.json").is_file():
        index = _read_json(folder / "model_index.json")
        pipeline_class = index.get("_class_name")
        names.append(str(index.get("_name_or_path", "")))
    names.append(str(_read_json(folder / "unet" / "config.json").get("_name_or_path", "")))
    stable = any(_STABLE_NAME.search(n) for n in names)
    return ModelLayout(
        folder=folder,
        layout="kxic" if projection_dir == "cc_projection" else "diffusers",
        projection_dir=projection_dir,
        pipeline_class=pipeline_class,
        stable_zero123=stable,
    )


def _looks_local(text: str) -> bool:
    return text.startswith(("/", ".", "~")) or os.sep in text.strip("/").replace("/", "", 1) or "\\" in text


def resolve_model_folder(path_or_id: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder as is; a hub id ``owner/name`` through ``huggingface_hub.snapshot_download``.

    Only config, text and safetensors files are fetched. Offline (HF_HUB_OFFLINE=1 or no network) a hub id resolves
    only from the local cache, else ModelLoadError says so.
    """
    text = os.fspath(path_or_id)
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"model path {path} is a file; pass the model folder (with unet/, vae/, ...)")
    if _looks_local(text) or not _HUB_ID.fullmatch(text):
        raise ModelLoadError(
            f"model folder {path} does not exist (and {text!r} is not a hub id of the form owner/name)"
        )

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return Path(
            snapshot_download(repo_id=text, revision=revision, allow_patterns=["*.json", "*.txt", "*.safetensors"])
        )
    except (HfHubHTTPError, OSError, ValueError, ConnectionError) as exc:
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on")
        hint = (
            "HF_HUB_OFFLINE is set and the model is not in the local cache"
            if offline
            else "the hub could not be reached or the repository does not exist"
        )
        raise ModelLoadError(
            f"cannot fetch model {text!r} from the Hugging Face hub: {hint} ({type(exc).__name__}: {exc}). "
            "Download it where the hub is reachable and pass the local folder."
        ) from exc


def _dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ConfigError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        return dtype
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    return DTYPES[dtype]


def build_scheduler(folder: Path, name: str = "ddim"):
    """The named scheduler built from ``folder/scheduler`` with the Zero-1-to-3 port's fixes applied."""
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {name!r}")
    config = dict(_read_json(folder / "scheduler" / "scheduler_config.json"))
    # The port forces these (old SD configs shipped steps_offset=0 / clip_sample=True); the model was used with them.
    for key, value in (("steps_offset", 1), ("clip_sample", False)):
        if key in config and config[key] != value:
            logger.warning(
                "scheduler config of %s has %s=%s; using %s as Zero-1-to-3 does", folder, key, config[key], value
            )
        config[key] = value
    try:
        return SCHEDULERS[name].from_config(config)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(f"scheduler config in {folder / 'scheduler'} is malformed: {exc}") from exc


def load_components(
    path_or_id: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    *,
    stable_zero123: bool | None = None,
    scheduler: str = "ddim",
    revision: str | None = None,
) -> dict:
    """The keyword arguments of ``Zero123Pipeline(...)`` (vae, image_encoder, unet, scheduler, projection,
    stable_zero123), loaded from a folder or hub id and checked to fit together; the arguments and errors are those
    of :func:`z123_ros.novel_views.load_zero123` (``device`` is only checked here, the pipeline moves there)."""
    torch_dtype = _dtype(dtype)
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch sees no CUDA device (CPU-only torch build or no GPU)")
    if device.type == "cpu" and torch_dtype == torch.float16:
        logger.warning("float16 on the CPU is slow and poorly supported; prefer bf16 or fp32 there")

    folder = resolve_model_folder(path_or_id, revision)
    layout = detect_layout(folder, name_hint=os.fspath(path_or_id))
    stable = layout.stable_zero123 if stable_zero123 is None else bool(stable_zero123)
    logger.info(
        "loading %s (%s layout, %s) as %s on %s",
        folder,
        layout.layout,
        "Stable Zero123" if stable else "Zero-1-to-3",
        torch_dtype,
        device,
    )

    def load(part: str, loader):
        try:
            return loader()
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"model folder {folder}: cannot load {part}/: {type(exc).__name__}: {exc}") from exc

    vae = load(
        "vae",
        lambda: AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=torch_dtype, use_safetensors=True),
    )
    unet = load(
        "unet",
        lambda: UNet2DConditionModel.from_pretrained(
            folder, subfolder="unet", torch_dtype=torch_dtype, use_safetensors=True
        ),
    )
    image_encoder = load(
        "image_encoder",
        lambda: CLIPVisionModelWithProjection.from_pretrained(
            folder / "image_encoder", dtype=torch_dtype, use_safetensors=True
        ),
    )
    projection = load_projection(folder / layout.projection_dir, torch_dtype)
    sched = build_scheduler(folder, scheduler)

    _check_parts_fit(folder, layout, vae, unet, image_encoder, projection)
    return {
        "vae": vae.eval(),
        "image_encoder": image_encoder.eval(),
        "unet": unet.eval(),
        "scheduler": sched,
        "projection": projection.eval(),
        "stable_zero123": stable,
    }


def _check_parts_fit(folder: Path, layout: ModelLayout, vae, unet, image_encoder, projection) -> None:
    """Raise ModelLoadError naming every part whose sizes do not fit the others the Zero-1-to-3 way."""
    clip_dim = int(image_encoder.config.projection_dim)
    problems = []
    if (
        unet.config.in_channels != 2 * vae.config.latent_channels
        or unet.config.out_channels != vae.config.latent_channels
    ):
        problems.append(
            f"unet/ has {unet.config.in_channels} input / {unet.config.out_channels} output channels; Zero-1-to-3 "
            f"needs {2 * vae.config.latent_channels} / {vae.config.latent_channels} (noisy latent + image latent)"
        )
    if projection.config.out_features != clip_dim or projection.config.in_features != clip_dim + POSE_DIM:
        problems.append(
            f"{layout.projection_dir}/ maps {projection.config.in_features} -> {projection.config.out_features} but "
            f"image_encoder/ embeds to {clip_dim} (needs {clip_dim + POSE_DIM} -> {clip_dim})"
        )
    if unet.config.cross_attention_dim != clip_dim:
        problems.append(
            f"unet/ cross_attention_dim {unet.config.cross_attention_dim} != CLIP embedding size {clip_dim}"
        )
    if problems:
        raise ModelLoadError(f"model folder {folder} is inconsistent: " + "; ".join(problems))
