"""What the two learned backends (``multiview``, ``zero123``) share: the input's setup, the field, the losses, the mesh.

Both preprocess the input for Zero-1-to-3 (crop, centre, white background), encode it once, fix the object frame and
the virtual input camera (metric and placed in the camera frame when depth is given, normalised otherwise), optimise
the same voxel latent field against the input view, and turn its density into a mesh. Only the supervision of the
other views differs (generated views in multiview.py, the score in sjc.py).

Units: the field's object frame has the object's longest side = ``OBJECT_SIZE_UNITS`` (a margin inside the grid);
the model's radii are in units of the object's longest side (Objaverse renders were normalised to a unit cube), so
``d_radius`` is converted between the two in :func:`pose_batch`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812 (the universal torch idiom)
from scipy import ndimage
from tqdm.auto import tqdm

from z123_ros.camera import CameraIntrinsics, cartesian_to_spherical
from z123_ros.errors import ReconstructionError
from z123_ros.novel_views.preprocess import Zero123Input, input_polar_deg, preprocess_for_zero123
from z123_ros.reconstruction.base import ReconstructionConfig, ReconstructionInput, ReconstructionResult
from z123_ros.reconstruction.depth_backend import complete_from_depth
from z123_ros.reconstruction.field import (
    TRAINING_FOV_DEG,
    VoxelField,
    field_from_occupancy,
    orbit_camera,
    virtual_radius,
)
from z123_ros.reconstruction.mesh import extract_mesh, largest_component
from z123_ros.reconstruction.result import result_from_mesh

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
    """(1, 1, S, S) object mask of the preprocessed input view at the model's image size (rays sample it)."""
    input_pose: tuple[float, float, float]
    """(polar_deg, azimuth_deg, radius) of the virtual input camera in the object frame (field units)."""
    depth_target: torch.Tensor | None
    """(1, 1, S, S) measured z-depth of the input camera's rays (object units, 0 = unknown) when depth was given."""
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
    input_camera: np.ndarray
    """4x4 rigid ``T_object_from_cam`` (object units) the input-view losses render through: the real camera when
    metric (the preprocessed input IS its crop), else the virtual orbit camera at ``input_pose``."""
    input_intrinsics: CameraIntrinsics | None
    """Intrinsics of ``input_camera`` at render size (the crop's: off-centre, narrow), or None for the centred
    FoV-49.1 camera of the model's convention."""


@dataclass
class _ObjectFrame:
    """The object frame and virtual input camera derived from the input (metric or normalised)."""

    pose: tuple[float, float, float]
    input_camera: np.ndarray | None = None
    input_intrinsics: CameraIntrinsics | None = None
    init_density: torch.Tensor | None = None
    depth_target: torch.Tensor | None = None
    T_cam_from_object: np.ndarray | None = None
    plane_cam: np.ndarray | None = None


def _to_tensor_image(image: np.ndarray, device: str) -> torch.Tensor:
    """(S, S, 3) uint8 -> (1, 3, S, S) float in [0, 1]."""
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)[None].to(device)


def _depth_target(inp: ReconstructionInput, pre: Zero123Input, scale: float, device: str) -> torch.Tensor:
    """(1, 1, S, S) z-depth (object units, 0 = unknown) along the input camera's ray through each pixel centre of the
    preprocessed image: the measured depth at the original pixel that ray comes from, inside the object's mask eroded
    by one pixel (edge pixels mix the object and what is behind it)."""
    size = pre.image.shape[0]
    v, u = np.mgrid[0:size, 0:size]
    uv = np.round(pre.to_original(np.stack([u.ravel(), v.ravel()], 1).astype(np.float64))).astype(np.int64)
    height, width = inp.mask.shape
    ok = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
    core = ndimage.binary_erosion(np.asarray(inp.mask, dtype=bool))
    ok[ok] = core[uv[ok, 1], uv[ok, 0]]
    z = np.zeros(size * size)
    z[ok] = np.asarray(inp.depth_m, dtype=np.float64)[uv[ok, 1], uv[ok, 0]] / scale
    z[~np.isfinite(z) | (z < 0)] = 0.0
    return torch.from_numpy(z.reshape(1, 1, size, size)).float().to(device)


