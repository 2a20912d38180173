"""The ``zero123`` backend: Score Jacobian Chaining of a voxel latent field guided by Zero-1-to-3 (the paper's method).

Per step (defaults from the paper, ../shared/notes/zero123.md): render the field's latents from a random camera
(radius 1.8-2.2, +z up), noise them at a level drawn from the middle of the schedule and push them along the
variance-reduced score ``eps_hat - eps`` of the guided UNet (guidance 100); reconstruct the input view (weight 1e4);
keep near views consistent (L1 on latents and depth against a jittered pose, 1e5); smooth depth in the second half
(1e5). With metric depth the visible surface is a constraint too, the depth backend's completion initialises the
density, and the object frame is metric (scale and placement from the depth), so the mesh comes back in metres in the
camera frame. The input view's polar angle comes from the camera pose (support plane or ``T_cam_from_world``).

``prepare_learned_setup`` is shared with the multiview fast path.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the universal torch idiom)
from scipy import ndimage
from tqdm.auto import tqdm

from z123_ros.camera import CameraIntrinsics, cartesian_to_spherical
from z123_ros.errors import ReconstructionError
from z123_ros.reconstruction.base import ReconstructionConfig, ReconstructionInput, ReconstructionResult
from z123_ros.reconstruction.field import (
    TRAINING_FOV_DEG,
    VoxelField,
    field_from_occupancy,
    orbit_camera,
    virtual_radius,
)
from z123_ros.reconstruction.mesh import extract_mesh

logger = logging.getLogger(__name__)

#: Longest side of the object in field units (the grid spans [-bound, bound], 1 by default): a margin all round.
OBJECT_SIZE_UNITS = 0.85
#: Input polar angle used when neither the pose nor a support plane is known (a robot looking down at a table).
FALLBACK_INPUT_POLAR_DEG = 60.0


@dataclass
class LearnedSetup:
    """Everything the learned backends derive once from the input before optimising a field."""

    cond: object
    """Zero123Condition of the preprocessed input view."""
    input_latents: torch.Tensor
    """(1, 4, h, w) scaled VAE latents of the preprocessed input."""
    input_mask: torch.Tensor
    """(1, 1, R, R) object mask of the input view at render size."""
    input_pose: tuple[float, float, float]
    """(polar_deg, azimuth_deg, radius) of the virtual input camera in the object frame."""
    depth_target: torch.Tensor | None
    """(1, 1, R, R) input-view depth (object units, 0 = unknown) when metric depth was given."""
    init_density: torch.Tensor | None
    """Raw density initialising the field (the depth completion), or None (a centred ball)."""
    metric: bool
    """True when the object frame has a known metric scale and pose in the camera frame."""
    T_cam_from_object: np.ndarray
    """4x4 object units -> camera metres (rotation x scale + translation); identity without depth."""
    plane_cam: np.ndarray | None
    """Support plane used (camera frame), when known."""
    image_size: int
    """The model's image side (256 for the published models)."""
    background: torch.Tensor
    """(1, 4, 1, 1) latent of a white image: the field's background (the model's inputs are on white)."""


