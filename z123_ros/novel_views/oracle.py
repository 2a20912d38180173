"""``OracleZero123``: a TEST DOUBLE of the Zero-1-to-3 pipeline that knows the true object (a perfect prior).

It answers the calls the learned reconstruction backends make (``__call__`` for novel views, ``guided_noise`` for
score distillation, ``encode_latents`` / ``encode_condition`` / ``pose_vectors``) by rendering the TRUE mesh, so the
backends' pose chain can be checked without weights: a reconstruction from the oracle's views is as good as the
backend's geometry allows, and any disagreement between the oracle's convention and the backend's cameras shows up
as a wrong shape. It is an upper bound of the learned path, never a stand-in for real weights.

The convention it renders in is the one the published models were trained with (cvlab-columbia/zero123, objaverse
renders; pinned in tests/test_oracle_conventions.py against the reference ``get_T``):

- object normalised like the Objaverse renders: centred on its bounding box, longest side = 1 model unit;
- the input camera is the real one, seen from the object centre in a world frame with +z up: polar from +z down,
  azimuth ``atan2(y, x)`` (counter-clockwise seen from above), see :mod:`z123_ros.camera`;
- the input is preprocessed like the training inputs (object cropped, longer side 200/256 of the canvas, centred on
  white): a crop is a zoom, so the input's model radius is ``distance / L * f_virtual / f_crop`` (L = longest side);
- a target view ``(d_polar, d_azimuth, d_radius)`` is the object rendered on white from polar ``polar_in + d_polar``,
  azimuth ``azimuth_in + d_azimuth``, radius ``radius_in + d_radius`` (model units), looking at the centre, world +z up
  in the image, FoV 49.1 deg, NOT cropped (training targets were plain renders).

The "VAE" is a fixed linear map (8x8 average pool of the image in [-1, 1], channels r, g, b and their mean), so a
field of latents can represent it exactly; the score is the ideal noise prediction ``(x_t - sqrt(a) x0) / sqrt(1 - a)``
with ``x0`` the true latent at the requested view. Guidance has no effect: a perfect conditional model needs none,
and the unconditional branch of a perfect model is not defined by one mesh.

Deliberately wrong conventions (``flip_azimuth``, ``flip_polar``, ``radius_scale``) make the double disagree with the
published convention, so tests can prove that the backends notice.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the universal torch idiom)
import trimesh

from z123_ros.camera import (
    CameraIntrinsics,
    cartesian_to_spherical,
    check_rigid,
    invert,
    look_at,
    spherical_to_cartesian,
    zero123_pose_vector,
)
from z123_ros.errors import InputError
from z123_ros.sim.renderer import LightConfig, TinyRenderer

#: Field of view of the Objaverse training renders.
TRAINING_FOV_DEG = 49.1
#: Longer side of the object in a preprocessed input, as a fraction of the canvas (200 px of 256).
OBJECT_FILL = 200.0 / 256.0
#: The oracle's "VAE" downsampling factor (Stable Diffusion's).
LATENT_FACTOR = 8


@dataclass
class OracleCondition:
    """What :meth:`OracleZero123.encode_condition` returns (the backends only pass it back)."""

    image_latents: torch.Tensor
    """(1, 4, h, w) oracle latents of the input image."""
    input_polar_deg: float | None = None
    """Absolute polar angle of the input view (deg), as given."""
    clip_embeds: torch.Tensor | None = None
    """Unused (no CLIP in the oracle); present for interface parity."""


@dataclass
class OracleOutput:
    """Result of one :class:`OracleZero123` call (the fields of ``NovelViewOutput``)."""

    images: np.ndarray | torch.Tensor
    """(N, S, S, 3) float in [0, 1] for ``"np"``, (N, 3, S, S) tensor for ``"pt"``, (N, 4, h, w) for ``"latent"``."""
    views: list[tuple[float, float, float]] = field(default_factory=list)
    """The requested views (d_polar_deg, d_azimuth_deg, d_radius)."""
    pose_vectors: np.ndarray | None = None
    """(N, 4) pose vectors of the views."""
    input_polar_deg: float | None = None
    """Input polar used (deg)."""
    seconds: float = 0.0
    """Wall time of the call."""


def ddpm_alphas_cumprod(num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012):
    """The schedule Zero-1-to-3 was trained with: ``scaled_linear`` betas, cumulative product of ``1 - beta``."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


@dataclass
class _Schedule:
    """The only part of a diffusers scheduler the reconstruction backends read."""

    alphas_cumprod: torch.Tensor