def _metric_frame(
    inp: ReconstructionInput, pre: Zero123Input, config: ReconstructionConfig, size: int, device: str
) -> _ObjectFrame:
    """Object frame from the depth completion: plane-aligned, metric, the virtual camera along the real one."""
    fcfg = config.voxel_field
    completion, _ = complete_from_depth(inp, config.depth)
    T_ci = completion.T_cam_from_index
    voxel = float(np.linalg.norm(T_ci[:3, 0]))
    R_cam_from_obj = T_ci[:3, :3] / voxel  # plane-aligned: x horizontal view direction, z up
    occ_idx = np.argwhere(completion.occupancy)
    lo, hi = occ_idx.min(axis=0) - 0.5, occ_idx.max(axis=0) + 0.5
    T_cam_from_object = np.eye(4)
    T_cam_from_object[:3, :3] = R_cam_from_obj * float(np.max(hi - lo)) * voxel / OBJECT_SIZE_UNITS
    T_cam_from_object[:3, 3] = T_ci[:3, :3] @ (0.5 * (lo + hi)) + T_ci[:3, 3]
    T_object_from_cam = np.linalg.inv(T_cam_from_object)
    # Virtual input camera: along the real camera's direction, at the radius that frames the object like the crop
    # (the crop is a zoom: focal f_crop at distance D images the object as f_virtual at D * f_virtual / f_crop).
    polar, azimuth, distance = cartesian_to_spherical(T_object_from_cam[:3, 3])
    f_virtual = CameraIntrinsics.from_fov(TRAINING_FOV_DEG, size, size).fx
    f_crop = pre.intrinsics.fx if pre.intrinsics is not None else f_virtual
    pose = (float(polar), float(azimuth), float(distance * f_virtual / f_crop))
    # Initial density: the depth completion resampled on the field grid.
    g = fcfg.grid_size
    axis = np.linspace(-fcfg.bound, fcfg.bound, g)
    pts_obj = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    pts_cam = pts_obj @ T_cam_from_object[:3, :3].T + T_cam_from_object[:3, 3]
    idx = (pts_cam - T_ci[:3, 3]) @ np.linalg.inv(T_ci[:3, :3]).T
    occ = ndimage.map_coordinates(completion.occupancy.astype(np.float32), idx.T, order=1, cval=0.0)
    # The input-view losses render the REAL camera through the crop: the preprocessed image is exactly what it sees
    # (the virtual orbit camera above is the model's convention for the relative views only; it differs from the
    # crop in perspective and in where the object's centre projects).
    input_camera = np.eye(4)
    input_camera[:3, :3] = R_cam_from_obj.T
    input_camera[:3, 3] = T_object_from_cam[:3, 3]
    R = fcfg.render_size
    return _ObjectFrame(
        pose=pose,
        input_camera=input_camera,
        input_intrinsics=pre.intrinsics.scaled(R / size),
        init_density=field_from_occupancy(
            occ.reshape(g, g, g), fcfg, inside=fcfg.init_density, outside=-fcfg.init_density
        ),
        depth_target=_depth_target(inp, pre, float(np.linalg.norm(T_cam_from_object[:3, 0])), device),
        T_cam_from_object=T_cam_from_object,
        plane_cam=completion.plane_cam,
    )


def _normalised_frame(inp: ReconstructionInput, pre: Zero123Input, plane: np.ndarray | None) -> _ObjectFrame:
    """Without depth: the input polar from the pose or the plane (else a fallback), azimuth 0, the crop's radius."""
    polar = pre.input_polar_deg
    if polar is None:
        polar = input_polar_deg(inp.mask, inp.intrinsics, plane_cam=plane, T_cam_from_world=inp.T_cam_from_world)
    if polar is None:
        logger.warning("input polar unknown (no pose, plane or depth): assuming %.0f deg", FALLBACK_INPUT_POLAR_DEG)
        polar = FALLBACK_INPUT_POLAR_DEG
    return _ObjectFrame(pose=(float(polar), 0.0, virtual_radius(extent=OBJECT_SIZE_UNITS)), plane_cam=plane)


