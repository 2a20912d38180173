"""A voxel radiance field of latent features (SJC / Zero-1-to-3 3D reconstruction) and its volume renderer.

Geometry, renderer and their camera model in one small module (threestudio's "geometry" + "renderer"): a cubic grid
of 4 latent channels + 1 density over ``[-bound, bound]^3`` in the object frame (+z up, object about a unit cube),
rendered with differentiable alpha compositing into latent images, opacity and depth. The guidance (score
distillation) lives in sjc.py, the multiview fit in multiview.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the universal torch idiom)
from torch import nn

from z123_ros.camera import CameraIntrinsics, orbit_pose
from z123_ros.reconstruction.base import FieldConfig

#: Field of view of the paper's training renders (and of every virtual camera here).
TRAINING_FOV_DEG = 49.1


@dataclass
class RenderOutput:
    """Volume-rendered buffers of a batch of cameras."""

    latents: torch.Tensor
    """(B, 4, R, R) composited latent features (background filled with the background latent)."""
    opacity: torch.Tensor
    """(B, 1, R, R) accumulated opacity."""
    depth: torch.Tensor
    """(B, 1, R, R) expected ray depth along the optical axis (z), object units; background 0."""


def orbit_camera(polar_deg: float, azimuth_deg: float, radius: float) -> np.ndarray:
    """``T_world_from_cam`` (object frame) of a camera on a sphere around the origin, looking at it, +z up."""
    return orbit_pose(polar_deg, azimuth_deg, radius)


def camera_rays(
    T_world_from_cam: np.ndarray,
    size: int,
    fov_deg: float = TRAINING_FOV_DEG,
    intrinsics: CameraIntrinsics | None = None,
    offsets: np.ndarray | None = None,
) -> np.ndarray:
    """(size * size, 6) ray origins and directions (object frame) of a square pinhole camera, row-major pixels.

    The camera is the centred FoV-``fov_deg`` one, or ``intrinsics`` (a size x size image, any principal point: the
    real camera behind a crop). ``offsets`` (size * size, 2) moves each ray within its pixel (pixels, [-0.5, 0.5)):
    stratified sampling of the image. Directions are scaled so their camera-frame z component is 1: a ray parameter
    t is then the z-depth.
    """
    intr = intrinsics if intrinsics is not None else CameraIntrinsics.from_fov(fov_deg, size, size)
    v, u = np.mgrid[0:size, 0:size]
    uv = np.stack([u.ravel(), v.ravel()], -1).astype(np.float64)
    if offsets is not None:
        uv = uv + offsets
    d_cam = np.stack([(uv[:, 0] - intr.cx) / intr.fx, (uv[:, 1] - intr.cy) / intr.fy, np.ones(len(uv))], -1)
    d_world = d_cam @ T_world_from_cam[:3, :3].T
    origins = np.broadcast_to(T_world_from_cam[:3, 3], d_world.shape)
    return np.concatenate([origins, d_world], axis=1)


class VoxelField(nn.Module):
    """Latent features + density on a cubic voxel grid (SJC's geometry)."""

    def __init__(self, config: FieldConfig, init_density: torch.Tensor | None = None) -> None:
        super().__init__()
        g = config.grid_size
        self.config = config
        # Grid layout (1, C, D=z, H=y, W=x) so that grid_sample's (x, y, z) coordinates index it directly.
        self.features = nn.Parameter(torch.zeros(1, 4, g, g, g))
        if init_density is None:
            # A centred ball, the usual SJC start: something to carve, nothing outside the object's likely extent.
            axis = torch.linspace(-config.bound, config.bound, g)
            z, y, x = torch.meshgrid(axis, axis, axis, indexing="ij")
            inside = (x * x + y * y + z * z).sqrt() < 0.3
            init_density = torch.where(inside, config.init_density, -config.init_density)
        self.density = nn.Parameter(init_density.reshape(1, 1, g, g, g).float().clone())
        self.register_buffer("background", torch.zeros(1, 4, 1, 1))
        # Known free space: the support plane (object frame, n . p + d >= 0 on the object's side), or none.
        self.register_buffer("support_plane", torch.zeros(4))
        self.has_support_plane = False

    def set_support_plane(self, plane_obj: np.ndarray) -> None:
        """Nothing below this plane (object frame, ``n . p + d < 0`` is under the table): it is empty space."""
        self.support_plane.copy_(torch.as_tensor(np.asarray(plane_obj, dtype=np.float32)))
        self.has_support_plane = True

    def free_space(self, points: torch.Tensor) -> torch.Tensor:
        """Boolean mask of ``points`` (..., 3) known to be empty: outside the grid or below the support plane."""
        free = ~(points.abs() <= self.config.bound).all(-1)
        if self.has_support_plane:
            free = free | (points @ self.support_plane[:3] + self.support_plane[3] < 0)
        return free

    def sigma_grid(self) -> torch.Tensor:
        """(G, G, G) non-negative density (per voxel length: see :meth:`render`) indexed [x, y, z]."""
        return F.softplus(self.density[0, 0]).permute(2, 1, 0)

    def render(
        self,
        T_world_from_cams: list[np.ndarray],
        size: int,
        generator: torch.Generator | None = None,
        intrinsics: CameraIntrinsics | None = None,
        offsets: np.ndarray | None = None,
    ):
        """Render latent images, opacity and depth for square FoV-49.1 cameras (object frame poses), or for cameras
        with the given ``intrinsics`` (size x size pixels); ``offsets`` (B, size * size, 2): each ray's position
        within its pixel (see :func:`camera_rays`; None = pixel centres)."""
        cfg = self.config
        device = self.density.device
        rays = [
            camera_rays(T, size, intrinsics=intrinsics, offsets=None if offsets is None else offsets[k])
            for k, T in enumerate(T_world_from_cams)
        ]
        rays = torch.from_numpy(np.stack(rays)).float().to(device)
        origins, dirs = rays[..., :3], rays[..., 3:]  # (B, R*R, 3); dirs have camera-frame z = 1
        # Ray / cube intersection (slab method) in units of the z-normalised direction, so t is camera z-depth.
        inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
        t0 = (-cfg.bound - origins) * inv
        t1 = (cfg.bound - origins) * inv
        near = torch.minimum(t0, t1).amax(-1).clamp(min=1e-3)
        far = torch.maximum(t0, t1).amin(-1)
        hit = far > near
        far = torch.where(hit, far, near + 1e-3)
        n = cfg.samples_per_ray
        steps = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
        if self.training:
            jitter = torch.rand(rays.shape[0], rays.shape[1], n, device=device, generator=generator) - 0.5
            steps = (steps + jitter / n).clamp(0.0, 1.0)
        t = near[..., None] + (far - near)[..., None] * steps  # (B, P, n)
        points = origins[..., None, :] + dirs[..., None, :] * t[..., None]  # (B, P, n, 3)
        grid = (points / cfg.bound).reshape(1, -1, 1, 1, 3)
        values = F.grid_sample(
            torch.cat([self.features, self.density], 1), grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )  # (1, 5, B*P*n, 1, 1)
        values = values.reshape(5, *points.shape[:3])
        feats, raw = values[:4], values[4]
        # Outside the grid grid_sample returns 0 raw density; softplus(0) would be a fog, so mask it out (and the
        # space under the table: every view of a tabletop object is from above, so its cone would fill it).
        sigma = F.softplus(raw) * ~self.free_space(points) * hit[..., None]
        # Step length in VOXELS (DVGO's convention): the density is per voxel, so a voxel of density sigma stops
        # 1 - exp(-sigma) of the light at any grid size. In object units a density of 10 (the depth initialisation)
        # would let light travel ~1/10 of the object into it, and the expected depth would lie that far behind the
        # surface: the metric depth loss then pulls the surface forward, against the silhouettes.
        voxels_per_unit = (cfg.grid_size - 1) / (2.0 * cfg.bound)
        delta = (far - near)[..., None] / n * dirs.norm(dim=-1, keepdim=True) * voxels_per_unit
        alpha = 1.0 - torch.exp(-sigma * delta)
        trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10], -1), -1)
        weights = alpha * trans  # (B, P, n)
        opacity = weights.sum(-1)
        latent = (weights[None] * feats).sum(-1) + (1.0 - opacity)[None] * self.background.reshape(4, 1, 1)
        depth = (weights * t).sum(-1)
        b = len(T_world_from_cams)
        return RenderOutput(
            latents=latent.permute(1, 0, 2).reshape(b, 4, size, size),
            opacity=opacity.reshape(b, 1, size, size),
            depth=depth.reshape(b, 1, size, size),
        )


def field_from_occupancy(
    occupancy_xyz: np.ndarray, config: FieldConfig, inside: float = 10.0, outside: float = -10.0
) -> torch.Tensor:
    """(G, G, G) raw density (indexed [z, y, x] as VoxelField stores it) from an [x, y, z] occupancy in [0, 1]."""
    occ = torch.from_numpy(np.asarray(occupancy_xyz, dtype=np.float32)).permute(2, 1, 0)
    return outside + (inside - outside) * occ


def virtual_radius(fov_deg: float = TRAINING_FOV_DEG, fill: float = 200.0 / 256.0, extent: float = 1.0) -> float:
    """Camera radius at which an object of ``extent`` fills ``fill`` of a square FoV image (the crop's framing)."""
    return extent / (2.0 * math.tan(math.radians(fov_deg) / 2.0) * fill)
