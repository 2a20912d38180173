"""Input, configuration and result types shared by every reconstruction backend."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from z123_ros.camera import CameraIntrinsics, check_rigid
from z123_ros.errors import CameraError, ConfigError, InputError
from z123_ros.geometry import fit_plane_ransac, orient_plane, plane_from_pose
from z123_ros.io import check_frame

#: A mask covering more of the image than this is background or the table, not an object.
MAX_MASK_FRACTION = 0.9
#: Masked depth within this distance of the support plane lies on it (sensor noise at a few metres' range).
SUPPORT_SURFACE_M = 0.006


@dataclass
class ReconstructionInput:
    """One segmented view of an object."""

    rgb: np.ndarray
    """(H, W, 3) uint8 RGB image."""
    mask: np.ndarray
    """(H, W) bool object mask (non-zero = object)."""
    intrinsics: CameraIntrinsics
    """Pinhole intrinsics of the (undistorted) image."""
    depth_m: np.ndarray | None = None
    """(H, W) float metric z-depth in metres, NaN/0 = invalid. Required by the ``depth`` and ``hull`` backends;
    gives the learned backends metric scale and placement."""
    T_cam_from_world: np.ndarray | None = None
    """4x4 world -> camera transform with world +z up and the table top at z = 0 (gives the support plane and the
    input view's polar angle)."""
    support_plane_cam: np.ndarray | None = None
    """(4,) support plane ``n . p + d = 0`` in the camera frame (e.g. from segmentation); overrides
    ``T_cam_from_world`` for the plane."""
    labels: np.ndarray | None = None
    """(H, W) int instance label image of the whole frame (0 = background/table), e.g. the segmentation result.
    Pixels of other objects are unknown space for this one (it may continue behind them), not free space."""
    occluder_mask: np.ndarray | None = None
    """(H, W) bool pixels of whatever may hide this object (other objects, clutter); overrides ``labels``."""


@dataclass
class DepthBackendConfig:
    """Settings of the ``depth`` backend (geometric completion of the visible surface)."""

    resolution: int = 96
    """Voxels along the longest side of the working grid."""
    margin_m: float = 0.006
    """Free margin added around the visible points when sizing the grid."""
    depth_noise_m: float = 0.002
    """Depth noise allowance of the symmetry hypotheses and the safe shape: a point is free only if the camera sees at
    least this far (plus half a voxel) past it. The noise measured on the table around the object raises it."""
    carve_noise_m: float = 0.001
    """Depth noise allowance of a voxel's own test (the measured noise raises it too): a voxel is object when the
    camera does not see this far past its centre. Dev seeds 100-101: the 2 mm of ``depth_noise_m`` plus half a voxel
    put surfaces ~2 mm in front of the seen ones (volumes 11% too large); without a floor, exact depth parted a
    spray bottle's voxel-thin neck."""
    mask_dilate_px: int = 2
    """Silhouette tolerance: voxels projecting this close to the mask still count as inside it."""
    mask_erode_px: int = 1
    """Mask erosion before back-projection (drops mixed depth pixels on the object's outline)."""
    plane_ring_px: int = 25
    """Width of the ring of pixels around the mask used to fit the support plane when no plane or pose is given."""
    plane_inlier_m: float = 0.004
    """RANSAC inlier distance of the support-plane fit."""
    use_symmetry: bool = True
    """Complete the hidden side by reflecting the visible part about a vertical plane across the view direction."""
    symmetry_min_consistency: float = 0.8
    """Fraction of the reflected visible points that must lie in space the camera did not see as empty for the
    symmetry hypothesis to be accepted."""
    min_thickness_m: float = 0.01
    """Everything within this distance behind the visible surface is kept, whatever the completion prior says."""
    fallback_thickness: float = 1.0
    """Without an accepted symmetry, the hidden side extends this many times the visible width behind the surface."""
    smooth_sigma: float = 0.8
    """Gaussian smoothing (voxels) of the occupancy before marching cubes."""
    occluder_min_height_m: float = 0.01
    """Without a label image, observed points this high above the support plane are things that may hide the
    object (unknown space behind them); lower ones are table."""
    hollow_wall_m: float = 0.005
    """Wall thickness given to a cavity the camera sees into (bowls, mugs, cups: 3-6 mm ceramic or plastic)."""
    hollow_min_wall_m: float = 0.001
    """The thinnest wall of a rigid container (thin-walled plastic): the lower bound of an open container's wall
    where the camera sees only one of its faces."""
    cavity_min_depth_m: float = 0.012
    """A visible surface this far below the rim that surrounds it on all sides is the inside of a cavity."""
    min_silhouette_coverage: float = 0.85
    """A completion must cover this fraction of the mask's pixels when projected, else it is inconsistent with
    the view and the backend falls back to a safe shape."""


@dataclass
class FieldConfig:
    """The voxel radiance field of the learned backends (SJC: latent features + density on a voxel grid)."""

    grid_size: int = 100
    """Voxels per side of the cubic grid (the paper: 100)."""
    render_size: int = 32
    """Rendered latent image side (the paper renders 32x32 latents, decoded to 256x256 images)."""
    samples_per_ray: int = 96
    """Ray samples through the grid per pixel."""
    bound: float = 0.5
    """Half-side of the cubic grid in the object frame (object normalised to a unit cube, like the training data)."""
    density_level: float = 0.7
    """Iso-level of the density grid used for marching cubes. The density is per voxel length (field.py), so a voxel
    at ln 2 = 0.69 stops half the light crossing it: the renderer's own half-opacity boundary. Anything the mesh
    counts as inside would, alone, be visible in the silhouettes the field was fitted to; a higher level (5 before
    the density was per voxel) cut into the object wherever the fit had left it less than fully dense."""
    init_density: float = 4.0
    """Raw density (before softplus) of the depth completion's inside (+) and outside (-) when it initialises the
    field: sigma 4 per voxel is opaque (98 % of the light stops in one voxel) and 0.018 outside is almost empty, yet
    either side can be turned by the views within a few tens of steps. At +-10 the initialisation held the fit at
    the completion's own guess of the hidden side (oracle, tiny size, multiview: box 0.82 and cylinder 0.83 with
    +-10, the depth backend's 0.83; with +-4 and the fit's density lr 0.5, 100 steps: 0.91 / 0.85)."""


@dataclass
class SJCConfig:
    """Score Jacobian Chaining, the ``zero123`` backend. Defaults are the paper's (10 000 Adamax steps, lr 0.05,
    guidance 100, input view 1e4, near view 1e5, depth smoothness 1e5, radius 1.8-2.2, +z up).

    Schedule study with the oracle (tests/_oracle_helpers.py, a perfect prior: its score is the exact noise
    prediction, so the SJC gradient is ``sqrt(a (1 - a)) (z - x0)``, a regression to the true latent at the random
    view; box 0.10 x 0.06 x 0.12 m, 32^3 field, 16 px renders, 128 px oracle images (16 x 16 latents), IoU in metres):

    - these (the paper's) weights: the field does not move (IoU stays at its initialisation: 0.83 from the depth
      completion, 0.39 from the ball, 200 steps): the exact score has no guidance-100 amplification, and the 1e5
      near-view L1 (a mean, so ~1e5 / 1024 x sign per latent at 16 px) outweighs it;
    - the oracle's equivalent: ``score_weight=100`` (the size of guidance 100's amplification), near view and
      smoothness 0 (with an exact score they only hold the field back):
      from the depth completion with ``density_lr=0.5``: box 0.83 -> 0.86 in 200 steps, cracker box stays at 0.89-0.90
      (at density_lr 1 / 2 single-view steps wear it down to 0.83 / 0.75: keep 0.5 from a good initialisation);
      from the ball (``init_from_depth=False``) with ``density_lr=2``: box 0.385 -> 0.71 (50 steps) -> 0.79 (200)
      -> 0.80 (250) -> 0.82 (400) with rays at pixel centres; at density_lr 0.5 only 0.48 after 200 steps;
    - aliasing, on rendered YCB objects from the ball (soup can / cracker box, IoU at 500 / 1000 steps): with one
      ray per latent pixel at its centre the fit plateaus below 0.8 (0.774 / 0.770, 0.771 / 0.764): a point sample
      is fitted to an area-averaged latent, so the edges blur into a half-transparent fog; ``stratified_rays``
      (each ray at a random position in its pixel, an unbiased sample of the area average): 0.799 / 0.745,
      0.823 / 0.784 (the cracker box 0.80 only at 1750 steps); and 32 px renders (2 x 2 jittered rays per latent,
      area-averaged to it): 0.826 / 0.810, 0.878 / 0.844: IoU 0.8 reached on both by 500 steps and still
      rising. Most of the gain is the 4 rays per latent: 32 px at pixel centres gives the cracker box 0.792 / 0.841;
      the jitter adds 0.02 at 500 steps. A flipped azimuth in the oracle (32 px, jittered): cracker box 0.62 at 500
      and 1000 (box, tiny test: 0.78 at 250 steps at 16 or 32 px with jittered rays, 0.80 at pixel centres);
    - the noise level: with an exact score it only scales the pull by sqrt(a (1 - a)); a narrow mid-schedule range
      (0.45-0.55) did worse than the full (0.2-0.98) from the ball (0.35 vs 0.48 at 200 steps, density lr 0.5), so
      ``t_range`` stays the paper's; a real model's score is sharper at low noise and needs ``t_range_end``.
    The defaults stay the paper's: they were set for a real guided score, which the oracle cannot stand in for.
    bench/bench_reconstruction.py ``ORACLE_SJC`` / ``ORACLE_SJC_BALL`` are the oracle schedules above."""

    steps: int = 10000
    """Optimisation steps (Adamax)."""
    lr: float = 0.05
    """Adamax learning rate (latent features)."""
    density_lr: float = 0.05
    """Adamax learning rate of the raw density (which starts at +-``FieldConfig.init_density``: Adamax moves it by
    about this much a step, so 0.05 needs ~80 steps to turn a voxel; fine for 10 000 steps, too slow for short runs:
    see the oracle study above)."""
    guidance_scale: float = 100.0
    """Classifier-free guidance of the SJC score."""
    input_view_weight: float = 1e4
    """Weight of the input-view reconstruction loss (latent + mask)."""
    near_view_weight: float = 1e5
    """Weight of the near-view consistency loss (L1 on latents and depth against a jittered pose)."""
    depth_smooth_weight: float = 1e5
    """Weight of the depth smoothness loss (applied in the second half of training)."""
    metric_depth_weight: float = 1e4
    """Weight of the input-view metric depth constraint (when depth is given)."""
    radius_range: tuple[float, float] = (1.8, 2.2)
    """Random training camera radius (object units)."""
    polar_range_deg: tuple[float, float] = (30.0, 110.0)
    """Random training camera polar angle."""
    near_view_jitter_deg: float = 5.0
    """Pose jitter of the near-view consistency loss."""
    t_range: tuple[float, float] = (0.2, 0.98)
    """Range (fractions of the training schedule) the SJC noise level is drawn from, uniformly. With an exact score
    the level only scales the pull towards the true view by sqrt(a (1 - a)) (largest mid-schedule), so the oracle
    cannot tell schedules apart; a real model's score is sharper at low noise and needs the annealing below."""
    t_range_end: tuple[float, float] | None = None
    """When set, ``t_range`` is annealed linearly to this range by the last step (None = no annealing)."""
    init_from_depth: bool = True
    """Start from the depth completion when depth is given (else, and when False, from a centred ball: what the
    score alone recovers, the oracle study's "from scratch"). The metric depth and input-view losses apply either
    way."""
    score_weight: float = 1.0
    """Weight of the score-distillation term (1 = the paper; the oracle study needed ~100, see the class docs)."""
    stratified_rays: bool = True
    """Cast each step's rays at random positions within their pixels (input view and random view) instead of at
    pixel centres: the render then matches the model's area-averaged latents in expectation (see the oracle study
    above). A render finer than the latents (``FieldConfig.render_size``) is area-averaged to them."""
    seed: int = 0
    """Random seed (initial field, cameras, noise)."""


@dataclass
class MultiviewConfig:
    """The ``multiview`` fast path: one batched novel-view call, then a short field fit."""

    num_views: int = 6
    """Generated views, evenly spaced in azimuth around the object."""
    polar_offsets_deg: tuple[float, ...] = (0.0, -20.0, 20.0)
    """d_polar of the generated views, cycled over them: besides the input's ring, views from higher up (the top) and
    lower down (the sides' profile). Each is kept within 5..175 deg absolute."""
    num_inference_steps: int = 50
    """DDIM steps of the novel-view call."""
    guidance_scale: float = 3.0
    """Classifier-free guidance of the novel-view call."""
    fit_steps: int = 400
    """Field optimisation steps against the input + generated views."""
    lr: float = 0.05
    """Adamax learning rate of the fit (latent features)."""
    density_lr: float = 0.5
    """Adamax learning rate of the raw density. The density starts at +-``FieldConfig.init_density`` (the depth
    completion) and Adamax moves it by about this much a step, so a voxel can change side in ~8 steps: at 0.05 the
    generated views were ignored (a flipped-azimuth oracle gave the same IoU)."""
    generated_view_weight: float = 0.5
    """Weight of a generated view relative to the real input view."""
    seed: int = 0
    """Random seed."""


@dataclass
class ReconstructionConfig:
    """Settings of :func:`z123_ros.reconstruction.reconstruct`."""

    num_points: int = 20000
    """Points sampled on the output surface."""
    depth: DepthBackendConfig = field(default_factory=DepthBackendConfig)
    """``depth`` backend settings."""
    voxel_field: FieldConfig = field(default_factory=FieldConfig)
    """Voxel field of the learned backends."""
    sjc: SJCConfig = field(default_factory=SJCConfig)
    """``zero123`` backend settings."""
    multiview: MultiviewConfig = field(default_factory=MultiviewConfig)
    """``multiview`` backend settings."""
    device: str = "cpu"
    """Torch device of the learned backends."""
    show_progress: bool = False
    """Show a tqdm progress bar during long optimisations (the CLI turns it on)."""

    @classmethod
    def preset(cls, name: str) -> ReconstructionConfig:
        """``"default"`` (the paper's settings), or ``"quick"`` (small grids and few steps: CPU smoke runs)."""
        if name not in PRESETS:
            raise ConfigError(f"unknown reconstruction preset {name!r}; choose one of {sorted(PRESETS)}")
        return PRESETS[name]()


def _quick() -> ReconstructionConfig:
    return ReconstructionConfig(
        num_points=5000,
        depth=DepthBackendConfig(resolution=64),
        voxel_field=FieldConfig(grid_size=32, render_size=16, samples_per_ray=32),
        sjc=SJCConfig(steps=30),
        multiview=MultiviewConfig(num_views=4, num_inference_steps=4, fit_steps=30),
    )


PRESETS = {"default": ReconstructionConfig, "quick": _quick}


@dataclass
class ReconstructionResult:
    """A reconstructed object: a watertight triangle mesh and a point cloud sampled on it."""

    vertices: np.ndarray
    """(V, 3) float32 mesh vertices in ``frame``."""
    faces: np.ndarray
    """(F, 3) int32 triangles, counter-clockwise seen from outside."""
    points: np.ndarray
    """(N, 3) float32 points sampled on the surface, in ``frame``."""
    metric: bool
    """True when coordinates are metres (the input had metric depth)."""
    frame: str
    """``"camera"`` (OpenCV camera frame of the input view, metres) or ``"object_normalized"`` (object centred,
    longest side 1, +z up)."""
    backend: str
    """Backend that produced the result."""
    confidence: float
    """0..1 heuristic: how much of the shape is supported by evidence rather than priors."""
    timings: dict[str, float]
    """Stage name -> seconds, in execution order."""
    centre: np.ndarray
    """(3,) centre of the mesh's bounding box, in ``frame``."""
    extent_m: np.ndarray
    """(3,) bounding-box size along the frame's axes (metres when ``metric``)."""
    watertight: bool = False
    """True when the mesh is closed and consistently oriented."""
    plane_cam: np.ndarray | None = None
    """(4,) support plane used, camera frame (``n`` towards the camera), when known."""
    info: dict[str, float | str] = field(default_factory=dict)
    """Backend-specific diagnostics (e.g. which completion prior was accepted)."""

    def to_json(self) -> dict:
        """The summary written to result.json."""
        return {
            "backend": self.backend,
            "frame": self.frame,
            "units": "m" if self.metric else "unit_box",
            "metric": self.metric,
            "watertight": bool(self.watertight),
            "num_vertices": int(len(self.vertices)),
            "num_faces": int(len(self.faces)),
            "num_points": int(len(self.points)),
            "centre": [float(x) for x in self.centre],
            "extent": [float(x) for x in self.extent_m],
            "confidence": float(self.confidence),
            "plane_cam": None if self.plane_cam is None else [float(x) for x in self.plane_cam],
            "timings": {k: float(v) for k, v in self.timings.items()},
            "info": {k: (v if isinstance(v, str) else float(v)) for k, v in self.info.items()},
        }


def validate_input(inp: ReconstructionInput, need_depth: bool) -> None:
    """Raise InputError / CameraError unless the input is complete and self-consistent."""
    if not isinstance(inp.intrinsics, CameraIntrinsics):
        raise CameraError(f"intrinsics must be a CameraIntrinsics, got {type(inp.intrinsics).__name__}")
    rgb = np.asarray(inp.rgb)
    mask = np.asarray(inp.mask)
    if mask.ndim != 2:
        raise InputError(f"mask must be a single-channel (H, W) image, got shape {mask.shape}")
    check_frame(rgb, inp.intrinsics, None if inp.depth_m is None else np.asarray(inp.depth_m), mask)
    mask = mask.astype(bool)
    if not mask.any():
        raise InputError("the object mask is empty: no pixel is marked as object")
    for name in ("labels", "occluder_mask"):
        extra = getattr(inp, name)
        if extra is not None and np.asarray(extra).shape != mask.shape:
            raise InputError(f"{name} shape {np.asarray(extra).shape} does not match the mask {mask.shape}")
    coverage = float(np.count_nonzero(mask)) / mask.size
    if coverage > MAX_MASK_FRACTION:
        raise InputError(
            f"the object mask covers {100 * coverage:.0f}% of the image: that is the background or the table, not "
            "an object (segment the frame first)"
        )
    if inp.depth_m is not None:
        depth = np.asarray(inp.depth_m, dtype=np.float64)
        valid = np.isfinite(depth) & (depth > 0)
        if not valid[mask].any():
            raise InputError("depth has no valid (finite, > 0) pixel inside the object mask")
    elif need_depth:
        raise InputError("this backend needs metric depth (depth_m is None); use --depth or the zero123 backend")
    if inp.T_cam_from_world is not None:
        check_rigid(inp.T_cam_from_world, "T_cam_from_world")
    if inp.support_plane_cam is not None:
        plane = np.asarray(inp.support_plane_cam, dtype=np.float64).ravel()
        if plane.size != 4 or not np.all(np.isfinite(plane)) or np.linalg.norm(plane[:3]) < 1e-9:
            raise InputError(f"support_plane_cam must be 4 finite numbers with a non-zero normal, got {plane}")
    if inp.depth_m is not None:
        _check_not_the_support_surface(inp, mask)


def _check_not_the_support_surface(inp: ReconstructionInput, mask: np.ndarray) -> None:
    """InputError when the masked pixels are the table: (nearly) all on the known support plane, or, without a
    plane, one flat surface covering half the image (a box face seen that close still shows a second face or the
    table around it)."""
    points, _ = inp.intrinsics.backproject(np.asarray(inp.depth_m, dtype=np.float64), mask)
    if len(points) < 30:
        return
    plane = None
    if inp.support_plane_cam is not None:
        plane = orient_plane(inp.support_plane_cam)
    elif inp.T_cam_from_world is not None:
        plane = plane_from_pose(inp.T_cam_from_world)
    if plane is not None:
        on_plane = float(np.mean(np.abs(points @ plane[:3] + plane[3]) < SUPPORT_SURFACE_M))
        if on_plane > 0.9:
            raise InputError(
                f"{100 * on_plane:.0f}% of the masked depth lies on the support plane: the mask is the table, not an "
                "object standing on it"
            )
        return
    if np.count_nonzero(mask) > 0.5 * mask.size:
        fit = fit_plane_ransac(points, SUPPORT_SURFACE_M, min_inlier_fraction=0.9)
        if fit is not None:
            raise InputError(
                f"the mask covers {100 * np.count_nonzero(mask) / mask.size:.0f}% of the image and its depth is one "
                "flat surface: that is the table or a wall, not an object"
            )
