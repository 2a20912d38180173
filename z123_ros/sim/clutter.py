"""Flat clutter on the table and a room around it: things a robot sees that are not objects to pick.

Clutter (background in the labels): sheets of paper, cables, a keyboard-like slab, a mouse-like lump, all low enough
that segmentation must tell them from objects by shape, not by standing on the table. Background: a carpeted floor
under the table, walls behind it and furniture (cabinets, a chair-like block) beside it, so the image beyond the
table edge is not empty.

Every item is a :class:`SurfaceItem`: a mesh in its own frame, its pose, flat colour and texture, and how many metres
one texture image covers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import trimesh
from scipy.spatial import ConvexHull

from z123_ros.sim.textures import surface_texture

logger = logging.getLogger(__name__)

#: Half extents of pybullet_data's table top (1.5 m x 1.0 m), metres.
TABLE_HALF_XY = (0.75, 0.5)
#: Height of the table top above the floor, metres.
TABLE_HEIGHT_M = 0.625


@dataclass
class SurfaceItem:
    """A clutter or background body."""

    kind: str
    """paper, cable, keyboard, mouse (clutter) or floor, wall, furniture (background)."""
    mesh: trimesh.Trimesh
    """Mesh in the item's own frame, metres."""
    T_world_from_item: np.ndarray
    """4x4 pose in the world (table) frame."""
    colour_rgb: tuple[float, float, float]
    """Flat colour the renderer shades (the texture replaces it per pixel)."""
    texture: np.ndarray
    """(S, S, 3) uint8 texture image."""
    metres_per_image: float
    """Size of one texture tile on the surface, metres."""
    footprint: np.ndarray | None = None
    """(K, 2) convex footprint on the table (world xy) for clutter; None for background."""


def _pose(x: float, y: float, z: float, yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    T = np.eye(4)
    T[:2, :2] = [[c, -s], [s, c]]
    T[:3, 3] = [x, y, z]
    return T


def _cable_mesh(rng: np.random.Generator) -> trimesh.Trimesh:
    """A cable lying on the table: a wavy chain of thin cylinders, 4-6 mm thick, 0.3-0.6 m long."""
    radius = float(rng.uniform(0.002, 0.003))
    n = 8
    length = float(rng.uniform(0.3, 0.6))
    heading = np.cumsum(rng.normal(0.0, 0.5, n))
    steps = length / n * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    xy = np.vstack([[0.0, 0.0], np.cumsum(steps, axis=0)])
    xy -= xy.mean(axis=0)
    parts = []
    for a, b in zip(xy[:-1], xy[1:], strict=True):
        segment = np.array([[a[0], a[1], radius], [b[0], b[1], radius]])
        parts.append(trimesh.creation.cylinder(radius=radius, segment=segment, sections=8))
    return trimesh.util.concatenate(parts)


def _clutter_mesh(kind: str, rng: np.random.Generator) -> tuple[trimesh.Trimesh, float]:
    """(mesh resting on z = 0, metres per texture image) of one clutter kind."""
    if kind == "paper":
        w, h = (0.21, 0.297) if rng.uniform() < 0.6 else (0.15, 0.1)
        mesh = trimesh.creation.box((w, h, 0.001))
        scale = max(w, h)
    elif kind == "keyboard":
        mesh = trimesh.creation.box((float(rng.uniform(0.3, 0.45)), float(rng.uniform(0.11, 0.15)), 0.022))
        scale = 0.15
    elif kind == "mouse":
        mesh = trimesh.creation.icosphere(subdivisions=2, radius=1.0)
        mesh.apply_scale((0.055, 0.032, 0.018))
        scale = 0.1
    else:  # cable
        return _cable_mesh(rng), 0.1
    mesh.apply_translation((0.0, 0.0, -mesh.bounds[0, 2]))
    return mesh, scale


def clutter_items(
    count: int, seed: int, keep_clear: list[np.ndarray], radius_m: float, separation
) -> list[SurfaceItem]:
    """Up to ``count`` seeded clutter items on the table, their footprints clear of ``keep_clear`` polygons.

    ``separation(a, b)`` is the convex-polygon gap function of the scene module (positive = apart).
    """
    rng = np.random.default_rng([seed, 5])
    kinds = ("paper", "cable", "keyboard", "mouse")
    colours = {"paper": (0.92, 0.92, 0.9), "cable": (0.1, 0.1, 0.1), "keyboard": (0.2, 0.2, 0.22)}
    items: list[SurfaceItem] = []
    occupied = list(keep_clear)
    for index in range(count):
        kind = kinds[index % len(kinds)] if index < len(kinds) else kinds[int(rng.integers(len(kinds)))]
        mesh, scale = _clutter_mesh(kind, rng)
        for _ in range(60):
            r = float(rng.uniform(0.6, 1.0)) * radius_m + 0.1
            phi, yaw = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 2 * np.pi))
            T = _pose(r * np.cos(phi), r * np.sin(phi), 0.0, yaw)
            world = mesh.vertices @ T[:3, :3].T + T[:3, 3]
            footprint = _hull2d(world[:, :2])
            inside = np.all(np.abs(world[:, :2]) < np.array(TABLE_HALF_XY) - 0.02)
            if inside and all(separation(footprint, other) > 0.01 for other in occupied):
                break
        else:
            logger.debug("no room for clutter %s", kind)
            continue
        occupied.append(footprint)
        colour = colours.get(kind, tuple(float(c) for c in rng.uniform(0.1, 0.9, 3)))
        texture = surface_texture(kind if kind in ("paper", "keyboard") else "cable", seed + index)
        items.append(SurfaceItem(kind, mesh, T, colour, texture, scale, footprint))
    return items


