"""Seeded tabletop scenes of real scanned objects, rendered as a robot's RGB-D camera sees them.

World frame = table frame: +z up, the table top at z = 0, the scene centred on the origin. The camera is an OpenCV
pinhole camera at ``camera_height_m`` above the table and ``camera_distance_m`` (horizontal) from the look-at point,
at azimuth ``camera_azimuth_deg`` (0 = on the +x side, counter-clockwise seen from above).

Everything is a pure function of :class:`SceneConfig`: the same config gives byte-identical images.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import trimesh

from z123_ros.camera import CameraIntrinsics, invert, look_at
from z123_ros.errors import ConfigError
from z123_ros.io import CameraModel
from z123_ros.sim.objects import OBJECT_NAMES, _load_canonical, object_colour
from z123_ros.sim.renderer import LightConfig, TinyRenderer

logger = logging.getLogger(__name__)


@dataclass
class SceneConfig:
    """What to put on the table and where the camera is. Defaults: a robot's head camera over a small table scene."""

    seed: int = 0
    """Seed of every random choice (objects, yaw, placement, camera azimuth when not given, depth noise)."""
    num_objects: int = 3
    """Number of objects drawn from the catalogue (ignored when ``object_names`` is given)."""
    object_names: tuple[str, ...] | None = None
    """Explicit YCB object names (see ``OBJECT_NAMES``); None = draw ``num_objects`` distinct ones from the seed."""
    width: int = 640
    """Image width, pixels."""
    height: int = 480
    """Image height, pixels."""
    fov_deg: float = 60.0
    """Horizontal field of view, degrees (square pixels, principal point at the image centre)."""
    camera_height_m: float = 0.45
    """Height of the camera centre above the table top, metres."""
    camera_distance_m: float = 0.55
    """Horizontal distance from the camera centre to the look-at point, metres."""
    camera_azimuth_deg: float | None = 0.0
    """Azimuth of the camera around the look-at point, degrees; None = drawn from the seed."""
    target_height_m: float = 0.04
    """Height above the table of the point the camera looks at, metres."""
    placement_radius_m: float = 0.15
    """Object centres are drawn uniformly in a disk of this radius around the origin (grown if they do not fit)."""
    min_gap_m: float = 0.01
    """Minimum clearance between object footprints (convex hulls), metres."""
    touching: bool = False
    """Place each object after the first in contact with an earlier one (for segmentation of touching objects)."""
    with_table: bool = True
    """Render pybullet_data's textured table under the objects (else the objects float on a white background)."""
    depth_noise_m: float = 0.0
    """Standard deviation of Gaussian noise added to valid depth pixels, metres (0 = exact depth)."""
    near_m: float = 0.01
    """Near clipping distance, metres."""
    far_m: float = 10.0
    """Far clipping distance, metres; beyond it depth is NaN."""
    compute_visible_fraction: bool = True
    """Render each object alone to report its visible fraction (one extra render per object)."""
    light: LightConfig = field(default_factory=LightConfig)
    """Lighting of the TinyRenderer."""

    def resolved_object_names(self) -> tuple[str, ...]:
        """The object names this config puts on the table, in id order (1, 2, ...)."""
        if self.object_names is not None:
            return tuple(self.object_names)
        rng = np.random.default_rng([self.seed, 0])
        picks = rng.choice(len(OBJECT_NAMES), size=self.num_objects, replace=False)
        return tuple(OBJECT_NAMES[i] for i in picks)

    def check(self) -> None:
        """Raise ConfigError naming the first bad value."""
        n = len(self.object_names) if self.object_names is not None else self.num_objects
        if not 1 <= n <= 12:
            raise ConfigError(f"a scene holds 1..12 objects, got {n}")
        if self.object_names is None and n > len(OBJECT_NAMES):
            raise ConfigError(f"num_objects={n} exceeds the catalogue of {len(OBJECT_NAMES)} objects")
        if self.object_names is not None and len(set(self.object_names)) != len(self.object_names):
            raise ConfigError(f"object_names has duplicates: {list(self.object_names)}")
        if not (8 <= self.width <= 4096 and 8 <= self.height <= 4096):
            raise ConfigError(f"image size {self.width}x{self.height} is outside 8..4096 pixels")
        if not 1.0 <= self.fov_deg <= 170.0:
            raise ConfigError(f"fov_deg must be in [1, 170], got {self.fov_deg}")
        if self.camera_height_m <= self.target_height_m and self.camera_distance_m <= 0:
            raise ConfigError("the camera coincides with or looks up at the look-at point")
        if self.camera_distance_m < 0 or self.placement_radius_m < 0 or self.min_gap_m < 0:
            raise ConfigError("camera_distance_m, placement_radius_m and min_gap_m must be >= 0")
        if not 0 < self.near_m < self.far_m:
            raise ConfigError(f"need 0 < near_m < far_m, got {self.near_m}, {self.far_m}")
        if self.depth_noise_m < 0:
            raise ConfigError(f"depth_noise_m must be >= 0, got {self.depth_noise_m}")

    def intrinsics(self) -> CameraIntrinsics:
        return CameraIntrinsics.from_fov(self.fov_deg, self.width, self.height)