def _to_tensor_image(image: np.ndarray, device: str) -> torch.Tensor:
    """(S, S, 3) uint8 -> (1, 3, S, S) float in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].to(device)


def prepare_learned_setup(inp: ReconstructionInput, pipeline, config: ReconstructionConfig) -> LearnedSetup:
    """Preprocess the input for Zero-1-to-3, encode it once, and fix the object frame and the input camera."""
    from z123_ros.novel_views import preprocess_for_zero123
    from z123_ros.novel_views.preprocess import input_polar_deg

    fcfg = config.voxel_field
    size = int(pipeline.image_size)
    device = str(pipeline._execution_device) if hasattr(pipeline, "_execution_device") else config.device
    R = fcfg.render_size
    plane = None
    if inp.support_plane_cam is not None:
        plane = np.asarray(inp.support_plane_cam, dtype=np.float64)
    pre = preprocess_for_zero123(
        inp.rgb,
        inp.mask,
        size=size,
        object_size=round(size * 200 / 256),
        intrinsics=inp.intrinsics,
        depth_m=inp.depth_m,
        plane_cam=plane,
        T_cam_from_world=inp.T_cam_from_world,
    )
    with torch.no_grad():
        image_t = _to_tensor_image(pre.image, device)
        cond = pipeline.encode_condition(pre, input_polar_deg=pre.input_polar_deg)
        input_latents = pipeline.encode_latents(image_t).float()
        white = pipeline.encode_latents(torch.ones_like(image_t)).float()
    mask_t = torch.from_numpy(pre.mask.astype(np.float32))[None, None].to(device)
    input_mask = F.interpolate(mask_t, size=(R, R), mode="area")

    init_density, depth_target, plane_cam = None, None, plane
    T_cam_from_object = np.eye(4)
    metric = inp.depth_m is not None
    if metric:
        from z123_ros.reconstruction.depth_backend import complete_from_depth

        completion, visible = complete_from_depth(inp, config.depth)
        plane_cam = completion.plane_cam
        T_ci = completion.T_cam_from_index
        voxel = float(np.linalg.norm(T_ci[:3, 0]))
        R_cam_from_obj = T_ci[:3, :3] / voxel  # plane-aligned: x horizontal view direction, z up
        occ_idx = np.argwhere(completion.occupancy)
        lo, hi = occ_idx.min(axis=0) - 0.5, occ_idx.max(axis=0) + 0.5
        centre_cam = T_ci[:3, :3] @ (0.5 * (lo + hi)) + T_ci[:3, 3]
        metres_per_unit = float(np.max(hi - lo)) * voxel / OBJECT_SIZE_UNITS
        T_cam_from_object[:3, :3] = R_cam_from_obj * metres_per_unit
        T_cam_from_object[:3, 3] = centre_cam
        T_object_from_cam = np.linalg.inv(T_cam_from_object)
        # Virtual input camera: along the real camera's direction, at the radius that frames the object like the crop.
        cam_obj = T_object_from_cam[:3, 3]
        polar, azimuth, distance = cartesian_to_spherical(cam_obj)
        f_virtual = CameraIntrinsics.from_fov(TRAINING_FOV_DEG, size, size).fx
        f_crop = pre.intrinsics.fx if pre.intrinsics is not None else f_virtual
        radius = distance * f_virtual / f_crop
        # Initial density: the depth completion resampled on the field grid.
        g = fcfg.grid_size
        axis = np.linspace(-fcfg.bound, fcfg.bound, g)
        gx, gy, gz = np.meshgrid(axis, axis, axis, indexing="ij")
        pts_obj = np.stack([gx, gy, gz], -1).reshape(-1, 3)
        pts_cam = pts_obj @ T_cam_from_object[:3, :3].T + T_cam_from_object[:3, 3]
        idx = (pts_cam - T_ci[:3, 3]) @ np.linalg.inv(T_ci[:3, :3]).T
        occ = ndimage.map_coordinates(completion.occupancy.astype(np.float32), idx.T, order=1, cval=0.0)
        init_density = field_from_occupancy(occ.reshape(g, g, g), fcfg)
        # Depth target: the visible points seen from the virtual input camera (z-buffer at render size).
        T_world_from_vcam = orbit_camera(polar, azimuth, radius)
        vis_obj = visible @ T_object_from_cam[:3, :3].T + T_object_from_cam[:3, 3]
        p_v = (vis_obj - T_world_from_vcam[:3, 3]) @ T_world_from_vcam[:3, :3]
        intr_r = CameraIntrinsics.from_fov(TRAINING_FOV_DEG, R, R)
        ok = p_v[:, 2] > 1e-6
        uv = np.round(intr_r.project(p_v[ok])).astype(np.int64)
        z = p_v[ok, 2]
        inside = (uv[:, 0] >= 0) & (uv[:, 0] < R) & (uv[:, 1] >= 0) & (uv[:, 1] < R)
        zbuf = np.full(R * R, np.inf)
        np.minimum.at(zbuf, uv[inside, 1] * R + uv[inside, 0], z[inside])
        zbuf[~np.isfinite(zbuf)] = 0.0
        depth_target = torch.from_numpy(zbuf.reshape(1, 1, R, R)).float().to(device)
    else:
        polar = pre.input_polar_deg
        if polar is None:
            polar = input_polar_deg(inp.mask, inp.intrinsics, plane_cam=plane, T_cam_from_world=inp.T_cam_from_world)
        if polar is None:
            logger.warning("input polar unknown (no pose, plane or depth): assuming %.0f deg", FALLBACK_INPUT_POLAR_DEG)
            polar = FALLBACK_INPUT_POLAR_DEG
        azimuth, radius = 0.0, virtual_radius(extent=OBJECT_SIZE_UNITS)
    setup = LearnedSetup(
        cond=cond,
        input_latents=input_latents,
        input_mask=input_mask,
        input_pose=(float(polar), float(azimuth), float(radius)),
        depth_target=depth_target,
        init_density=init_density,
        metric=metric,
        T_cam_from_object=T_cam_from_object,
        plane_cam=plane_cam,
        image_size=size,
        background=white.mean(dim=(2, 3), keepdim=True),
    )
    return setup


def make_field(setup: LearnedSetup, config: ReconstructionConfig) -> VoxelField:
    """A field initialised from the setup (depth completion or a ball), background = the white image's latent."""
    field = VoxelField(config.voxel_field, setup.init_density).to(setup.input_latents.device)
    field.background.copy_(setup.background)
    return field


