"""Mesh decimation to a face budget (z123_ros/reconstruction/simplify.py): the budget, the shape, the topology."""

from __future__ import annotations

import numpy as np
import trimesh
from skimage.measure import marching_cubes

from z123_ros.reconstruction.mesh import watertight
from z123_ros.reconstruction.simplify import _fill_small_holes, _unpinch, decimate_checked, pieces


def thin_bowl(radius_m: float = 0.03, wall_m: float = 0.0015, voxel_m: float = 0.0005) -> trimesh.Trimesh:
    """A hemispherical bowl with a 1.5 mm wall, meshed like the depth backend's containers (marching cubes of a
    fine grid): watertight, one piece, ~137 k faces."""
    ax = np.arange(-radius_m - 3 * voxel_m, radius_m + 3 * voxel_m, voxel_m)
    x, y, z = np.meshgrid(ax, ax, ax, indexing="ij")
    sdf = np.maximum(np.abs(np.sqrt(x**2 + y**2 + z**2) - radius_m) - wall_m / 2, z)
    v, f, _, _ = marching_cubes(sdf, 0.0, spacing=(voxel_m,) * 3)
    return trimesh.Trimesh(v + ax[0], f)  # centred on the sphere's centre


def test_decimate_keeps_a_thin_wall_watertight_and_in_one_piece() -> None:
    bowl = thin_bowl()
    assert bowl.is_watertight and pieces(bowl.faces) == 1 and len(bowl.faces) > 100_000
    # 3000 faces: an edge of ~3 mm, twice the wall (vertex clustering merged its two faces and broke the surface).
    v, f, kept = decimate_checked(bowl.vertices, bowl.faces, 3000)
    assert kept and 2500 < len(f) <= 3000
    assert watertight(f) == (True, True) and pieces(f) == 1
    out = trimesh.Trimesh(v, f, process=False)
    # Both faces of the wall are still there: the enclosed volume is the wall's.
    assert abs(out.volume / bowl.volume - 1) < 0.1
    # And where they were: every vertex on the wall's surface (|r - R| = wall / 2) or its rim (z = 0, inside the
    # wall), within a fifth of the wall.
    radial = np.abs(np.linalg.norm(v, axis=1) - 0.03)
    assert radial.max() < 0.00075 + 0.0003 and v[:, 2].max() < 0.0003


def test_decimate_leaves_small_meshes_alone_and_keeps_pieces() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=4)
    v, f, kept = decimate_checked(sphere.vertices, sphere.faces, len(sphere.faces))
    np.testing.assert_array_equal(f, sphere.faces)
    assert kept
    two = trimesh.util.concatenate([sphere, sphere.copy().apply_translation([3.0, 0, 0])])
    v, f, kept = decimate_checked(two.vertices, two.faces, 1000)
    assert kept and len(f) <= 1000 and pieces(f) == 2 and watertight(f)[0]


def test_pieces_counts_vertex_connected_parts() -> None:
    assert pieces(np.zeros((0, 3), dtype=np.int64)) == 0
    assert pieces(np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7]])) == 2


def test_unpinch_pulls_two_sheets_sharing_an_edge_apart() -> None:
    """Two cubes meeting along one edge (four faces on it, what a collapse across a thin neck leaves): a copy of
    the edge's two vertices for one cube makes both watertight, where they were; a manifold mesh is unchanged."""
    a = trimesh.creation.box()
    b = trimesh.creation.box().apply_translation([1.0, 1.0, 0.0])
    pinched = trimesh.util.concatenate([a, b])
    pinched.merge_vertices()
    assert not watertight(pinched.faces)[0] and pieces(pinched.faces) == 1
    v, f = _unpinch(np.asarray(pinched.vertices), np.asarray(pinched.faces))
    assert watertight(f) == (True, True) and pieces(f) == 2 and len(v) == len(pinched.vertices) + 2
    np.testing.assert_array_equal(v[f], np.asarray(pinched.vertices)[pinched.faces])
    sphere = trimesh.creation.icosphere(subdivisions=2)
    v, f = _unpinch(sphere.vertices, sphere.faces)
    np.testing.assert_array_equal(f, sphere.faces)
    assert len(v) == len(sphere.vertices)


def test_small_holes_left_by_unpinching_are_closed_on_the_same_vertices() -> None:
    box = trimesh.creation.icosphere(subdivisions=2)
    holed = np.asarray(box.faces)[1:]
    assert not watertight(holed)[0]
    faces = _fill_small_holes(np.asarray(box.vertices), holed)
    assert watertight(faces) == (True, True) and len(faces) == len(box.faces) and faces.max() < len(box.vertices)