@dataclass
class SceneObject:
    """Ground truth of one object in a rendered scene."""

    id: int
    """Instance id, 1..N; the value of its pixels in ``RenderedScene.instance_ids``."""
    name: str
    """YCB object name."""
    mesh_world: trimesh.Trimesh
    """The scan in metres, in the world (table) frame."""
    visible_fraction: float
    """Visible pixels / pixels when rendered alone from the same camera (NaN if not computed or off-screen)."""
    T_world_from_object: np.ndarray
    """4x4 pose of the canonical scan (``load_object_mesh(name)``) in the world frame."""
    colour_rgb: tuple[float, float, float]
    """Flat colour it was rendered with, RGB in [0, 1]."""
    pixel_count: int
    """Number of visible pixels."""


@dataclass
class RenderedScene:
    """One RGB-D frame of a tabletop scene with its ground truth."""

    rgb: np.ndarray
    """(H, W, 3) uint8 colour image."""
    depth_m: np.ndarray
    """(H, W) float32 metric z-depth, NaN where nothing was hit (beyond the table)."""
    instance_ids: np.ndarray
    """(H, W) int32: 0 = background or table, k > 0 = object k."""
    intrinsics: CameraIntrinsics
    """Pinhole intrinsics (OpenCV)."""
    T_cam_from_world: np.ndarray
    """4x4 world (table frame, +z up, top at z = 0) -> camera (OpenCV)."""
    objects: list[SceneObject]
    """Ground truth per object, in id order."""
    config: SceneConfig
    """The config that produced this scene."""

    @property
    def T_world_from_cam(self) -> np.ndarray:
        return invert(self.T_cam_from_world)

    def mask(self, object_id: int) -> np.ndarray:
        """(H, W) bool mask of object ``object_id``."""
        return self.instance_ids == object_id

    def object(self, object_id: int) -> SceneObject:
        for obj in self.objects:
            if obj.id == object_id:
                return obj
        raise KeyError(f"no object with id {object_id}; ids are {[o.id for o in self.objects]}")

    def camera_model(self) -> CameraModel:
        """The CAMERA.json content for this frame (depth saved as float metres or mm PNG)."""
        return CameraModel(self.intrinsics, self.T_cam_from_world.copy(), "mm")

    @property
    def support_plane_cam(self) -> np.ndarray:
        """The table plane ``n . p + d = 0`` in the camera frame, normal towards the camera side (world +z)."""
        R, t = self.T_cam_from_world[:3, :3], self.T_cam_from_world[:3, 3]
        n = R @ np.array([0.0, 0.0, 1.0])
        return np.append(n, -float(n @ t))


def camera_pose(config: SceneConfig, rng: np.random.Generator | None = None) -> np.ndarray:
    """``T_cam_from_world`` of the scene camera described by ``config``."""
    azimuth = config.camera_azimuth_deg
    if azimuth is None:
        rng = rng or np.random.default_rng([config.seed, 2])
        azimuth = float(rng.uniform(0.0, 360.0))
    a = np.deg2rad(azimuth)
    target = np.array([0.0, 0.0, config.target_height_m])
    eye = np.array([config.camera_distance_m * np.cos(a), config.camera_distance_m * np.sin(a), config.camera_height_m])
    return invert(look_at(eye, target))