def pose_batch(pipeline, setup: LearnedSetup, poses: list[tuple[float, float, float]]) -> torch.Tensor:
    """(B, 4) pose vectors; Stable Zero123 takes the input's absolute polar as the 4th entry."""
    rel = [(p - setup.input_pose[0], a - setup.input_pose[1], r - setup.input_pose[2]) for p, a, r in poses]
    return pipeline.pose_vectors(rel, setup.input_pose[0]).float()


def input_view_loss(
    field: VoxelField, setup: LearnedSetup, config: ReconstructionConfig
) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent + mask loss, depth loss) of the field seen from the input camera."""
    R = config.voxel_field.render_size
    out = field.render([orbit_camera(*setup.input_pose)], R)
    target = F.interpolate(setup.input_latents, size=(R, R), mode="bilinear", align_corners=False)
    loss = F.mse_loss(out.latents, target) + F.mse_loss(out.opacity, setup.input_mask)
    depth_loss = torch.zeros((), device=loss.device)
    if setup.depth_target is not None:
        valid = setup.depth_target > 0
        if bool(valid.any()):
            depth_loss = (out.depth - setup.depth_target).abs()[valid].mean()
    return loss, depth_loss


def field_to_result(
    field: VoxelField,
    setup: LearnedSetup,
    config: ReconstructionConfig,
    backend: str,
    timings: dict[str, float],
    info: dict,
) -> ReconstructionResult:
    """Marching cubes on the density grid, mapped to the camera frame (metric) or the normalised object frame."""
    from z123_ros.reconstruction.api import result_from_mesh

    t0 = time.perf_counter()
    fcfg = config.voxel_field
    sigma = field.sigma_grid().detach().cpu().numpy()
    g = fcfg.grid_size
    step = 2.0 * fcfg.bound / (g - 1)
    T_obj_from_index = np.eye(4)
    T_obj_from_index[:3, :3] *= step
    T_obj_from_index[:3, 3] = -fcfg.bound
    occupied = sigma > fcfg.density_level
    if not occupied.any():
        raise ReconstructionError(f"the {backend} field is empty (no density above {fcfg.density_level})")
    from z123_ros.reconstruction.mesh import largest_component

    occupied = ndimage.binary_fill_holes(largest_component(occupied))
    T_out_from_obj = setup.T_cam_from_object if setup.metric else np.eye(4)
    mesh = extract_mesh(occupied.astype(np.float32), 0.5, T_out_from_obj @ T_obj_from_index, smooth_sigma=0.7)
    if not setup.metric:
        # No scale without depth: the normalised object frame (bounding box centred at the origin, longest side 1).
        lo, hi = mesh.bounds
        mesh.apply_translation(-0.5 * (lo + hi))
        mesh.apply_scale(1.0 / float(np.max(hi - lo)))
    timings = {**timings, "mesh": time.perf_counter() - t0}
    return result_from_mesh(
        mesh,
        backend=backend,
        metric=setup.metric,
        frame="camera" if setup.metric else "object_normalized",
        confidence=float(info.get("confidence", 0.5)),
        timings=timings,
        num_points=config.num_points,
        plane_cam=setup.plane_cam,
        info={k: v for k, v in info.items() if k != "confidence"},
    )


def progress_bar(total: int, enabled: bool, desc: str) -> tqdm:
    """A tqdm bar for long optimisations (the CLI enables it; the library is silent by default)."""
    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)


def reconstruct_sjc(inp: ReconstructionInput, pipeline, config: ReconstructionConfig) -> ReconstructionResult:
    """Score Jacobian Chaining with the paper's losses (see the module docstring)."""
    cfg, fcfg = config.sjc, config.voxel_field
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    setup = prepare_learned_setup(inp, pipeline, config)
    field = make_field(setup, config)
    timings["prepare"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    device = setup.input_latents.device
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    alphas = pipeline.scheduler.alphas_cumprod.to(device).float()
    num_train = len(alphas)
    latent_size = int(pipeline.latent_size)
    optimiser = torch.optim.Adamax(field.parameters(), lr=cfg.lr)
    field.train()
    with progress_bar(cfg.steps, config.show_progress, "SJC") as bar:
        for step in range(cfg.steps):
            polar = float(rng.uniform(*cfg.polar_range_deg))
            azimuth = float(rng.uniform(0.0, 360.0))
            radius = float(rng.uniform(*cfg.radius_range))
            jitter = rng.normal(0.0, cfg.near_view_jitter_deg, size=2)
            near_pose = (polar + float(jitter[0]), azimuth + float(jitter[1]), radius)
            out = field.render(
                [orbit_camera(polar, azimuth, radius), orbit_camera(*near_pose)], fcfg.render_size, generator=gen
            )
            # 1. SJC score at the random view: variance-reduced (eps_hat - eps), noise from the schedule's middle.
            z = F.interpolate(out.latents[:1], size=(latent_size, latent_size), mode="bilinear", align_corners=False)
            t = int(rng.uniform(*cfg.t_range) * (num_train - 1))
            a = alphas[t]
            eps = torch.randn(z.shape, generator=gen, device=device)
            noisy = a.sqrt() * z.detach() + (1 - a).sqrt() * eps
            eps_hat = pipeline.guided_noise(
                noisy,
                torch.tensor([t], device=device),
                setup.cond,
                pose_batch(pipeline, setup, [(polar, azimuth, radius)]),
                guidance_scale=cfg.guidance_scale,
            ).float()
            grad = torch.nan_to_num((1 - a) * (eps_hat - eps))
            score_loss = 0.5 * ((z - (z - grad).detach()) ** 2).sum()
            # 2. Input-view reconstruction (+ metric depth on the visible surface).
            in_loss, depth_loss = input_view_loss(field, setup, config)
            # 3. Near-view consistency: L1 on latents and depth against a jittered pose.
            near_loss = (out.latents[0] - out.latents[1]).abs().mean() + (out.depth[0] - out.depth[1]).abs().mean()
            loss = score_loss + cfg.input_view_weight * in_loss + cfg.metric_depth_weight * depth_loss
            loss = loss + cfg.near_view_weight * near_loss
            # 4. Depth smoothness, second half of training.
            if step >= cfg.steps // 2:
                d = out.depth[:1]
                tv = (d[..., 1:, :] - d[..., :-1, :]).abs().mean() + (d[..., :, 1:] - d[..., :, :-1]).abs().mean()
                loss = loss + cfg.depth_smooth_weight * tv
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            bar.update()
            if not math.isfinite(loss.item()):
                raise ReconstructionError(f"SJC diverged at step {step} (loss {loss.item()})")
    field.eval()
    timings["optimise"] = time.perf_counter() - t0
    info = {"steps": float(cfg.steps), "input_polar_deg": setup.input_pose[0], "confidence": 0.5}
    return field_to_result(field, setup, config, "zero123", timings, info)