class OracleZero123:
    """Test double of :class:`~z123_ros.novel_views.Zero123Pipeline` rendering the true mesh (see the module docs).

    Args:
        mesh_world: the true object, metres, in a world frame with +z up (e.g. the table frame).
        T_cam_from_world: the input camera's extrinsics (OpenCV camera).
        intrinsics: the input camera's intrinsics (to frame the input like the preprocessing's crop).
        image_size: side of the model's images (256 for the published models; small sizes keep tests fast).
        colour: flat RGB colour of the object in [0, 1].
        light: lighting of the renders (the simulator's default, i.e. the input scene's).
        flip_azimuth: WRONG convention on purpose: render at ``azimuth_in - d_azimuth``.
        flip_polar: WRONG convention on purpose: render at ``polar_in - d_polar``.
        radius_scale: WRONG convention on purpose when != 1: the input's model radius is multiplied by it.
    """

    is_stable_zero123 = False

    def __init__(
        self,
        mesh_world: trimesh.Trimesh,
        T_cam_from_world: np.ndarray,
        intrinsics: CameraIntrinsics,
        image_size: int = 256,
        colour: tuple[float, float, float] = (0.8, 0.3, 0.2),
        light: LightConfig | None = None,
        flip_azimuth: bool = False,
        flip_polar: bool = False,
        radius_scale: float = 1.0,
    ) -> None:
        if image_size % LATENT_FACTOR or image_size < LATENT_FACTOR:
            raise InputError(f"image_size must be a positive multiple of {LATENT_FACTOR}, got {image_size}")
        if not (math.isfinite(radius_scale) and radius_scale > 0):
            raise InputError(f"radius_scale must be a positive number, got {radius_scale}")
        self._image_size = int(image_size)
        self.flip_azimuth, self.flip_polar, self.radius_scale = bool(flip_azimuth), bool(flip_polar), radius_scale
        self.light = light or LightConfig()
        self.scheduler = _Schedule(ddpm_alphas_cumprod())
        lo, hi = mesh_world.bounds
        self.centre = 0.5 * (lo + hi)
        self.unit_m = float(np.max(hi - lo))  # one model unit: the longest side (Objaverse normalisation)
        self._renderer = TinyRenderer()
        self._body = self._renderer.add_mesh(mesh_world.vertices, mesh_world.faces, colour)
        T_world_from_cam = invert(check_rigid(T_cam_from_world, "T_cam_from_world"))
        polar, azimuth, distance = cartesian_to_spherical(T_world_from_cam[:3, 3] - self.centre)
        self.input_view = (polar, azimuth, distance / self.unit_m * self._zoom(T_cam_from_world, intrinsics))
        self.calls: list[int] = []  # views per __call__, for tests

    # ------------------------------------------------------------------------------------------ conventions
    def _zoom(self, T_cam_from_world: np.ndarray, intrinsics: CameraIntrinsics) -> float:
        """f_virtual / f_crop: the crop of the real view seen as a FoV-49.1 camera (a crop is a zoom)."""
        mask = self._renderer.render(intrinsics, T_cam_from_world, light=self.light).body_ids == self._body
        if not mask.any():
            raise InputError("the object is not in the input camera's view")
        v, u = np.nonzero(mask)
        longest_px = max(int(u.max() - u.min()) + 1, int(v.max() - v.min()) + 1)
        canvas = self._image_size
        f_crop = intrinsics.fx * round(canvas * OBJECT_FILL) / longest_px
        return CameraIntrinsics.from_fov(TRAINING_FOV_DEG, canvas, canvas).fx / f_crop

    def target_camera(self, view: Sequence[float]) -> np.ndarray:
        """``T_cam_from_world`` of a relative view (d_polar_deg, d_azimuth_deg, d_radius in model units)."""
        d_polar, d_az, d_radius = (float(x) for x in view)
        polar, azimuth, radius = self.input_view
        polar += -d_polar if self.flip_polar else d_polar
        azimuth += -d_az if self.flip_azimuth else d_az
        radius = radius * self.radius_scale + d_radius
        if radius <= 0:
            raise InputError(f"view {tuple(view)} puts the camera at a non-positive radius {radius:.3f}")
        eye = self.centre + self.unit_m * spherical_to_cartesian(polar, azimuth, radius)
        return invert(look_at(eye, self.centre))

    @staticmethod
    def view_from_pose_vector(pose: Sequence[float]) -> tuple[float, float, float]:
        """Inverse of :func:`~z123_ros.camera.zero123_pose_vector`: ``(d_polar_deg, d_azimuth_deg, d_radius)``."""
        d_polar, s, c, d_radius = (float(x) for x in pose)
        return math.degrees(d_polar), math.degrees(math.atan2(s, c)) % 360.0, d_radius

    # ------------------------------------------------------------------------------------------ interface
    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def latent_size(self) -> int:
        return self._image_size // LATENT_FACTOR

    @property
    def _execution_device(self) -> torch.device:
        return torch.device("cpu")

    def close(self) -> None:
        """Release the renderer (pybullet client)."""
        self._renderer.close()

    def render_views(self, views: Sequence[Sequence[float]]) -> torch.Tensor:
        """(N, 3, S, S) float images in [0, 1] of the true object on white at the relative ``views``."""
        S = self._image_size
        intr = CameraIntrinsics.from_fov(TRAINING_FOV_DEG, S, S)
        images = []
        for view in views:
            buf = self._renderer.render(intr, self.target_camera(view), light=self.light)
            rgb = np.where((buf.body_ids == self._body)[..., None], buf.rgb, 255).astype(np.float32) / 255.0
            images.append(torch.from_numpy(rgb).permute(2, 0, 1))
        return torch.stack(images)

    def pose_vectors(self, views: Sequence[Sequence[float]], input_polar_deg: float | None = None) -> torch.Tensor:
        """(N, 4) pose vectors ``[d_polar rad, sin d_az, cos d_az, d_radius]`` (the published convention)."""
        return torch.tensor(np.stack([zero123_pose_vector(*v) for v in views]), dtype=torch.float32)

    def encode_latents(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) images in [0, 1] -> (B, 4, S/8, S/8) oracle latents (linear, differentiable)."""
        x = F.avg_pool2d(images.float() * 2.0 - 1.0, LATENT_FACTOR)
        return torch.cat([x, x.mean(dim=1, keepdim=True)], dim=1)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, 4, h, w) oracle latents -> (B, 3, 8h, 8w) images in [0, 1] (nearest upsampling of the colour)."""
        x = F.interpolate(latents[:, :3].float(), scale_factor=LATENT_FACTOR, mode="nearest")
        return (x / 2.0 + 0.5).clamp(0.0, 1.0)

    def encode_condition(self, image, input_polar_deg: float | None = None) -> OracleCondition:
        """The input's oracle latents (the oracle renders from the true mesh; the image only fills the interface)."""
        img = getattr(image, "image", image)
        t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        if input_polar_deg is None:
            input_polar_deg = getattr(image, "input_polar_deg", None)
        return OracleCondition(image_latents=self.encode_latents(t), input_polar_deg=input_polar_deg)

    @torch.no_grad()
    def guided_noise(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        cond: OracleCondition,
        pose_vectors: torch.Tensor,
        guidance_scale: float = 3.0,
        max_views_per_batch: int | None = None,
    ) -> torch.Tensor:
        """The ideal noise prediction: ``(x_t - sqrt(a_t) x0) / sqrt(1 - a_t)``, x0 = true latent at each view."""
        views = [self.view_from_pose_vector(p) for p in pose_vectors.detach().cpu().numpy()]
        x0 = self.encode_latents(self.render_views(views)).to(noisy_latents.device)
        if x0.shape != noisy_latents.shape:
            raise InputError(f"noisy_latents {tuple(noisy_latents.shape)} do not match the oracle's {tuple(x0.shape)}")
        a = self.scheduler.alphas_cumprod.to(noisy_latents.device)[torch.as_tensor(timesteps).long().reshape(-1)]
        a = a.reshape(-1, 1, 1, 1)
        return (noisy_latents.float() - a.sqrt() * x0) / (1.0 - a).sqrt()

    @torch.no_grad()
    def __call__(
        self,
        image=None,
        views: Sequence[Sequence[float]] | None = None,
        input_polar_deg: float | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 3.0,
        eta: float = 1.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        max_views_per_batch: int | None = None,
        output_type: str = "np",
        condition: OracleCondition | None = None,
    ) -> OracleOutput:
        """The true object at each relative view (sampling arguments accepted and ignored: the oracle is exact)."""
        start = time.perf_counter()
        if not views:
            raise InputError("views must be a non-empty list of (d_polar_deg, d_azimuth_deg, d_radius)")
        views = [tuple(float(x) for x in v) for v in views]
        self.calls.append(len(views))
        images = self.render_views(views)
        if output_type == "latent":
            out: np.ndarray | torch.Tensor = self.encode_latents(images)
        elif output_type == "pt":
            out = images
        elif output_type == "np":
            out = images.permute(0, 2, 3, 1).numpy()
        else:
            raise InputError(f"output_type must be 'np', 'pt' or 'latent' for the oracle, got {output_type!r}")
        return OracleOutput(
            images=out,
            views=views,
            pose_vectors=self.pose_vectors(views).numpy(),
            input_polar_deg=input_polar_deg,
            seconds=time.perf_counter() - start,
        )