def prepare_learned_setup(inp: ReconstructionInput, pipeline, config: ReconstructionConfig) -> LearnedSetup:
    """Preprocess the input for Zero-1-to-3, encode it once, and fix the object frame and the input camera."""
    size = int(pipeline.image_size)
    device = str(pipeline._execution_device) if hasattr(pipeline, "_execution_device") else config.device
    plane = None if inp.support_plane_cam is None else np.asarray(inp.support_plane_cam, dtype=np.float64)
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
    metric = inp.depth_m is not None
    frame = _metric_frame(inp, pre, config, size, device) if metric else _normalised_frame(inp, pre, plane)
    return LearnedSetup(
        cond=cond,
        input_latents=input_latents,
        input_mask=mask_t,
        input_pose=frame.pose,
        depth_target=frame.depth_target,
        init_density=frame.init_density,
        metric=metric,
        T_cam_from_object=np.eye(4) if frame.T_cam_from_object is None else frame.T_cam_from_object,
        plane_cam=frame.plane_cam,
        image_size=size,
        background=white.mean(dim=(2, 3), keepdim=True),
        input_camera=frame.input_camera if frame.input_camera is not None else orbit_camera(*frame.pose),
        input_intrinsics=frame.input_intrinsics,
    )


def make_field(setup: LearnedSetup, config: ReconstructionConfig, from_depth: bool = True) -> VoxelField:
    """A field initialised from the setup (depth completion, or a centred ball without depth or when ``from_depth``
    is False), background = the white image's latent."""
    init = setup.init_density if from_depth else None
    field = VoxelField(config.voxel_field, init).to(setup.input_latents.device)
    field.background.copy_(setup.background)
    plane_obj = support_plane_object(setup)
    if plane_obj is not None:
        field.set_support_plane(plane_obj)
    return field


def support_plane_object(setup: LearnedSetup) -> np.ndarray | None:
    """The support plane in the metric object frame, oriented so the object's side is positive; None if unknown."""
    if not setup.metric or setup.plane_cam is None:
        return None
    plane = np.asarray(setup.plane_cam, dtype=np.float64)
    if plane[3] < 0:  # the camera (origin) is on the object's side of the table
        plane = -plane
    M, t = setup.T_cam_from_object[:3, :3], setup.T_cam_from_object[:3, 3]
    n_obj, d_obj = M.T @ plane[:3], float(plane[:3] @ t + plane[3])
    scale = float(np.linalg.norm(n_obj))
    return np.append(n_obj / scale, d_obj / scale)