def _yaw_pose(x: float, y: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = [x, y]
    return T


def _footprint(vertices: np.ndarray, yaw: float) -> np.ndarray:
    """Convex hull (K, 2) of the object's footprint after a yaw about its origin, counter-clockwise."""
    from scipy.spatial import ConvexHull

    c, s = np.cos(yaw), np.sin(yaw)
    xy = vertices[:, :2] @ np.array([[c, s], [-s, c]])
    hull = ConvexHull(xy)
    return xy[hull.vertices]


def _separation(a: np.ndarray, b: np.ndarray) -> float:
    """Largest gap between the projections of two convex polygons on their edge normals.

    Positive: separated by at least this much (a lower bound of their distance). <= 0: they overlap.
    """
    best = -np.inf
    for poly in (a, b):
        edges = np.roll(poly, -1, axis=0) - poly
        normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
        normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
        pa, pb = a @ normals.T, b @ normals.T
        gaps = np.maximum(pb.min(axis=0) - pa.max(axis=0), pa.min(axis=0) - pb.max(axis=0))
        best = max(best, float(gaps.max()))
    return best


def _place_objects(config: SceneConfig, names: tuple[str, ...], rng: np.random.Generator) -> list[np.ndarray]:
    """Seeded (x, y, yaw) placement: footprints keep ``min_gap_m`` apart, or touch when ``config.touching``."""
    placed: list[np.ndarray] = []  # world footprints
    poses: list[np.ndarray] = []
    gap = 0.0 if config.touching else config.min_gap_m
    for index, name in enumerate(names):
        vertices, _ = _load_canonical(name)
        yaw = float(rng.uniform(0.0, 2.0 * np.pi))
        local = _footprint(vertices, yaw)
        radius = config.placement_radius_m
        for attempt in range(400):
            if config.touching and placed:
                xy = _touching_position(local, placed, rng)
            else:
                r = radius * np.sqrt(rng.uniform())
                phi = rng.uniform(0.0, 2.0 * np.pi)
                xy = np.array([r * np.cos(phi), r * np.sin(phi)])
            if xy is not None and all(_separation(local + xy, other) >= gap for other in placed):
                break
            if attempt % 50 == 49:
                radius *= 1.25  # crowded: let the scene spread out rather than fail
        else:
            raise ConfigError(f"could not place {name} (object {index + 1}) without overlap; use fewer objects")
        placed.append(local + xy)
        poses.append(_yaw_pose(float(xy[0]), float(xy[1]), yaw))
    return poses


def _touching_position(local: np.ndarray, placed: list[np.ndarray], rng: np.random.Generator) -> np.ndarray | None:
    """A position where ``local`` touches a random earlier footprint from a random direction (about 1 mm apart)."""
    anchor = placed[int(rng.integers(len(placed)))]
    phi = rng.uniform(0.0, 2.0 * np.pi)
    direction = np.array([np.cos(phi), np.sin(phi)])
    centre = anchor.mean(axis=0)
    lo, hi = 0.0, float(np.ptp(anchor, axis=0).max() + np.ptp(local, axis=0).max()) + 0.05
    if _separation(local + centre + hi * direction, anchor) <= 0:
        return None
    for _ in range(30):  # bisection on the distance at which the footprints stop overlapping
        mid = 0.5 * (lo + hi)
        if _separation(local + centre + mid * direction, anchor) > 0:
            hi = mid
        else:
            lo = mid
    return centre + (hi + 0.001) * direction


def render_tabletop_scene(config: SceneConfig | None = None) -> RenderedScene:
    """Render a seeded tabletop scene of YCB scans with pybullet's TinyRenderer (CPU, deterministic).

    Returns RGB, metric depth, instance ids, the camera and per-object ground truth (meshes in the world frame,
    poses, visible fractions).
    """
    config = config or SceneConfig()
    config.check()
    names = config.resolved_object_names()
    rng_place = np.random.default_rng([config.seed, 1])
    poses = _place_objects(config, names, rng_place)
    T_cam_from_world = camera_pose(config)
    intrinsics = config.intrinsics()

    with TinyRenderer() as renderer:
        table = renderer.add_table() if config.with_table else None
        bodies = []
        for name, pose in zip(names, poses, strict=True):
            vertices, faces = _load_canonical(name)
            bodies.append(renderer.add_mesh(vertices, faces, object_colour(name), pose))
        frame = renderer.render(intrinsics, T_cam_from_world, config.near_m, config.far_m, config.light)

        instance_ids = np.zeros(frame.body_ids.shape, dtype=np.int32)
        for k, body in enumerate(bodies, start=1):
            instance_ids[frame.body_ids == body] = k
        counts = [int((instance_ids == k).sum()) for k in range(1, len(bodies) + 1)]

        visible = [float("nan")] * len(bodies)
        if config.compute_visible_fraction:
            # Alone = the same camera, nothing else in the scene (not even the table, which the scans may graze).
            for body in ([table] if table is not None else []) + bodies:
                renderer.set_visible(body, False)
            alone_light = dataclasses.replace(config.light, shadow=False)
            for k, body in enumerate(bodies):
                renderer.set_visible(body, True)
                alone = renderer.render(intrinsics, T_cam_from_world, config.near_m, config.far_m, alone_light)
                renderer.set_visible(body, False)
                total = int((alone.body_ids == body).sum())
                visible[k] = min(1.0, counts[k] / total) if total else float("nan")

    depth = frame.depth_m
    if config.depth_noise_m > 0:
        noise = np.random.default_rng([config.seed, 3]).normal(0.0, config.depth_noise_m, depth.shape)
        depth = (depth + noise).astype(np.float32)

    objects = []
    for k, (name, pose) in enumerate(zip(names, poses, strict=True), start=1):
        vertices, faces = _load_canonical(name)
        world = vertices @ pose[:3, :3].T + pose[:3, 3]
        objects.append(
            SceneObject(
                id=k,
                name=name,
                mesh_world=trimesh.Trimesh(world, faces.copy(), process=False),
                visible_fraction=visible[k - 1],
                T_world_from_object=pose,
                colour_rgb=object_colour(name),
                pixel_count=counts[k - 1],
            )
        )
    logger.debug("rendered scene seed=%d objects=%s visible=%s", config.seed, names, np.round(visible, 2))
    return RenderedScene(
        rgb=frame.rgb,
        depth_m=depth,
        instance_ids=instance_ids,
        intrinsics=intrinsics,
        T_cam_from_world=T_cam_from_world,
        objects=objects,
        config=config,
    )
