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
from scipy.spatial import ConvexHull

from z123_ros.camera import CameraIntrinsics, invert, look_at, transform_points
from z123_ros.errors import ConfigError
from z123_ros.io import CameraModel
from z123_ros.sim.clutter import SurfaceItem, background_items, clutter_items
from z123_ros.sim.objects import OBJECT_NAMES, _load_canonical, object_colour
from z123_ros.sim.renderer import LightConfig, TinyRenderer
from z123_ros.sim.sensor import apply_sensor, normals_from_depth, resolve_sensor
from z123_ros.sim.textures import TEXTURE_MODES, object_texture, shade_texture, triplanar_lookup

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
    camera_range_m: float | None = None
    """Distance from the camera centre to the look-at point, metres; None = from the height and distance above.
    With ``camera_elevation_deg`` it replaces ``camera_height_m`` / ``camera_distance_m``."""
    camera_elevation_deg: float | None = None
    """Elevation of the camera above the look-at point's horizontal plane, degrees; None = from height / distance."""
    sensor: str = "ideal"
    """Depth sensor model: a ``SENSOR_PRESETS`` key (ideal, structured_light, active_stereo) or a SensorConfig."""
    texture: str = "flat"
    """Object surfaces: flat (one colour each), procedural (packaging: panels, text, stripes) or photo (photos)."""
    clutter: bool = False
    """Put flat clutter on the table (paper, cables, keyboard, mouse): background in the labels (``clutter_ids``)."""
    num_clutter: int = 4
    """Number of clutter items when ``clutter`` (fewer when they do not fit)."""
    background: bool = False
    """Put a room around the table: carpeted floor, walls behind it, furniture beside it."""
    occluding: bool = False
    """Place each object after the first behind an earlier one as seen from the camera (partly hidden)."""
    border_cut: bool = False
    """Aim the camera so that one object sits on the image's left or right border (cut by it: ``truncated``)."""

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
        if self.camera_range_m is not None and not 0.05 <= self.camera_range_m <= 20.0:
            raise ConfigError(f"camera_range_m must be in [0.05, 20], got {self.camera_range_m}")
        if self.camera_elevation_deg is not None and not 0.0 <= self.camera_elevation_deg <= 89.9:
            raise ConfigError(f"camera_elevation_deg must be in [0, 89.9], got {self.camera_elevation_deg}")
        if not 0 <= self.num_clutter <= 12:
            raise ConfigError(f"num_clutter must be in 0..12, got {self.num_clutter}")
        resolve_sensor(self.sensor).check()
        if self.texture not in TEXTURE_MODES:
            raise ConfigError(f"texture must be one of {TEXTURE_MODES}, got {self.texture!r}")

    def camera_height_and_distance(self) -> tuple[float, float]:
        """(height above the table, horizontal distance to the look-at point) of the camera, metres."""
        rise = self.camera_height_m - self.target_height_m
        rng_m = (
            self.camera_range_m if self.camera_range_m is not None else float(np.hypot(rise, self.camera_distance_m))
        )
        if self.camera_elevation_deg is not None:
            elevation = np.deg2rad(self.camera_elevation_deg)
        else:
            elevation = float(np.arctan2(rise, self.camera_distance_m))
        if self.camera_range_m is None and self.camera_elevation_deg is None:
            return self.camera_height_m, self.camera_distance_m
        return self.target_height_m + rng_m * float(np.sin(elevation)), rng_m * float(np.cos(elevation))

    def azimuth_deg(self) -> float:
        """Camera azimuth, degrees: ``camera_azimuth_deg`` or drawn from the seed."""
        if self.camera_azimuth_deg is not None:
            return float(self.camera_azimuth_deg)
        return float(np.random.default_rng([self.seed, 2]).uniform(0.0, 360.0))

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
    truncated: bool = False
    """Part of the object projects outside the image (cut by the image border)."""

    @property
    def occluded_fraction(self) -> float:
        """Fraction of the object's pixels (rendered alone) hidden by other things: 1 - visible_fraction."""
        return 1.0 - self.visible_fraction


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
    depth_true_m: np.ndarray | None = None
    """(H, W) float32 exact depth before the sensor model (and ``depth_noise_m``); NaN where nothing was hit."""
    clutter_ids: np.ndarray | None = None
    """(H, W) int32: k > 0 = clutter item k (background for the labels: instance_ids is 0 there), 0 elsewhere."""
    clutter_kinds: tuple[str, ...] = ()
    """Kind of each clutter item (paper, cable, keyboard, mouse), in id order."""

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