def relative_views(setup: LearnedSetup, poses: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Field-frame camera poses -> the model's relative views (d_polar_deg, d_azimuth_deg, d_radius in model units).

    The model's radii are in units of the object's longest side (Objaverse objects were normalised to a unit cube),
    the field's have the object at ``OBJECT_SIZE_UNITS``: a field radius step of 0.85 is one model unit.
    """
    p0, a0, r0 = setup.input_pose
    return [(p - p0, a - a0, (r - r0) / OBJECT_SIZE_UNITS) for p, a, r in poses]


def pose_batch(pipeline, setup: LearnedSetup, poses: list[tuple[float, float, float]]) -> torch.Tensor:
    """(B, 4) pose vectors of field-frame camera poses; Stable Zero123 takes the input's absolute polar as 4th entry."""
    return pipeline.pose_vectors(relative_views(setup, poses), setup.input_pose[0]).float()


def stratified_offsets(batch: int, size: int, generator: torch.Generator | None) -> np.ndarray | None:
    """(batch, size * size, 2) uniform positions of rays within their pixels (None without a generator: centres).

    A render of R x R rays at random positions within their pixels, compared with the full-resolution target at
    those positions, sees the target's edges sharply in expectation; a render at pixel centres compared with an
    area-downsampled target would be fitted by a blurred, half-transparent boundary instead."""
    if generator is None:
        return None
    return (torch.rand(batch, size * size, 2, generator=generator) - 0.5).double().numpy()


def sample_image(images: torch.Tensor, size: int, offsets: np.ndarray | None) -> torch.Tensor:
    """(B, C, S, S) full-resolution targets at the rays of a size x size render: the value of the S-pixel each ray
    passes through (``offsets`` as given to the render)."""
    b, c, s = images.shape[0], images.shape[1], images.shape[-1]
    v, u = np.mgrid[0:size, 0:size]
    pos = np.stack([u.ravel(), v.ravel()], -1)[None] + 0.5  # pixel-edge coordinates of the ray, render pixels
    if offsets is not None:
        pos = pos + offsets
    idx = np.clip(np.floor(pos * s / size).astype(np.int64), 0, s - 1)
    flat = torch.from_numpy(np.broadcast_to(idx[..., 1] * s + idx[..., 0], (b, size * size)).copy())
    gathered = images.reshape(b, c, s * s).gather(2, flat.to(images.device)[:, None, :].expand(b, c, -1))
    return gathered.reshape(b, c, size, size)


def latent_loss(rendered: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """MSE of rendered latents against the model's latents at the coarser of the two resolutions, the finer one
    area-averaged (a latent pixel summarises its 8 x 8 image pixels; upsampling the target instead blurs the edges
    the render must match)."""
    r, t = rendered.shape[-1], target.shape[-1]
    if r > t:
        rendered = F.interpolate(rendered, size=(t, t), mode="area")
    elif t > r:
        target = F.interpolate(target, size=(r, r), mode="area")
    return F.mse_loss(rendered, target)


def input_view_loss(
    field: VoxelField, setup: LearnedSetup, config: ReconstructionConfig, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(latent + mask loss, depth loss) of the field seen from the input camera (stratified rays with a generator)."""
    R = config.voxel_field.render_size
    offsets = stratified_offsets(1, R, generator)
    out = field.render([setup.input_camera], R, generator=generator, intrinsics=setup.input_intrinsics, offsets=offsets)
    mask = sample_image(setup.input_mask, R, offsets)
    loss = latent_loss(out.latents, setup.input_latents) + F.mse_loss(out.opacity, mask)
    depth_loss = torch.zeros((), device=loss.device)
    if setup.depth_target is not None:
        target = sample_image(setup.depth_target, R, offsets)
        valid = target > 0
        if bool(valid.any()):
            depth_loss = (out.depth - target).abs()[valid].mean()
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
    t0 = time.perf_counter()
    fcfg = config.voxel_field
    sigma = field.sigma_grid().detach().cpu().numpy()
    step = 2.0 * fcfg.bound / (fcfg.grid_size - 1)
    T_obj_from_index = np.eye(4)
    T_obj_from_index[:3, :3] *= step
    T_obj_from_index[:3, 3] = -fcfg.bound
    occupied = sigma > fcfg.density_level
    if field.has_support_plane:
        axis = np.linspace(-fcfg.bound, fcfg.bound, fcfg.grid_size)
        points = torch.from_numpy(np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1)).float()
        occupied &= ~field.free_space(points.to(field.support_plane.device)).cpu().numpy()
    if not occupied.any():
        raise ReconstructionError(f"the {backend} field is empty (no density above {fcfg.density_level})")
    occupied = ndimage.binary_fill_holes(largest_component(occupied))
    T_out_from_obj = setup.T_cam_from_object if setup.metric else np.eye(4)
    mesh = extract_mesh(occupied.astype(np.float32), 0.5, T_out_from_obj @ T_obj_from_index, smooth_sigma=0.7)
    if not setup.metric:
        # No scale without depth: the normalised object frame (bounding box centred at the origin, longest side 1).
        lo, hi = mesh.bounds
        mesh.apply_translation(-0.5 * (lo + hi))
        mesh.apply_scale(1.0 / float(np.max(hi - lo)))
    return result_from_mesh(
        mesh,
        backend=backend,
        metric=setup.metric,
        frame="camera" if setup.metric else "object_normalized",
        confidence=float(info.get("confidence", 0.5)),
        timings={**timings, "mesh": time.perf_counter() - t0},
        num_points=config.num_points,
        plane_cam=setup.plane_cam,
        info={k: v for k, v in info.items() if k != "confidence"},
    )


def progress_bar(total: int, enabled: bool, desc: str) -> tqdm:
    """A tqdm bar for long optimisations (the CLI enables it; the library is silent by default)."""
    return tqdm(total=total, disable=not enabled, desc=desc, leave=False)
