"""Zero-1-to-3 novel-view synthesis (Liu et al., ICCV 2023) as a diffusers pipeline.

Reads top to bottom like a diffusers pipeline file: components registered in ``__init__``, ``check_inputs``,
numbered steps in ``__call__``, a ``generator`` argument and an output dataclass. The conventions (pinned by
tests/test_novel_views_*.py; sources: the reference implementation cvlab-columbia/zero123 and the diffusers
community port):

- one cross-attention token: ``projection([CLIP image embedding (clip_dim), pose (4)])``;
- pose ``[d_polar rad, sin d_az, cos d_az, d_radius]`` from :func:`z123_ros.camera.zero123_pose_vector`; Stable Zero123
  puts the absolute polar angle of the input view (rad) in the 4th entry instead of ``d_radius``;
- the input image's VAE latent ``latent_dist.mode()``, NOT multiplied by the scaling factor, concatenated on channels
  with the noisy latent (8 UNet input channels);
- classifier-free guidance with an unconditional branch of zeros after the projection and a zero concat latent,
  scale 3.0; DDIM, 50 steps, eta 1.0 (the original demo's settings).

Many target views of one input run in one call: the image conditioning is computed once, then at every step the
views (times the two guidance branches) go through the UNet in batches of at most ``max_views_per_batch`` views.
The score-distillation hooks (:meth:`encode_condition`, :meth:`guided_noise`, :meth:`encode_latents`,
:meth:`decode_latents`) expose the same model to the SJC reconstruction.
"""

from __future__ import annotations

import inspect
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F  # noqa: N812 (the universal torch idiom)
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.schedulers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from transformers import CLIPVisionModelWithProjection

from z123_ros.camera import zero123_pose_vector
from z123_ros.errors import InputError
from z123_ros.novel_views.clip import clip_preprocess
from z123_ros.novel_views.loading import load_components
from z123_ros.novel_views.preprocess import Zero123Input
from z123_ros.novel_views.projection import POSE_DIM, CameraProjection

logger = logging.getLogger(__name__)

#: A target view relative to the input view: (d_polar_deg, d_azimuth_deg, d_radius).
View = tuple[float, float, float]

#: Image types the pipeline accepts: (H, W, 3|4) uint8 or float in [0, 1], a PIL image, a (3|1x3, H, W) float tensor
#: in [0, 1], or the output of :func:`~z123_ros.novel_views.preprocess_for_zero123`.
ImageInput = np.ndarray | PIL.Image.Image | torch.Tensor | Zero123Input

#: Polar angle assumed for the input view of Stable Zero123 when none is given (what the diffusers ports hard-code).
DEFAULT_STABLE_INPUT_POLAR_DEG = 90.0

_OUTPUT_TYPES = ("np", "pil", "pt", "latent")


@dataclass
class Zero123Condition:
    """The input view's conditioning, computed once and shared by every target view, step and SDS iteration."""

    #: (1, 1, clip_dim) CLIP image embedding of the input (before the camera projection).
    clip_embeds: torch.Tensor
    #: (1, 4, h, w) VAE ``latent_dist.mode()`` of the input in [-1, 1], NOT multiplied by the scaling factor.
    image_latents: torch.Tensor
    #: Absolute polar angle of the input view in degrees (0 = from above, 90 = level), when known.
    input_polar_deg: float | None = None


@dataclass
class NovelViewOutput:
    """Result of one :class:`Zero123Pipeline` call."""

    #: The views: (N, H, W, 3) float32 in [0, 1] for ``output_type="np"``, a list of PIL images for ``"pil"``,
    #: a (N, 3, H, W) tensor in [0, 1] for ``"pt"``, (N, 4, h, w) scaled latents for ``"latent"``.
    images: np.ndarray | list[PIL.Image.Image] | torch.Tensor
    #: The requested views, (d_polar_deg, d_azimuth_deg, d_radius), in output order.
    views: list[View] = field(default_factory=list)
    #: (N, 4) pose vectors the UNet was conditioned on.
    pose_vectors: np.ndarray | None = None
    #: Input-view polar angle used (degrees); None when the model does not need it.
    input_polar_deg: float | None = None
    #: Wall time of the call in seconds.
    seconds: float = 0.0


