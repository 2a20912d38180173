"""Renders of one object alone on white from spherical viewpoints: the paper's held-out views.

Zero-1-to-3 was trained on 256x256 renders at a 49.1 deg field of view, objects normalised to a unit cube, cameras on
a sphere (radius 1.5-2.2 units) looking at the object's centre, world +z up. The viewpoints here use
:func:`z123_ros.camera.orbit_pose`, the project's one spherical convention, so relative poses between these views are
exactly what the novel-view pipeline is conditioned on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from z123_ros.camera import CameraIntrinsics, invert, orbit_pose
from z123_ros.errors import InputError
from z123_ros.sim.objects import object_colour
from z123_ros.sim.renderer import LightConfig, TinyRenderer

logger = logging.getLogger(__name__)


@dataclass
class ObjectViews:
    """Renders of one object from several viewpoints."""

    rgba: np.ndarray
    """(N, S, S, 4) uint8; RGB is white (255) off the object, alpha = 255 on the object, 0 elsewhere."""
    depth_m: np.ndarray
    """(N, S, S) float32 z-depth in the mesh's units; NaN off the object."""
    T_cam_from_world: np.ndarray
    """(N, 4, 4) extrinsics (world = the mesh's frame)."""
    intrinsics: CameraIntrinsics
    """Shared pinhole intrinsics."""
    views: list[tuple[float, float, float]]
    """(polar_deg, azimuth_deg, radius) of each view about ``target``."""
    target: np.ndarray
    """(3,) the point the cameras look at (the mesh's bounding-box centre unless given)."""

    @property
    def rgb(self) -> np.ndarray:
        """(N, S, S, 3) uint8 on white."""
        return self.rgba[..., :3]

    @property
    def masks(self) -> np.ndarray:
        """(N, S, S) bool object masks."""
        return self.rgba[..., 3] > 0


def render_object_views(
    mesh: trimesh.Trimesh,
    views: Sequence[tuple[float, float, float]],
    size: int = 256,
    fov_deg: float = 49.1,
    colour: tuple[float, float, float] | str | None = None,
    target: np.ndarray | None = None,
    light: LightConfig | None = None,
) -> ObjectViews:
    """Render ``mesh`` alone on white from spherical ``views`` = [(polar_deg, azimuth_deg, radius), ...].

    ``radius`` is in the mesh's units (for a unit-box-normalised mesh the paper uses 1.5-2.2). ``colour`` is an RGB
    triple in [0, 1] or a YCB object name (its catalogue colour); default a neutral grey. Deterministic.
    """
    if len(mesh.faces) == 0:
        raise InputError("render_object_views: the mesh has no faces")
    if not views:
        raise InputError("render_object_views: no views given")
    if isinstance(colour, str):
        colour = object_colour(colour)
    colour = colour or (0.7, 0.7, 0.7)
    bounds = np.asarray(mesh.bounds, dtype=np.float64)
    target = bounds.mean(axis=0) if target is None else np.asarray(target, dtype=np.float64)
    scale = float(np.ptp(bounds, axis=0).max())
    intrinsics = CameraIntrinsics.from_fov(fov_deg, size, size)
    light = light or LightConfig(shadow=False)

    rgba = np.empty((len(views), size, size, 4), dtype=np.uint8)
    depth = np.empty((len(views), size, size), dtype=np.float32)
    extrinsics = np.empty((len(views), 4, 4))
    with TinyRenderer() as renderer:
        body = renderer.add_mesh(mesh.vertices, mesh.faces, colour)
        for i, (polar, azimuth, radius) in enumerate(views):
            if radius <= 0:
                raise InputError(f"view {i}: radius must be positive, got {radius}")
            T_cam_from_world = invert(orbit_pose(polar, azimuth, radius, target))
            # Clip planes bracket the object so the depth buffer keeps its precision at any mesh scale.
            near, far = max(1e-4 * radius, radius - 2.0 * scale), radius + 2.0 * scale
            frame = renderer.render(intrinsics, T_cam_from_world, near, far, light)
            on = frame.body_ids == body
            rgba[i, ..., :3] = np.where(on[..., None], frame.rgb, 255)
            rgba[i, ..., 3] = np.where(on, 255, 0)
            depth[i] = np.where(on, frame.depth_m, np.nan)
            extrinsics[i] = T_cam_from_world
    return ObjectViews(
        rgba=rgba,
        depth_m=depth,
        T_cam_from_world=extrinsics,
        intrinsics=intrinsics,
        views=[tuple(map(float, v)) for v in views],
        target=target,
    )
