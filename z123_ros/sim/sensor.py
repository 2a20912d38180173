"""A depth-camera model applied to rendered (exact) RGB-D: what a consumer depth sensor would have measured instead.

Presets follow published characterisations, not our data:

- ``structured_light`` (Kinect v1 / ASUS Xtion): axial noise sigma_z = 1.2 mm + 1.9 mm * (z - 0.4 m)^2 plus a term
  growing as theta^2 / (pi/2 - theta)^2 at incidence angle theta (Nguyen, Izadi, Lovell 2012, "Modeling Kinect sensor
  noise"); depth quantised in disparity (steps ~2.8 mm at 1 m, growing with z^2: Khoshelham and Elberink 2012);
  the projector 7.5 cm beside the IR camera casts shadows (holes) beside occluding edges on the side away from it,
  and registering depth to the colour camera 2.5 cm away leaves holes on the other side;
  lateral jitter of ~1 px along edges; mixed-depth "flying" pixels at silhouettes; no depth on dark/specular surfaces,
  structures thinner than the speckle correlation window, or outside 0.5-4 m; a small per-frame offset.
- ``active_stereo`` (Intel RealSense D435): RMS error z^2 * subpixel / (f * baseline) with subpixel 0.08 and a 50 mm
  baseline (Intel's D400 depth-tuning white paper); holes where the second imager cannot see the surface; 0.17 m
  minimum range.
- ``ideal``: exact depth and colour (the identity).

Colour: exposure and white-balance gains per frame, shot + read noise, and a small colour-depth misregistration (the
depth image is shifted against the colour image, as after an imperfect factory registration).

Pure numpy/scipy/cv2, deterministic per seed. Depth holes are NaN.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage, special

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import ConfigError, InputError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SensorConfig:
    """Every knob of the sensor model. All-zero knobs (the ``ideal`` preset) leave the frame unchanged."""

    name: str = "ideal"
    """Preset name, for logs and reports."""
    axial_sigma_base_m: float = 0.0
    """Structured-light axial noise: constant term of sigma_z, metres (Kinect v1: 0.0012)."""
    axial_sigma_quad_m: float = 0.0
    """Structured-light axial noise: coefficient of (z - z0)^2, metres per m^2 (Kinect v1: 0.0019)."""
    axial_sigma_z0_m: float = 0.4
    """Range at which the quadratic term of sigma_z vanishes, metres."""
    grazing_sigma_m: float = 0.0
    """Incidence-angle term of sigma_z: this many metres * theta^2 / (pi/2 - theta)^2 / sqrt(z) (Kinect v1: 1e-4)."""
    stereo_subpixel_px: float = 0.0
    """Active stereo: disparity RMS error in pixels; sigma_z = z^2 * subpixel / (f * baseline) (D435: 0.08)."""
    stereo_baseline_m: float = 0.05
    """Active stereo: distance between the two imagers, metres (only used with ``stereo_subpixel_px`` > 0)."""
    stereo_focal_px: float | None = None
    """Active stereo: focal length of the depth imagers, pixels; None = the frame's fx (noise grows at lower res)."""
    disparity_step_at_1m_m: float = 0.0
    """Depth quantisation step at 1 m, metres; steps grow with z^2 because disparity is quantised (Kinect: 0.0028)."""
    occlusion_baseline_m: float = 0.0
    """Signed x offset (camera frame, +x = image right) of the projector / second imager from the frame's camera,
    metres; 0 = no shadows. Surfaces it cannot see get no depth: a band beside each occluding edge on the side away
    from it."""
    registration_offset_m: float = 0.0
    """Signed x offset of the depth camera from the colour camera the depth is registered to (aligned_depth_to_color),
    metres; 0 = depth in its own camera. Surfaces the colour camera sees but the depth camera does not get no depth."""
    lateral_edge_noise_px: float = 0.0
    """Standard deviation of the lateral jitter of depth edges, pixels (Kinect v1: ~0.8-1 px)."""
    edge_band_px: int = 2
    """Width of the band either side of a depth edge that lateral jitter and flying pixels act on, pixels."""
    edge_jump_m: float = 0.02
    """A neighbour-to-neighbour depth difference above this (relative: times z) counts as an occluding edge."""
    flying_pixel_prob: float = 0.0
    """Probability that a silhouette pixel gets a mixed depth between the foreground and the background."""
    dark_threshold: float = 0.08
    """Surfaces whose albedo (0..1, the material's luminance before lighting) is below this count as dark: black
    plastic, cables (little IR returns)."""
    dark_dropout_prob: float = 0.0
    """Probability that a dark pixel has no depth (applied in spatially coherent blobs)."""
    specular_threshold: float = 0.96
    """Surfaces whose albedo is above this and that face the camera within ``specular_incidence_deg`` count as
    specular (the projected pattern saturates in the mirror reflection)."""
    specular_incidence_deg: float = 15.0
    """Incidence angle below which a bright surface reflects the pattern straight back, degrees."""
    specular_dropout_prob: float = 0.0
    """Probability that a specular pixel has no depth."""
    max_incidence_deg: float = 90.0
    """Surfaces seen at a larger incidence angle than this get no depth (grazing: the pattern smears out)."""
    thin_part_px: int = 0
    """Structures standing out towards the camera narrower than this many pixels get no depth (0 = off)."""
    thin_dropout_prob: float = 1.0
    """Probability that a thin-structure pixel has no depth."""
    random_dropout_prob: float = 0.0
    """Probability of a hole anywhere (spatially coherent blobs), the residual speckle-matching failures."""
    dropout_blob_px: float = 2.0
    """Spatial correlation of dropout blobs, pixels (Gaussian sigma of the underlying random field)."""
    min_range_m: float = 0.0
    """Closer than this: no depth, metres."""
    max_range_m: float = float("inf")
    """Farther than this: no depth, metres."""
    frame_bias_rel_sigma: float = 0.0
    """Per-frame depth offset, drawn once per frame: bias = z * N(0, this) (a calibration drift)."""
    exposure_sigma: float = 0.0
    """Per-frame exposure: colour times exp(N(0, this))."""
    white_balance_sigma: float = 0.0
    """Per-frame white balance: each channel times 1 + N(0, this)."""
    colour_read_noise: float = 0.0
    """Colour read noise, standard deviation in 8-bit levels."""
    colour_shot_noise: float = 0.0
    """Colour shot noise: standard deviation sqrt(level) times this, 8-bit levels."""
    misregistration_px: float = 0.0
    """Colour-depth misregistration: the depth image is shifted by this many pixels in a per-frame direction."""

    def check(self) -> None:
        """Raise ConfigError naming the first bad value."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            signed = f.name in ("occlusion_baseline_m", "registration_offset_m")
            if isinstance(value, float | int) and not isinstance(value, bool) and value < 0 and not signed:
                raise ConfigError(f"sensor {self.name}: {f.name} must be >= 0, got {value}")
        for name in ("flying_pixel_prob", "dark_dropout_prob", "specular_dropout_prob", "thin_dropout_prob"):
            if getattr(self, name) > 1:
                raise ConfigError(f"sensor {self.name}: {name} is a probability, got {getattr(self, name)}")
        if self.random_dropout_prob > 1:
            raise ConfigError(f"sensor {self.name}: random_dropout_prob is a probability")
        if not self.min_range_m < self.max_range_m:
            raise ConfigError(f"sensor {self.name}: need min_range_m < max_range_m")
        if self.stereo_subpixel_px > 0 and self.stereo_baseline_m <= 0:
            raise ConfigError(f"sensor {self.name}: stereo_baseline_m must be > 0")

    def axial_sigma_m(self, z_m: np.ndarray, incidence_rad: np.ndarray | float = 0.0, focal_px: float = 1.0):
        """The specified axial (z) noise standard deviation, metres, at range ``z_m`` and incidence angle."""
        z = np.asarray(z_m, dtype=np.float64)
        theta = np.clip(np.asarray(incidence_rad, dtype=np.float64), 0.0, np.deg2rad(89.0))
        sigma = self.axial_sigma_base_m + self.axial_sigma_quad_m * (z - self.axial_sigma_z0_m) ** 2
        sigma = sigma + self.grazing_sigma_m / np.sqrt(np.maximum(z, 1e-3)) * theta**2 / (np.pi / 2 - theta) ** 2
        if self.stereo_subpixel_px > 0:
            f = self.stereo_focal_px or focal_px
            sigma = sigma + z**2 * self.stereo_subpixel_px / (f * self.stereo_baseline_m)
        return sigma

    def quantisation_step_m(self, z_m: np.ndarray | float) -> np.ndarray:
        """Depth quantisation step at range ``z_m``, metres (0 = not quantised)."""
        return self.disparity_step_at_1m_m * np.asarray(z_m, dtype=np.float64) ** 2


SENSOR_PRESETS: dict[str, SensorConfig] = {
    "ideal": SensorConfig(name="ideal"),
    "structured_light": SensorConfig(
        name="structured_light",
        axial_sigma_base_m=0.0012,
        axial_sigma_quad_m=0.0019,
        axial_sigma_z0_m=0.4,
        grazing_sigma_m=0.0001,
        disparity_step_at_1m_m=0.0028,
        # Kinect v1 / Xtion: projector 7.5 cm from the IR camera, the colour camera 2.5 cm from the IR camera
        # between them; depth is registered to colour, so seen from the colour camera the projector is 5 cm to one
        # side and the IR camera 2.5 cm to the other.
        occlusion_baseline_m=0.05,
        registration_offset_m=-0.025,
        lateral_edge_noise_px=0.9,
        flying_pixel_prob=0.3,
        dark_dropout_prob=0.7,
        specular_dropout_prob=0.5,
        max_incidence_deg=80.0,
        thin_part_px=5,
        thin_dropout_prob=0.8,
        random_dropout_prob=0.01,
        min_range_m=0.5,
        max_range_m=4.0,
        frame_bias_rel_sigma=0.002,
        exposure_sigma=0.12,
        white_balance_sigma=0.04,
        colour_read_noise=2.0,
        colour_shot_noise=0.5,
        misregistration_px=1.0,
    ),
    "active_stereo": SensorConfig(
        name="active_stereo",
        stereo_subpixel_px=0.08,
        stereo_baseline_m=0.05,
        # D435: imagers 50 mm apart, the colour camera 15 mm beside the left (reference) imager, away from the right.
        occlusion_baseline_m=-0.065,
        registration_offset_m=-0.015,
        lateral_edge_noise_px=0.7,
        flying_pixel_prob=0.2,
        dark_dropout_prob=0.3,
        specular_dropout_prob=0.4,
        max_incidence_deg=80.0,
        thin_part_px=3,
        thin_dropout_prob=0.6,
        random_dropout_prob=0.01,
        min_range_m=0.17,
        max_range_m=6.0,
        frame_bias_rel_sigma=0.002,
        exposure_sigma=0.15,
        white_balance_sigma=0.05,
        colour_read_noise=2.5,
        colour_shot_noise=0.6,
        misregistration_px=1.0,
    ),
}


def resolve_sensor(sensor: str | SensorConfig) -> SensorConfig:
    """A SensorConfig from a preset name or a config; ConfigError naming the presets for an unknown name."""
    if isinstance(sensor, SensorConfig):
        return sensor
    if sensor not in SENSOR_PRESETS:
        raise ConfigError(f"unknown sensor {sensor!r}; presets are {sorted(SENSOR_PRESETS)}")
    return SENSOR_PRESETS[sensor]


def _rays(intrinsics: CameraIntrinsics) -> np.ndarray:
    """(H, W, 3) float32 viewing rays (x/z, y/z, 1) of every pixel."""
    u = (np.arange(intrinsics.width, dtype=np.float32) - intrinsics.cx) / intrinsics.fx
    v = (np.arange(intrinsics.height, dtype=np.float32) - intrinsics.cy) / intrinsics.fy
    rays = np.empty((intrinsics.height, intrinsics.width, 3), dtype=np.float32)
    rays[..., 0] = u[None, :]
    rays[..., 1] = v[:, None]
    rays[..., 2] = 1.0
    return rays


def normals_from_depth(depth_m: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """(H, W, 3) unit normals in the camera frame from depth (central differences), facing the camera; NaN holes."""
    points = _rays(intrinsics) * depth_m.astype(np.float32)[..., None]
    du = np.gradient(points, axis=1)
    dv = np.gradient(points, axis=0)
    n = np.cross(du, dv)
    n /= np.linalg.norm(n, axis=-1, keepdims=True) + 1e-12
    n *= -np.sign(np.sum(n * points, axis=-1, keepdims=True) + 1e-30)  # towards the camera
    return n


def _incidence(depth_m: np.ndarray, intrinsics: CameraIntrinsics, normals: np.ndarray | None) -> np.ndarray:
    """Incidence angle (radians) between the viewing ray and the surface normal; 0 where unknown."""
    if normals is None:
        normals = normals_from_depth(depth_m, intrinsics)
    rays = _rays(intrinsics)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    cos = np.abs(np.sum(rays * normals, axis=-1))
    theta = np.arccos(np.clip(cos, 0.0, 1.0))
    return np.where(np.isfinite(theta), theta, 0.0).astype(np.float32)


def _coherent_uniform(shape: tuple[int, int], sigma_px: float, rng: np.random.Generator) -> np.ndarray:
    """A spatially correlated random field with uniform(0, 1) marginals: thresholding it gives blob-shaped holes."""
    field = rng.standard_normal(shape)
    if sigma_px > 0:
        field = ndimage.gaussian_filter(field, sigma_px, mode="reflect")
        field /= field.std() + 1e-12
    return special.ndtr(field)


def _edge_mask(depth: np.ndarray, jump_rel: float) -> np.ndarray:
    """Pixels beside an occluding edge (a relative depth jump to a 4-neighbour, or a hole next to a surface)."""
    d = np.where(np.isfinite(depth), depth, 1e3)
    edge = np.zeros(d.shape, dtype=bool)
    for axis in (0, 1):
        diff = np.abs(np.diff(d, axis=axis)) > jump_rel * np.minimum(
            np.delete(d, -1, axis=axis), np.delete(d, 0, axis=axis)
        )
        if axis == 0:
            edge[:-1] |= diff
            edge[1:] |= diff
        else:
            edge[:, :-1] |= diff
            edge[:, 1:] |= diff
    return edge


def occlusion_shadow(depth_m: np.ndarray, fx: float, baseline_m: float) -> np.ndarray:
    """(H, W) bool: surfaces the projector (or second imager) at ``baseline_m`` along +x cannot see.

    The other view sees pixel u at column u - f b / z. A pixel is hidden when a closer surface on the same row, on the
    side of the other view, maps to the same or a further column in that view (the monotonic order breaks).
    """
    if baseline_m == 0:
        return np.zeros(depth_m.shape, dtype=bool)
    H, W = depth_m.shape
    finite = np.isfinite(depth_m) & (depth_m > 0)
    disparity = np.where(finite, fx * baseline_m / np.where(finite, depth_m, 1.0), 0.0)
    columns = np.arange(W, dtype=np.float64)[None, :] - disparity  # column in the other view
    if baseline_m < 0:  # mirror so that the other view is always on the +x side
        columns = -columns[:, ::-1]
        finite = finite[:, ::-1]
    # Suffix minimum over the pixels strictly to the right (towards the other view).
    suffix = np.minimum.accumulate(columns[:, ::-1], axis=1)[:, ::-1]
    right_min = np.concatenate([suffix[:, 1:], np.full((H, 1), np.inf)], axis=1)
    shadow = finite & (columns >= right_min)
    return shadow[:, ::-1] if baseline_m < 0 else shadow


def thin_structures(depth_m: np.ndarray, width_px: int, jump_rel: float) -> np.ndarray:
    """(H, W) bool: surface narrower than ``width_px`` standing out towards the camera (a grey opening removes it)."""
    if width_px <= 1:
        return np.zeros(depth_m.shape, dtype=bool)
    near = -np.where(np.isfinite(depth_m), depth_m, 1e3)
    opened = ndimage.grey_opening(near, size=(width_px, width_px))
    return np.isfinite(depth_m) & ((near - opened) > jump_rel * depth_m)


def _jitter_maps(shape: tuple[int, int], config: SensorConfig, band: np.ndarray, rng: np.random.Generator):
    """cv2.remap maps moving edge-band pixels by a smooth random offset of ``lateral_edge_noise_px`` RMS per axis."""
    H, W = shape
    offsets = []
    for _ in range(2):
        # Smoothed: real edges wander over a few pixels rather than flicker pixel by pixel.
        field = ndimage.gaussian_filter(rng.standard_normal((H, W)), 1.5)
        offsets.append(field / (field.std() + 1e-12) * config.lateral_edge_noise_px)
    v, u = np.mgrid[0:H, 0:W].astype(np.float32)
    return (u + offsets[0] * band).astype(np.float32), (v + offsets[1] * band).astype(np.float32)


def _remap_nearest(image: np.ndarray, maps: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return cv2.remap(image, maps[0], maps[1], interpolation=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def _flying_pixels(depth: np.ndarray, config: SensorConfig, band: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Silhouette pixels take a depth between the nearest and farthest surface around them (mixed returns)."""
    finite = np.isfinite(depth)
    filled = np.where(finite, depth, np.nan)
    lo = ndimage.minimum_filter(np.where(finite, depth, np.inf), size=3)
    hi = ndimage.maximum_filter(np.where(finite, depth, -np.inf), size=3)
    candidates = band & finite & np.isfinite(lo) & np.isfinite(hi) & (hi - lo > config.edge_jump_m * lo)
    pick = candidates & (rng.uniform(size=depth.shape) < config.flying_pixel_prob)
    mix = rng.uniform(size=depth.shape)
    filled[pick] = lo[pick] + mix[pick] * (hi[pick] - lo[pick])
    return filled