class Zero123Pipeline(DiffusionPipeline):
    """Zero-1-to-3 / Stable Zero123 novel-view synthesis.

    Build it with :func:`~z123_ros.novel_views.load_zero123` (any published folder layout or hub id).

    Args:
        vae: SD v1 AutoencoderKL (1/8 latents, 4 channels).
        image_encoder: CLIP ViT-L/14 vision tower with projection (``image_embeds`` of size ``clip_dim``).
        unet: UNet2DConditionModel with 8 input channels, 4 output channels, cross-attention dim ``clip_dim``.
        scheduler: a diffusers scheduler with the model's training schedule (DDIM by default).
        projection: the ``clip_dim + 4 -> clip_dim`` camera projection.
        stable_zero123: True for Stable Zero123 (4th pose entry = absolute polar of the input view).
    """

    model_cpu_offload_seq = "image_encoder->projection->unet->vae"

    def __init__(
        self,
        vae: AutoencoderKL,
        image_encoder: CLIPVisionModelWithProjection,
        unet: UNet2DConditionModel,
        scheduler: SchedulerMixin,
        projection: CameraProjection,
        stable_zero123: bool = False,
    ):
        super().__init__()
        self.register_modules(
            vae=vae, image_encoder=image_encoder, unet=unet, scheduler=scheduler, projection=projection
        )
        self.register_to_config(stable_zero123=bool(stable_zero123))
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> Zero123Pipeline:
        """Same as :func:`~z123_ros.novel_views.load_zero123` (never the custom class named in model_index.json).

        Accepts ``torch_dtype`` as diffusers does, plus every keyword of ``load_zero123``.
        """
        if "torch_dtype" in kwargs:
            kwargs["dtype"] = kwargs.pop("torch_dtype")
        progress_bar = kwargs.pop("progress_bar", True)
        pipe = cls(**load_components(pretrained_model_name_or_path, **kwargs))
        pipe.set_progress_bar_config(disable=not progress_bar)
        return pipe.to(torch.device(kwargs.get("device", "cpu")))

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def image_size(self) -> int:
        """Side of the square images the model reads and writes (256 for the published models)."""
        return int(self.unet.config.sample_size) * self.vae_scale_factor

    @property
    def latent_size(self) -> int:
        return int(self.unet.config.sample_size)

    @property
    def is_stable_zero123(self) -> bool:
        return bool(self.config.stable_zero123)

    @property
    def model_dtype(self) -> torch.dtype:
        return self.unet.dtype

    # ------------------------------------------------------------------------------------------- input handling
    def _image_tensor(self, image: ImageInput) -> torch.Tensor:
        """Any accepted image -> (1, 3, S, S) float32 in [-1, 1] on the execution device (white behind alpha)."""
        if isinstance(image, Zero123Input):
            image = image.image
        if isinstance(image, PIL.Image.Image):
            image = np.asarray(image.convert("RGBA" if "A" in image.getbands() else "RGB"))
        if isinstance(image, np.ndarray):
            if image.ndim != 3 or image.shape[2] not in (3, 4):
                raise InputError(f"image must be (H, W, 3) RGB or (H, W, 4) RGBA, got shape {image.shape}")
            if image.dtype == np.uint8:
                x = torch.from_numpy(image.astype(np.float32) / 255.0)
            elif np.issubdtype(image.dtype, np.floating):
                x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
            else:
                raise InputError(f"image must be uint8 or float in [0, 1], got dtype {image.dtype}")
            x = x.permute(2, 0, 1)[None]
        elif isinstance(image, torch.Tensor):
            x = image.detach().to(torch.float32)
            if x.ndim == 3:
                x = x[None]
            if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] not in (3, 4):
                raise InputError(f"image tensor must be (3|4, H, W) or (1, 3|4, H, W), got {tuple(image.shape)}")
        else:
            raise InputError(f"image must be a numpy array, PIL image, torch tensor or Zero123Input, got {type(image)}")
        if not torch.isfinite(x).all():
            raise InputError("image contains NaN or inf")
        if x.min() < -1e-3 or x.max() > 1 + 1e-3:
            raise InputError(f"float image values must be in [0, 1], got [{float(x.min()):.3f}, {float(x.max()):.3f}]")
        x = x.clamp(0, 1)
        if x.shape[1] == 4:  # the model was trained on objects over white
            x = x[:, :3] * x[:, 3:] + (1.0 - x[:, 3:])
        size = self.image_size
        if x.shape[-2:] != (size, size):
            if x.shape[-1] != x.shape[-2]:
                logger.warning(
                    "input image is %dx%d, not square: it is stretched to %dx%d; use preprocess_for_zero123 "
                    "to crop and centre the object as the model expects",
                    x.shape[-1],
                    x.shape[-2],
                    size,
                    size,
                )
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x * 2.0 - 1.0).to(self._execution_device)

    def pose_vectors(self, views: Sequence[View], input_polar_deg: float | None = None) -> torch.Tensor:
        """(N, 4) float32 pose vectors for relative ``views``; for Stable Zero123 the 4th entry is the input polar."""
        rows = [zero123_pose_vector(*v) for v in views]
        poses = torch.tensor(np.stack(rows), dtype=torch.float32)
        if self.is_stable_zero123:
            polar = DEFAULT_STABLE_INPUT_POLAR_DEG if input_polar_deg is None else float(input_polar_deg)
            poses[:, 3] = math.radians(polar)
        return poses.to(self._execution_device)

    def check_inputs(
        self,
        views: Sequence[View],
        input_polar_deg: float | None,
        num_inference_steps: int,
        guidance_scale: float,
        max_views_per_batch: int | None,
        output_type: str,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> list[View]:
        """Validate the call arguments; returns the views as float tuples. Raises InputError naming the bad value."""
        if isinstance(views, (str, bytes)) or not isinstance(views, Sequence) or len(views) == 0:
            raise InputError(f"views must be a non-empty list of (d_polar_deg, d_azimuth_deg, d_radius), got {views!r}")
        clean: list[View] = []
        for i, view in enumerate(views):
            try:
                d_polar, d_az, d_radius = (float(v) for v in view)
            except (TypeError, ValueError) as exc:
                raise InputError(f"views[{i}] must be (d_polar_deg, d_azimuth_deg, d_radius), got {view!r}") from exc
            if not all(math.isfinite(v) for v in (d_polar, d_az, d_radius)):
                raise InputError(f"views[{i}] = {view!r} is not finite")
            if not -180.0 <= d_polar <= 180.0:
                raise InputError(f"views[{i}]: d_polar {d_polar} deg is outside [-180, 180]")
            if self.is_stable_zero123 and d_radius != 0.0:
                logger.warning("Stable Zero123 has no radius input: d_radius %.3f of views[%d] is ignored", d_radius, i)
            clean.append((d_polar, d_az, d_radius))
        if input_polar_deg is not None and not (
            math.isfinite(float(input_polar_deg)) and 0.0 <= float(input_polar_deg) <= 180.0
        ):
            raise InputError(f"input_polar_deg must be in [0, 180], got {input_polar_deg}")
        if not isinstance(num_inference_steps, int) or num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be a positive integer, got {num_inference_steps!r}")
        if not (math.isfinite(guidance_scale) and guidance_scale >= 0.0):
            raise InputError(f"guidance_scale must be a finite number >= 0, got {guidance_scale}")
        if max_views_per_batch is not None and (not isinstance(max_views_per_batch, int) or max_views_per_batch < 1):
            raise InputError(f"max_views_per_batch must be None or a positive integer, got {max_views_per_batch!r}")
        if output_type not in _OUTPUT_TYPES:
            raise InputError(f"output_type must be one of {_OUTPUT_TYPES}, got {output_type!r}")
        if isinstance(generator, list) and len(generator) != len(clean):
            raise InputError(
                f"got {len(generator)} generators for {len(clean)} views: pass one per view or a single one"
            )
        return clean

    # --------------------------------------------------------------------------------- score-distillation hooks
    @torch.no_grad()
    def encode_condition(self, image: ImageInput, input_polar_deg: float | None = None) -> Zero123Condition:
        """CLIP embedding and unscaled VAE-mode latent of the input view, computed once.

        ``input_polar_deg`` defaults to the one a :class:`Zero123Input` carries.
        """
        if input_polar_deg is None and isinstance(image, Zero123Input):
            input_polar_deg = image.input_polar_deg
        x = self._image_tensor(image)  # (1, 3, S, S) in [-1, 1]
        encoder_dtype = self.image_encoder.dtype
        pixel_values = clip_preprocess(x, int(self.image_encoder.config.image_size)).to(encoder_dtype)
        clip_embeds = self.image_encoder(pixel_values=pixel_values).image_embeds[:, None, :]  # (1, 1, clip_dim)
        # Zero-1-to-3 concatenates the posterior mode as is: the reference (gradio_new.py) never applies the 0.18215
        # scaling factor to the conditioning latent, only to the latents being denoised.
        image_latents = self.vae.encode(x.to(self.vae.dtype)).latent_dist.mode()  # (1, 4, h, w)
        return Zero123Condition(
            clip_embeds=clip_embeds,
            image_latents=image_latents,
            input_polar_deg=None if input_polar_deg is None else float(input_polar_deg),
        )

    def _tokens(self, cond: Zero123Condition, pose_vectors: torch.Tensor) -> torch.Tensor:
        """(B, 4) pose vectors -> (B, 1, clip_dim) cross-attention tokens."""
        dtype = self.projection.dtype
        clip = cond.clip_embeds.to(dtype).expand(pose_vectors.shape[0], -1, -1)
        return self.projection(torch.cat([clip, pose_vectors.to(dtype)[:, None, :]], dim=-1))

    def _guided_eps(
        self,
        latent_input: torch.Tensor,
        timesteps: torch.Tensor,
        tokens: torch.Tensor,
        image_latents: torch.Tensor,
        guidance_scale: float,
    ) -> torch.Tensor:
        """One UNet pass over both guidance branches of a batch; returns the guided eps in float32."""
        dtype = self.unet.dtype
        latent_input = latent_input.to(dtype)
        tokens = tokens.to(dtype)
        image_latents = image_latents.to(dtype).expand(latent_input.shape[0], -1, -1, -1)
        if guidance_scale > 1.0:
            # Unconditional branch as trained: zero token after the projection and a zero concat latent.
            sample = torch.cat(
                [
                    torch.cat([latent_input, torch.zeros_like(image_latents)], dim=1),
                    torch.cat([latent_input, image_latents], dim=1),
                ]
            )
            hidden = torch.cat([torch.zeros_like(tokens), tokens])
            t = torch.cat([timesteps, timesteps]) if timesteps.ndim == 1 else timesteps
            eps_uncond, eps_cond = self.unet(sample, t, encoder_hidden_states=hidden).sample.float().chunk(2)
            return eps_uncond + guidance_scale * (eps_cond - eps_uncond)
        sample = torch.cat([latent_input, image_latents], dim=1)
        return self.unet(sample, timesteps, encoder_hidden_states=tokens).sample.float()

    @torch.no_grad()
    def guided_noise(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: Zero123Condition,
        pose_vectors: torch.Tensor,
        guidance_scale: float = 3.0,
        max_views_per_batch: int | None = None,
    ) -> torch.Tensor:
        """Classifier-free-guided noise prediction for score distillation (SJC / SDS).

        Args:
            noisy_latents: (B, 4, h, w) scaled latents (x 0.18215) with noise at ``timesteps``.
            timesteps: (B,) integer training timesteps in [0, num_train_timesteps).
            cond: from :meth:`encode_condition`.
            pose_vectors: (B, 4), e.g. from :meth:`pose_vectors`.
            guidance_scale: CFG scale (SJC uses large values, ~100); <= 1 runs the conditional branch only.
            max_views_per_batch: at most this many samples per UNet call (memory knob).

        Returns:
            (B, 4, h, w) float32 eps. No gradient flows through the UNet (score distillation does not need one).
        """
        if noisy_latents.ndim != 4 or noisy_latents.shape[1] != 4:
            raise InputError(f"noisy_latents must be (B, 4, h, w), got {tuple(noisy_latents.shape)}")
        batch = noisy_latents.shape[0]
        timesteps = torch.as_tensor(timesteps, device=noisy_latents.device).reshape(-1)
        if timesteps.numel() == 1:
            timesteps = timesteps.expand(batch)
        if timesteps.shape != (batch,) or tuple(pose_vectors.shape) != (batch, POSE_DIM):
            raise InputError(
                f"got {batch} latents, timesteps {tuple(timesteps.shape)} and pose_vectors {tuple(pose_vectors.shape)}"
            )
        device = self._execution_device
        tokens = self._tokens(cond, pose_vectors.to(device))
        step = batch if max_views_per_batch is None else max_views_per_batch
        out = []
        for s in range(0, batch, step):
            out.append(
                self._guided_eps(
                    noisy_latents[s : s + step].to(device),
                    timesteps[s : s + step].to(device),
                    tokens[s : s + step],
                    cond.image_latents,
                    guidance_scale,
                )
            )
        return torch.cat(out)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 1] -> (B, 4, S/8, S/8) scaled latents (posterior mode x scaling factor).

        Differentiable (no ``no_grad``), so a renderer's images can be pushed through it.
        """
        x = images.to(self.vae.dtype) * 2.0 - 1.0
        return self.vae.encode(x).latent_dist.mode() * self.vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 4, h, w) scaled latents -> (B, 3, 8h, 8w) float32 images in [0, 1]. Differentiable."""
        image = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        return (image.float() / 2.0 + 0.5).clamp(0.0, 1.0)

    # ---------------------------------------------------------------------------------------------- generation
    def _step_kwargs(self, generator: torch.Generator | list[torch.Generator] | None, eta: float) -> dict[str, object]:
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs: dict[str, object] = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    @torch.no_grad()
    def __call__(
        self,
        image: ImageInput | None = None,
        views: Sequence[View] | None = None,
        input_polar_deg: float | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        eta: float = 1.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        max_views_per_batch: int | None = None,
        output_type: str = "np",
        condition: Zero123Condition | None = None,
    ) -> NovelViewOutput:
        """Synthesise the object seen from each of ``views``.

        Args:
            image: the input view (object centred on white, see :func:`preprocess_for_zero123`); not needed when
                ``condition`` is given.
            views: target views relative to the input: (d_polar_deg, d_azimuth_deg, d_radius); positive d_polar moves
                the camera down, d_radius in the training renders' units (radius 1.5-2.2).
            input_polar_deg: absolute polar of the input view; only Stable Zero123 uses it (default 90 with a warning).
                Defaults to the one a :class:`Zero123Input` carries.
            num_inference_steps: denoising steps (50 as in the paper's demo).
            guidance_scale: classifier-free guidance scale (3.0 as in the paper's demo); <= 1 disables guidance.
            eta: DDIM eta (1.0 in the original demo, 0.0 in the diffusers port); ignored by other schedulers.
            generator: one generator for the whole call, or one per view (then each view's result depends only on
                its own generator, so a batched call equals one call per view).
            latents: optional (N, 4, h, w) initial noise instead of drawing it.
            max_views_per_batch: at most this many views per UNet call (each view counts twice with guidance);
                None = all at once. Results do not depend on it.
            output_type: "np", "pil", "pt" or "latent".
            condition: precomputed :meth:`encode_condition` output, to reuse across calls.
        """
        start = time.perf_counter()
        # 1. Check inputs
        views = self.check_inputs(
            views, input_polar_deg, num_inference_steps, guidance_scale, max_views_per_batch, output_type, generator
        )
        if image is None and condition is None:
            raise InputError("pass an input image or a precomputed condition")
        num_views = len(views)
        chunk = num_views if max_views_per_batch is None else max_views_per_batch
        device = self._execution_device

        # 2. Encode the input view once (CLIP embedding + unscaled VAE-mode latent)
        condition, input_polar_deg = self._encode_image(image, condition, input_polar_deg)

        # 3. One cross-attention token per view: projection([CLIP embedding, pose])
        poses = self.pose_vectors(views, input_polar_deg)  # (N, 4)
        tokens = self._tokens(condition, poses)  # (N, 1, clip_dim)

        # 4. Timesteps
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps

        # 5. Initial noise
        latents = self.prepare_latents(num_views, generator, latents, device)
        step_kwargs = self._step_kwargs(generator, eta)

        # 6. Denoising loop: views x guidance branches batched through the UNet; scheduler math in float32
        with self.progress_bar(total=len(timesteps)) as progress:
            for t in timesteps:
                eps = self._batched_eps(latents, t, tokens, condition, guidance_scale, chunk)
                latents = self.scheduler.step(eps, t, latents, **step_kwargs, return_dict=False)[0]
                progress.update()

        # 7. Decode (in the same view batches, the VAE decoder is the memory peak at 256x256)
        images = self._postprocess(latents, output_type, chunk)
        self.maybe_free_model_hooks()
        return NovelViewOutput(
            images=images,
            views=views,
            pose_vectors=poses.cpu().numpy(),
            input_polar_deg=None if input_polar_deg is None else float(input_polar_deg),
            seconds=time.perf_counter() - start,
        )

    def _encode_image(
        self, image: ImageInput | None, condition: Zero123Condition | None, input_polar_deg: float | None
    ) -> tuple[Zero123Condition, float | None]:
        """Step 2: the condition (``condition`` when given) and the input polar angle it implies."""
        if condition is None:
            condition = self.encode_condition(image, input_polar_deg)
        if input_polar_deg is None:
            input_polar_deg = condition.input_polar_deg
        if self.is_stable_zero123 and input_polar_deg is None:
            logger.warning(
                "Stable Zero123 needs the input view's polar angle; assuming %.0f deg (camera level with the object). "
                "Pass input_polar_deg or use preprocess_for_zero123 with the camera pose.",
                DEFAULT_STABLE_INPUT_POLAR_DEG,
            )
        return condition, input_polar_deg

    def prepare_latents(
        self,
        num_views: int,
        generator: torch.Generator | list[torch.Generator] | None,
        latents: torch.Tensor | None,
        device: torch.device,
    ) -> torch.Tensor:
        """Step 5: the initial noise, drawn in float32 for the whole batch (or per view with a list of generators)
        so that neither the batching nor the model dtype changes which noise a view gets; scaled for the scheduler."""
        shape = (num_views, 4, self.latent_size, self.latent_size)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=torch.float32)
        elif tuple(latents.shape) != shape:
            raise InputError(f"latents must have shape {shape}, got {tuple(latents.shape)}")
        return latents.to(device=device, dtype=torch.float32) * self.scheduler.init_noise_sigma

    def _batched_eps(
        self,
        latents: torch.Tensor,
        t: torch.Tensor,
        tokens: torch.Tensor,
        condition: Zero123Condition,
        guidance_scale: float,
        chunk: int,
    ) -> torch.Tensor:
        """Step 6, one timestep: the guided noise prediction of every view, ``chunk`` views per UNet call."""
        model_input = self.scheduler.scale_model_input(latents, t)
        return torch.cat(
            [
                self._guided_eps(
                    model_input[s : s + chunk], t, tokens[s : s + chunk], condition.image_latents, guidance_scale
                )
                for s in range(0, len(latents), chunk)
            ]
        )

    def _postprocess(
        self, latents: torch.Tensor, output_type: str, chunk: int
    ) -> np.ndarray | list[PIL.Image.Image] | torch.Tensor:
        """Step 7: the final latents as ``output_type`` (decoded ``chunk`` views at a time unless "latent")."""
        if output_type == "latent":
            return latents
        decoded = torch.cat([self.decode_latents(latents[s : s + chunk]) for s in range(0, len(latents), chunk)])
        if output_type == "pt":
            return decoded
        array = decoded.permute(0, 2, 3, 1).cpu().numpy()
        return array if output_type == "np" else [PIL.Image.fromarray(to_uint8(a)) for a in array]


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Float image in [0, 1] -> uint8 (round to nearest)."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def load_zero123(
    path_or_id: str | os.PathLike,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | str = torch.float32,
    *,
    stable_zero123: bool | None = None,
    scheduler: str = "ddim",
    revision: str | None = None,
    progress_bar: bool = True,
) -> Zero123Pipeline:
    """Load a Zero-1-to-3 / Stable Zero123 model from a local folder or a hub id.

    Args:
        path_or_id: a folder in any published layout, or a hub id such as ``"bennyguo/zero123-xl-diffusers"``.
        device: "cpu", "cuda", "cuda:1", ...
        dtype: torch.float32 / float16 / bfloat16 or "fp32" / "fp16" / "bf16".
        stable_zero123: force (True) or forbid (False) the Stable Zero123 pose convention; None = detect by name.
        scheduler: one of :data:`~z123_ros.novel_views.loading.SCHEDULERS` (default DDIM, as the paper samples).
        revision: hub revision (branch, tag, commit or ``refs/pr/N``) when ``path_or_id`` is a hub id.
        progress_bar: show a progress bar while sampling.

    Raises:
        ModelLoadError: folder missing, incomplete, malformed, pickle-only, inconsistent sizes, or hub unreachable.
        ConfigError: bad dtype / scheduler / device.
    """
    return Zero123Pipeline.from_pretrained(
        path_or_id,
        device=device,
        dtype=dtype,
        stable_zero123=stable_zero123,
        scheduler=scheduler,
        revision=revision,
        progress_bar=progress_bar,
    )