def camera_pose(config: SceneConfig, target_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """``T_cam_from_world`` of the scene camera described by ``config``, looking at ``target_xy`` on the table."""
    a = np.deg2rad(config.azimuth_deg())
    height, distance = config.camera_height_and_distance()
    target = np.array([target_xy[0], target_xy[1], config.target_height_m])
    eye = target + np.array([distance * np.cos(a), distance * np.sin(a), height - config.target_height_m])
    return invert(look_at(eye, target))


def _yaw_pose(x: float, y: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:2, 3] = [x, y]
    return T


def _footprint(vertices: np.ndarray, yaw: float) -> np.ndarray:
    """Convex hull (K, 2) of the object's footprint after a yaw about its origin, counter-clockwise."""
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


def _place_objects(
    config: SceneConfig, names: tuple[str, ...], rng: np.random.Generator
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Seeded (x, y, yaw) placement: footprints keep ``min_gap_m`` apart, touch (``touching``) or line up behind each
    other as seen from the camera (``occluding``). Returns (poses, world footprints)."""
    placed: list[np.ndarray] = []  # world footprints
    poses: list[np.ndarray] = []
    gap = 0.0 if config.touching else config.min_gap_m
    a = np.deg2rad(config.azimuth_deg())
    away = -np.array([np.cos(a), np.sin(a)])  # horizontal view direction: from the camera into the scene
    order = list(range(len(names)))
    if config.occluding:  # the tallest in front: it hides the ones behind instead of vanishing behind them
        order.sort(key=lambda i: -float(np.ptp(_load_canonical(names[i])[0][:, 2])))
    for index in order:
        name = names[index]
        vertices, _ = _load_canonical(name)
        yaw = float(rng.uniform(0.0, 2.0 * np.pi))
        local = _footprint(vertices, yaw)
        radius = config.placement_radius_m
        for attempt in range(400):
            if config.occluding and placed:
                # Behind the previous object, offset sideways by up to half its width: partly hidden, not wholly.
                half_widths = 0.5 * (np.ptp(placed[-1], axis=0).max() + np.ptp(local, axis=0).max())
                side = np.array([-away[1], away[0]]) * rng.uniform(0.2, 0.6) * rng.choice([-1, 1]) * half_widths
                xy = _contact_position(local, placed[-1], away, side, gap + rng.uniform(0.005, 0.04))
            elif config.touching and placed:
                phi = rng.uniform(0.0, 2.0 * np.pi)
                anchor = placed[int(rng.integers(len(placed)))]
                xy = _contact_position(local, anchor, np.array([np.cos(phi), np.sin(phi)]), 0.0, 0.001)
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
    inverse = np.argsort(order)
    return [poses[i] for i in inverse], [placed[i] for i in inverse]


def _contact_position(
    local: np.ndarray, anchor: np.ndarray, direction: np.ndarray, offset: np.ndarray | float, gap: float
) -> np.ndarray | None:
    """Where ``local`` stops overlapping ``anchor`` moving out along ``direction`` from its centre (+ ``offset``),
    plus ``gap``; None when even far out they overlap."""
    centre = anchor.mean(axis=0) + offset
    lo, hi = 0.0, float(np.ptp(anchor, axis=0).max() + np.ptp(local, axis=0).max()) + 0.05
    if _separation(local + centre + hi * direction, anchor) <= 0:
        return None
    for _ in range(30):  # bisection on the distance at which the footprints stop overlapping
        mid = 0.5 * (lo + hi)
        if _separation(local + centre + mid * direction, anchor) > 0:
            hi = mid
        else:
            lo = mid
    return centre + (hi + gap) * direction


@dataclass
class _Layout:
    """Everything placed in a scene before rendering."""

    names: tuple[str, ...]
    poses: list[np.ndarray]
    T_cam_from_world: np.ndarray
    clutter: list[SurfaceItem]
    background: list[SurfaceItem]


def _border_target(config: SceneConfig, poses: list[np.ndarray]) -> tuple[float, float]:
    """A look-at point that puts one (seeded) object's centre near the left or right image border."""
    rng = np.random.default_rng([config.seed, 4])
    obj = poses[int(rng.integers(len(poses)))][:2, 3]
    a = np.deg2rad(config.azimuth_deg())
    right = np.array([np.sin(a), -np.cos(a)])  # the camera's +x axis, horizontal
    height, distance = config.camera_height_and_distance()
    depth = float(np.hypot(height - config.target_height_m, distance))
    lateral = depth * np.tan(np.deg2rad(config.fov_deg) / 2) * rng.uniform(0.8, 1.0) * rng.choice([-1.0, 1.0])
    target = obj - lateral * right
    return float(target[0]), float(target[1])


def _layout(config: SceneConfig) -> _Layout:
    names = config.resolved_object_names()
    poses, footprints = _place_objects(config, names, np.random.default_rng([config.seed, 1]))
    target = _border_target(config, poses) if config.border_cut else (0.0, 0.0)
    clutter = []
    if config.clutter and config.with_table:
        radius = max(float(np.abs(np.vstack(footprints)).max()), config.placement_radius_m)
        clutter = clutter_items(config.num_clutter, config.seed, footprints, radius, _separation)
    background = background_items(config.seed, config.azimuth_deg()) if config.background else []
    return _Layout(names, poses, camera_pose(config, target), clutter, background)


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _texture_pass(rgb, depth, body_ids, intrinsics, T_cam_from_world, surfaces, flat, normals_cam):
    """Replace each textured body's flat colour by its texture, per pixel, keeping the renderer's shading.

    ``surfaces``: (body id, T_world_from_body, flat colour, texture image, metres per image) per textured body;
    ``flat``: (body id, colour) of every body we coloured. Returns (rgb, albedo): albedo is the material luminance
    before lighting (the texture's or the flat colour's; the rendered luminance for the table's own texture).
    """
    out = rgb.copy()
    albedo = (rgb.astype(np.float32) @ _LUMA) / 255.0
    for body, colour in flat:
        albedo[body_ids == body] = float(np.asarray(colour, np.float32) @ _LUMA)
    T_world_from_cam = invert(T_cam_from_world)
    for body, T_world_from_body, colour, texture, scale in surfaces:
        mask = (body_ids == body) & np.isfinite(depth)
        if not mask.any():
            continue
        points_cam, pix = intrinsics.backproject(depth, mask)
        T_body_from_cam = invert(T_world_from_body) @ T_world_from_cam
        points = transform_points(T_body_from_cam, points_cam)
        normals = np.nan_to_num(normals_cam[pix[:, 0], pix[:, 1]]) @ T_body_from_cam[:3, :3].T
        colours = triplanar_lookup(points, normals, texture, scale)
        out[pix[:, 0], pix[:, 1]] = shade_texture(rgb[pix[:, 0], pix[:, 1]], colour, colours)
        albedo[pix[:, 0], pix[:, 1]] = (colours.astype(np.float32) @ _LUMA) / 255.0
    return out, albedo


def _visible_fractions(renderer, config, intrinsics, T_cam_from_world, hidden, bodies, counts) -> list[float]:
    """Visible pixels / pixels of each body rendered alone from the same camera (nothing else, not even the table)."""
    for body in hidden + bodies:
        renderer.set_visible(body, False)
    alone_light = dataclasses.replace(config.light, shadow=False)
    visible = []
    for k, body in enumerate(bodies):
        renderer.set_visible(body, True)
        alone = renderer.render(intrinsics, T_cam_from_world, config.near_m, config.far_m, alone_light)
        renderer.set_visible(body, False)
        total = int((alone.body_ids == body).sum())
        visible.append(min(1.0, counts[k] / total) if total else float("nan"))
    return visible


def _truncated(vertices_world: np.ndarray, intrinsics: CameraIntrinsics, T_cam_from_world: np.ndarray) -> bool:
    """Whether part of the mesh projects outside the image (or behind the camera)."""
    cam = transform_points(T_cam_from_world, vertices_world)
    if (cam[:, 2] <= 1e-3).any():
        return True
    uv = intrinsics.project(cam)
    return bool(((uv < -0.5) | (uv > np.array([intrinsics.width, intrinsics.height]) - 0.5)).any())


def _render(config: SceneConfig, layout: _Layout, intrinsics: CameraIntrinsics):
    """Render the layout: (RenderBuffers, rgb after textures, ids, clutter ids, pixel counts, visible fractions)."""
    with TinyRenderer() as renderer:
        hidden = [renderer.add_table()] if config.with_table else []
        surfaces, flat = [], []
        for item in layout.clutter + layout.background:
            body = renderer.add_mesh(item.mesh.vertices, item.mesh.faces, item.colour_rgb, item.T_world_from_item)
            hidden.append(body)
            flat.append((body, item.colour_rgb))
            surfaces.append((body, item.T_world_from_item, item.colour_rgb, item.texture, item.metres_per_image))
        bodies = []
        for name, pose in zip(layout.names, layout.poses, strict=True):
            vertices, faces = _load_canonical(name)
            bodies.append(renderer.add_mesh(vertices, faces, object_colour(name), pose))
            flat.append((bodies[-1], object_colour(name)))
            texture = object_texture(config.texture, name, config.seed, object_colour(name))
            if texture is not None:
                surfaces.append((bodies[-1], pose, object_colour(name), texture, 0.12))
        frame = renderer.render(intrinsics, layout.T_cam_from_world, config.near_m, config.far_m, config.light)
        instance_ids = np.zeros(frame.body_ids.shape, dtype=np.int32)
        for k, body in enumerate(bodies, start=1):
            instance_ids[frame.body_ids == body] = k
        clutter_ids = np.zeros_like(instance_ids)
        first_clutter = len(hidden) - len(layout.clutter) - len(layout.background)
        for k, body in enumerate(hidden[first_clutter : first_clutter + len(layout.clutter)], start=1):
            clutter_ids[frame.body_ids == body] = k
        counts = [int((instance_ids == k).sum()) for k in range(1, len(bodies) + 1)]
        visible = [float("nan")] * len(bodies)
        if config.compute_visible_fraction:
            visible = _visible_fractions(renderer, config, intrinsics, layout.T_cam_from_world, hidden, bodies, counts)
    normals = normals_from_depth(frame.depth_m, intrinsics)
    rgb, albedo = _texture_pass(
        frame.rgb, frame.depth_m, frame.body_ids, intrinsics, layout.T_cam_from_world, surfaces, flat, normals
    )
    return frame, rgb, albedo, normals, instance_ids, clutter_ids, counts, visible


def render_tabletop_scene(config: SceneConfig | None = None) -> RenderedScene:
    """Render a seeded tabletop scene of YCB scans with pybullet's TinyRenderer (CPU, deterministic).

    Returns RGB and metric depth as the configured sensor measures them (plus the exact depth), instance ids, clutter
    ids, the camera and per-object ground truth (meshes in the world frame, poses, visible fractions, truncation).
    """
    config = config or SceneConfig()
    config.check()
    layout = _layout(config)
    intrinsics = config.intrinsics()
    frame, rgb, albedo, normals, instance_ids, clutter_ids, counts, visible = _render(config, layout, intrinsics)
    rgb, depth = apply_sensor(rgb, frame.depth_m, intrinsics, config.sensor, config.seed, normals, albedo)
    if config.depth_noise_m > 0:
        noise = np.random.default_rng([config.seed, 3]).normal(0.0, config.depth_noise_m, depth.shape)
        depth = (depth + noise).astype(np.float32)

    objects = []
    for k, (name, pose) in enumerate(zip(layout.names, layout.poses, strict=True), start=1):
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
                truncated=_truncated(world, intrinsics, layout.T_cam_from_world),
            )
        )
    logger.debug("rendered scene seed=%d objects=%s visible=%s", config.seed, layout.names, np.round(visible, 2))
    return RenderedScene(
        rgb=rgb,
        depth_m=depth,
        instance_ids=instance_ids,
        intrinsics=intrinsics,
        T_cam_from_world=layout.T_cam_from_world,
        objects=objects,
        config=config,
        depth_true_m=frame.depth_m,
        clutter_ids=clutter_ids,
        clutter_kinds=tuple(item.kind for item in layout.clutter),
    )