def _axial_noise(
    depth: np.ndarray, config: SensorConfig, incidence: np.ndarray, focal_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Gaussian axial noise whose total spread, after quantisation, is the specified sigma_z."""
    z = np.where(np.isfinite(depth), depth, 1.0).astype(np.float64)
    # Steeper surfaces get no depth at all; capping here keeps silhouette pixels (whose estimated normals are
    # meaningless) from drawing metre-scale noise when a jittered or flying sample lands on them.
    incidence = np.minimum(incidence, np.deg2rad(config.max_incidence_deg))
    sigma = config.axial_sigma_m(z, incidence, focal_px)
    step = config.quantisation_step_m(z)
    # Quantisation adds step^2 / 12 of variance (Sheppard): the published sigma is of the quantised output.
    sigma_gauss = np.sqrt(np.maximum(sigma**2 - step**2 / 12.0, 0.0))
    noisy = depth + rng.standard_normal(depth.shape) * sigma_gauss
    return noisy


def quantise_depth(depth: np.ndarray, step_at_1m_m: float) -> np.ndarray:
    """Round depth in disparity (1 / z) with a step of ``step_at_1m_m`` per metre: z-steps of step * z^2."""
    if step_at_1m_m <= 0:
        return depth
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = 1.0 / depth
        return (1.0 / (np.round(inverse / step_at_1m_m) * step_at_1m_m)).astype(depth.dtype)


def _dropout(
    depth_true: np.ndarray, albedo: np.ndarray, config: SensorConfig, incidence: np.ndarray, fx: float, rng
) -> np.ndarray:
    """(H, W) bool: where the sensor returns no depth (shadows, dark, specular, thin, grazing, random blobs)."""
    hole = occlusion_shadow(depth_true, fx, config.occlusion_baseline_m)
    hole |= occlusion_shadow(depth_true, fx, config.registration_offset_m)
    field = _coherent_uniform(depth_true.shape, config.dropout_blob_px, rng)
    if config.dark_dropout_prob > 0:
        hole |= (albedo < config.dark_threshold) & (field < config.dark_dropout_prob)
    if config.specular_dropout_prob > 0:
        head_on = incidence < np.deg2rad(config.specular_incidence_deg)
        hole |= (albedo > config.specular_threshold) & head_on & (field < config.specular_dropout_prob)
    if config.thin_part_px > 1:
        thin = thin_structures(depth_true, config.thin_part_px, config.edge_jump_m)
        hole |= thin & (rng.uniform(size=thin.shape) < config.thin_dropout_prob)
    if config.max_incidence_deg < 90:
        hole |= incidence > np.deg2rad(config.max_incidence_deg)
    if config.random_dropout_prob > 0:
        hole |= _coherent_uniform(depth_true.shape, config.dropout_blob_px, rng) < config.random_dropout_prob
    return hole


def _shift(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Translate an image by (dx, dy) pixels, nearest sample (no invented depths), NaN where nothing came in."""
    H, W = image.shape[:2]
    M = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy]])
    return cv2.warpAffine(
        image, M, (W, H), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan")
    )


