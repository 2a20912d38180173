"""Mesh extraction, surface sampling, PLY output and preview renders.

Marching cubes (scikit-image) runs on a grid padded with an "outside" border, so every extracted surface is closed;
only the largest connected component of the occupancy is kept, so the result is one watertight object.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import trimesh
from scipy import ndimage
from skimage.measure import marching_cubes

from z123_ros.camera import look_at
from z123_ros.errors import ReconstructionError

logger = logging.getLogger(__name__)


def largest_component(occupancy: np.ndarray, min_fraction: float = 1.0) -> np.ndarray:
    """The largest 6-connected component of a boolean volume, plus every other component with at least
    ``min_fraction`` of its size (1.0: the largest only). Empty stays empty."""
    labels, count = ndimage.label(occupancy)
    if count <= 1:
        return occupancy.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    return keep[labels]


def largest_mesh_piece(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """The mesh's largest connected piece (by face count): smoothing can pinch a one-voxel neck of a single voxel
    component into two surfaces, and a grasp planner needs one."""
    return split_largest(mesh)[0]


def split_largest(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, int]:
    """(largest piece, number of pieces): ``max(mesh.split(only_watertight=False), key=face count)`` (``mesh`` itself
    when it is one piece), the same mesh, without building every piece. A container's wall meshes into hundreds of
    specks (a voxel's octahedron) beside the wall, and making each a Trimesh took 0.08 s of its 0.9 s."""
    faces = np.asarray(mesh.faces)
    _, pairs = shared_edges(faces)
    adjacency = pairs // 3  # edge 3k + i is face k's
    adjacency = adjacency[adjacency[:, 0] != adjacency[:, 1]]
    components = trimesh.graph.connected_components(edges=adjacency, nodes=np.arange(len(faces)), min_len=1)
    if len(components) <= 1:
        return mesh, len(components)
    sizes = np.array([len(c) for c in components])
    # split repairs each piece (fill_holes: at most two faces per boundary edge, three edges per face): a piece of n
    # faces ends with at most 7n, so one under an eighth of the largest can neither outgrow nor tie it.
    pieces = [_piece(mesh, c) for c, n in zip(components, sizes, strict=True) if 8 * n >= sizes.max()]
    return max(pieces, key=lambda piece: len(piece.faces)), len(components)


def _piece(mesh: trimesh.Trimesh, face_index: np.ndarray) -> trimesh.Trimesh:
    """The faces ``face_index`` of ``mesh`` as the piece ``mesh.split`` makes of them: vertices in their order in
    ``mesh``, repaired (``fill_holes``). Its used vertices from a mask, not ``np.unique`` (a sort: 0.03 s of a
    container wall's 127k faces); without the face normals, colours and metadata, which nothing here reads."""
    faces = mesh.faces[face_index]
    used = np.zeros(len(mesh.vertices), dtype=bool)
    used[faces] = True
    kept = np.flatnonzero(used)
    new_index = np.zeros(len(mesh.vertices), dtype=np.int64)
    new_index[kept] = np.arange(len(kept))
    piece = trimesh.Trimesh(mesh.vertices[kept], new_index[faces], process=False)
    if len(piece.faces) >= 4 and not watertight(piece.faces)[0]:  # fill_holes returns at once on a watertight piece
        piece.fill_holes()
    return piece


def watertight(faces: np.ndarray) -> tuple[bool, bool]:
    """(watertight, winding consistent) of a mesh's ``faces``: ``mesh.is_watertight`` (every edge used by exactly two
    faces) and ``mesh.is_winding_consistent`` (every edge used by two faces is used once each way), as trimesh
    decides them (graph.is_watertight), from one sort of an integer key per edge. For a mesh with faces: without
    any, trimesh's answer depends on whether it has vertices (empty: False), and this one has no vertices to ask."""
    edges, pairs = shared_edges(np.asarray(faces))
    winding = bool(np.all(edges[pairs[:, 0], 1] == edges[pairs[:, 1], 0]))
    return 2 * len(pairs) == len(edges), winding


def shared_edges(faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(edges, pairs): the (3F, 2) edges of ``faces`` (face k's are rows 3k to 3k + 2: v0 v1, v1 v2, v2 v0, as
    trimesh.geometry.faces_to_edges) and the (M, 2) rows of ``edges`` that are the two uses of an edge used by
    exactly two faces (an edge used once, or three times and more, is in none): trimesh's
    ``grouping.group_rows(edges_sorted, require_count=2)``, which face_adjacency and is_watertight use, from an int64
    key per edge sorted once instead of hashed rows (0.1 s of a container wall's 133k faces)."""
    edges = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2).astype(np.int64)
    if not len(edges):
        return edges, np.empty((0, 2), dtype=np.int64)
    lo, hi = np.minimum(edges[:, 0], edges[:, 1]), np.maximum(edges[:, 0], edges[:, 1])
    key = lo * (int(hi.max()) + 1) + hi
    order = np.argsort(key, kind="stable")
    key = key[order]
    start = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    two = start[np.diff(np.r_[start, len(key)]) == 2]
    return edges, np.stack([order[two], order[two + 1]], axis=1)


def signed_volume(mesh: trimesh.Trimesh) -> float:
    """``mesh.volume``, the same number, without the rest of its mass properties (centre of mass, inertia: 0.05 s
    of a 127k-face container wall): the divergence theorem along x, as trimesh integrates it."""
    triangles, crosses = mesh.triangles, mesh.triangles_cross
    f1 = triangles[:, 0, 0] + triangles[:, 1, 0] + triangles[:, 2, 0]
    return float(np.sum(crosses[:, 0] * f1) / 6.0)


def extract_mesh(
    volume: np.ndarray, level: float, T_out_from_index: np.ndarray, smooth_sigma: float = 0.0
) -> trimesh.Trimesh:
    """Watertight mesh of ``{volume > level}``.

    Args:
        volume: (X, Y, Z) scalar field, larger = more inside (occupancy in [0, 1] or a density).
        level: iso-level.
        T_out_from_index: 4x4 mapping voxel index coordinates (i, j, k) to the output frame (metres or unit box).
        smooth_sigma: Gaussian blur (voxels) applied before extraction; removes voxel staircases on occupancy grids.
    """
    vol = np.asarray(volume, dtype=np.float32)
    if smooth_sigma > 0:
        vol = ndimage.gaussian_filter(vol, smooth_sigma)
    if not np.any(vol > level):
        raise ReconstructionError("the reconstructed volume is empty: no voxel above the surface level")
    # A one-voxel border strictly outside closes every surface that touches the grid boundary; the value mirrors the
    # field's maximum about the level, so a full voxel next to the border ends half a voxel out, as inside the grid.
    pad_value = min(float(vol.min()), 2.0 * level - float(vol.max()))
    vol = np.pad(vol, 1, mode="constant", constant_values=pad_value)
    verts, faces, _, _ = marching_cubes(vol, level=level)
    verts = verts - 1.0  # undo the padding offset
    T = np.asarray(T_out_from_index, dtype=np.float64)
    verts = verts @ T[:3, :3].T + T[:3, 3]
    # skimage orients faces for increasing values outward; ours are "inside = larger", so flip to get outward normals.
    mesh = trimesh.Trimesh(verts, faces[:, ::-1], process=True)
    if np.linalg.det(T[:3, :3]) < 0:
        mesh.invert()
    if signed_volume(mesh) < 0:
        mesh.invert()
    return mesh


def sample_points(mesh: trimesh.Trimesh, count: int, seed: int = 0) -> np.ndarray:
    """(count, 3) float32 points sampled by area on the surface, deterministic for a seed."""
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float32)


def write_mesh_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Binary PLY triangle mesh."""
    mesh = trimesh.Trimesh(np.asarray(vertices, dtype=np.float64), np.asarray(faces, dtype=np.int64), process=False)
    Path(path).write_bytes(mesh.export(file_type="ply", encoding="binary"))


def write_points_ply(path: str | os.PathLike, points: np.ndarray) -> None:
    """Binary PLY point cloud (vertices only)."""
    cloud = trimesh.PointCloud(np.asarray(points, dtype=np.float64))
    Path(path).write_bytes(cloud.export(file_type="ply", encoding="binary"))


def render_mesh_views(
    mesh: trimesh.Trimesh,
    size: int = 256,
    azimuths_deg: tuple[float, ...] = (0.0, 120.0, 240.0),
    up: np.ndarray = (0.0, -1.0, 0.0),
) -> list[np.ndarray]:
    """Shaded grey renders of the mesh from a ring of viewpoints 30 deg above it (a point-splat z-buffer, no GL).

    ``up`` is the mesh frame's up direction: (0, -1, 0) for OpenCV camera frames (y down), the support plane's
    normal when known, (0, 0, 1) for world frames.
    """
    points, face_idx = trimesh.sample.sample_surface(mesh, 200_000, seed=0)
    normals = mesh.face_normals[face_idx]
    centre = 0.5 * (mesh.bounds[0] + mesh.bounds[1])
    radius = float(np.linalg.norm(mesh.extents)) or 1.0
    up_vec = np.asarray(up, dtype=np.float64) / np.linalg.norm(up)
    # Two horizontal axes orthogonal to the up vector.
    side = np.cross(up_vec, [1.0, 0.0, 0.0] if abs(up_vec[0]) < 0.9 else [0.0, 1.0, 0.0])
    side /= np.linalg.norm(side)
    fwd = np.cross(side, up_vec)
    views = []
    for az in azimuths_deg:
        a, elev = np.deg2rad(az), np.deg2rad(30.0)
        direction = np.cos(elev) * (np.cos(a) * fwd + np.sin(a) * side) + np.sin(elev) * up_vec
        eye = centre + 1.2 * radius * direction
        T_world_from_cam = look_at(eye, centre, up_vec)
        R, t = T_world_from_cam[:3, :3], T_world_from_cam[:3, 3]
        p = (points - t) @ R
        n = normals @ R
        f = 0.5 * size / np.tan(np.deg2rad(25.0))
        z = np.maximum(p[:, 2], 1e-6)
        u = np.round(f * p[:, 0] / z + size / 2).astype(np.int64)
        v = np.round(f * p[:, 1] / z + size / 2).astype(np.int64)
        ok = (u >= 0) & (u < size) & (v >= 0) & (v < size) & (p[:, 2] > 0)
        u, v, z, n = u[ok], v[ok], z[ok], n[ok]
        pix = v * size + u
        depth = np.full(size * size, np.inf)
        np.minimum.at(depth, pix, z)
        front = z <= depth[pix] + 1e-9
        light = np.array([0.3, -0.5, -0.8])
        light /= np.linalg.norm(light)
        shade = 0.25 + 0.75 * np.abs(n[front] @ light)
        img = np.full(size * size, 255.0)
        img[pix[front]] = 255.0 * shade
        views.append(np.repeat(img.reshape(size, size, 1), 3, axis=2).astype(np.uint8))
    return views


def make_preview(
    rgb: np.ndarray, mask: np.ndarray, mesh: trimesh.Trimesh, up: np.ndarray = (0.0, -1.0, 0.0), size: int = 256
) -> np.ndarray:
    """One (size, 5 * size, 3) uint8 strip: the input crop, the mask crop, three renders of the mesh."""
    v, u = np.nonzero(mask)
    pad = max(8, int(0.15 * max(np.ptp(v), np.ptp(u)))) if len(v) else 0
    if len(v):
        v0, v1 = max(0, v.min() - pad), min(mask.shape[0], v.max() + pad + 1)
        u0, u1 = max(0, u.min() - pad), min(mask.shape[1], u.max() + pad + 1)
    else:
        v0, v1, u0, u1 = 0, mask.shape[0], 0, mask.shape[1]
    crop = cv2.resize(np.ascontiguousarray(rgb[v0:v1, u0:u1]), (size, size), interpolation=cv2.INTER_AREA)
    mcrop = cv2.resize(mask[v0:v1, u0:u1].astype(np.uint8) * 255, (size, size), interpolation=cv2.INTER_NEAREST)
    panels = [crop, np.repeat(mcrop[:, :, None], 3, axis=2), *render_mesh_views(mesh, size, up=up)]
    return np.concatenate(panels, axis=1)