def _hull2d(xy: np.ndarray) -> np.ndarray:
    return xy[ConvexHull(xy).vertices]


def background_items(seed: int, camera_azimuth_deg: float) -> list[SurfaceItem]:
    """A floor, one or two walls behind the table (seen from the camera) and 1-3 pieces of furniture, seeded."""
    rng = np.random.default_rng([seed, 6])
    floor_z = -TABLE_HEIGHT_M
    items = [
        SurfaceItem(
            "floor",
            trimesh.creation.box((8.0, 8.0, 0.01)),
            _pose(0.0, 0.0, floor_z - 0.005, 0.0),
            (0.5, 0.45, 0.4),
            surface_texture("carpet", seed),
            0.5,
        )
    ]
    away = np.deg2rad(camera_azimuth_deg) + np.pi  # from the scene centre, away from the camera
    for k in range(1 + int(rng.uniform() < 0.5)):
        direction = away + (k * float(rng.choice([-1.0, 1.0])) * np.pi / 2)
        distance = float(rng.uniform(1.0, 2.2))  # beyond the table's corners (0.9 m from its centre)
        wall = trimesh.creation.box((0.05, 8.0, 2.6))
        T = _pose(distance * np.cos(direction), distance * np.sin(direction), floor_z + 1.3, direction)
        items.append(SurfaceItem("wall", wall, T, (0.85, 0.85, 0.8), surface_texture("wall", seed + k), 1.0))
    for k in range(int(rng.integers(1, 4))):
        extents = (float(rng.uniform(0.3, 0.6)), float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.4, 1.0)))
        direction = away + float(rng.uniform(-1.2, 1.2))
        distance = float(rng.uniform(1.0, 1.8)) + 0.5 * max(extents[:2])
        box = trimesh.creation.box(extents)
        T = _pose(distance * np.cos(direction), distance * np.sin(direction), floor_z + extents[2] / 2, direction)
        items.append(SurfaceItem("furniture", box, T, (0.5, 0.35, 0.2), surface_texture("wood", seed + k), 0.4))
    return items