def apply_colour(rgb: np.ndarray, config: SensorConfig, rng: np.random.Generator) -> np.ndarray:
    """Exposure, white balance, shot and read noise on an 8-bit colour image."""
    if not (
        config.exposure_sigma or config.white_balance_sigma or config.colour_read_noise or config.colour_shot_noise
    ):
        return rgb.copy()
    gain = np.exp(rng.normal(0.0, config.exposure_sigma)) * (1.0 + rng.normal(0.0, config.white_balance_sigma, 3))
    level = rgb.astype(np.float32) * gain.astype(np.float32)
    noise_sd = np.sqrt(config.colour_read_noise**2 + config.colour_shot_noise**2 * np.maximum(level, 0.0))
    level = level + rng.standard_normal(rgb.shape).astype(np.float32) * noise_sd
    return np.clip(np.round(level), 0, 255).astype(np.uint8)


def apply_sensor(
    rgb: np.ndarray,
    depth_m: np.ndarray,
    intrinsics: CameraIntrinsics,
    config: SensorConfig | str,
    seed: int,
    normals_cam: np.ndarray | None = None,
    albedo: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """What the sensor measures of exact ``(rgb, depth_m)``: ``(rgb uint8, depth_m float32 with NaN holes)``.

    ``normals_cam`` (H, W, 3), when given, are the true surface normals in the camera frame (else estimated from depth).
    ``albedo`` (H, W) in [0, 1], when given, is the surfaces' material luminance before lighting, which decides dark
    and specular dropout (else the luminance of ``rgb``, which also darkens shaded surfaces). Deterministic: the same
    inputs and seed give identical outputs.
    """
    config = resolve_sensor(config)
    config.check()
    rgb = np.asarray(rgb)
    depth = np.asarray(depth_m, dtype=np.float32)
    if rgb.shape[:2] != depth.shape or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InputError(f"rgb {rgb.shape} and depth {depth.shape} must be (H, W, 3) and (H, W)")
    if depth.shape != (intrinsics.height, intrinsics.width):
        raise InputError(f"depth {depth.shape} does not match the camera {intrinsics.height}x{intrinsics.width}")
    rng = np.random.default_rng([int(seed), 1013])
    if dataclasses.replace(config, name="ideal") == SENSOR_PRESETS["ideal"]:
        return rgb.astype(np.uint8, copy=True), depth.copy()
    depth_true = np.where(depth > 0, depth, np.nan).astype(np.float32)
    incidence = _incidence(depth_true, intrinsics, normals_cam)
    if albedo is None:
        albedo = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) / 255.0
    hole = _dropout(depth_true, np.asarray(albedo, dtype=np.float32), config, incidence, intrinsics.fx, rng)
    out = depth_true
    band = ndimage.binary_dilation(_edge_mask(depth_true, config.edge_jump_m), iterations=max(1, config.edge_band_px))
    if config.lateral_edge_noise_px > 0:
        maps = _jitter_maps(out.shape, config, band, rng)
        out = _remap_nearest(out, maps)
        hole = _remap_nearest(hole.astype(np.uint8), maps) > 0
        incidence = _remap_nearest(incidence, maps)  # a moved sample keeps its own surface's noise
    if config.flying_pixel_prob > 0:
        out = _flying_pixels(out, config, band, rng)
    out = _axial_noise(out, config, incidence, intrinsics.fx, rng)
    if config.frame_bias_rel_sigma > 0:
        out = out * (1.0 + rng.normal(0.0, config.frame_bias_rel_sigma))
    out = quantise_depth(out, config.disparity_step_at_1m_m)
    out_of_range = ~((depth_true >= config.min_range_m) & (depth_true <= config.max_range_m))
    out = np.where(hole | out_of_range, np.nan, out).astype(np.float32)
    if config.misregistration_px > 0:
        angle = rng.uniform(0.0, 2.0 * np.pi)
        out = _shift(out, config.misregistration_px * np.cos(angle), config.misregistration_px * np.sin(angle))
    colour = apply_colour(rgb.astype(np.uint8), config, rng)
    logger.debug("sensor %s: %.1f %% holes", config.name, 100.0 * float(np.mean(~np.isfinite(out))))
    return colour, out
