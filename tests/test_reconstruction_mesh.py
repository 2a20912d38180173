"""Mesh extraction, PLY output and the voxel field's volume renderer on analytic shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from z123_ros.camera import CameraIntrinsics
from z123_ros.reconstruction.base import FieldConfig
from z123_ros.reconstruction.field import TRAINING_FOV_DEG, VoxelField, field_from_occupancy, orbit_camera
from z123_ros.reconstruction.mesh import extract_mesh, largest_component, write_mesh_ply, write_points_ply


def ball_grid(n: int = 48, radius_vox: float = 15.0) -> np.ndarray:
    i = np.arange(n) - (n - 1) / 2
    x, y, z = np.meshgrid(i, i, i, indexing="ij")
    return (np.sqrt(x * x + y * y + z * z) < radius_vox).astype(np.float32)


def test_marching_cubes_of_a_ball_is_watertight_with_the_right_volume():
    voxel = 0.002
    T = np.diag([voxel, voxel, voxel, 1.0])
    T[:3, 3] = [0.1, -0.2, 0.5]
    mesh = extract_mesh(ball_grid(), 0.5, T, smooth_sigma=0.8)
    r = 15.0 * voxel
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * r**3, rel=0.06)  # positive: normals point outwards
    centre = T[:3, :3] @ np.full(3, 47 / 2) + T[:3, 3]
    np.testing.assert_allclose(mesh.bounds.mean(axis=0), centre, atol=voxel)


def test_a_volume_touching_the_grid_border_is_still_closed():
    mesh = extract_mesh(np.ones((5, 6, 7), np.float32), 0.5, np.eye(4))
    assert mesh.is_watertight
    np.testing.assert_allclose(mesh.extents, [5, 6, 7], atol=1e-6)  # faces half a voxel outside the centres


def test_largest_component_keeps_big_parts_only():
    occ = np.zeros((20, 20, 20), bool)
    occ[2:10, 2:10, 2:10] = True  # 512
    occ[12:16, 12:16, 12:16] = True  # 64
    occ[18, 18, 18] = True  # 1
    assert largest_component(occ).sum() == 512
    assert largest_component(occ, min_fraction=0.1).sum() == 576


def test_ply_round_trip(tmp_path):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    write_mesh_ply(tmp_path / "m.ply", mesh.vertices, mesh.faces)
    write_points_ply(tmp_path / "p.ply", mesh.vertices[:10])
    back = trimesh.load(tmp_path / "m.ply", process=False)
    np.testing.assert_allclose(back.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_array_equal(back.faces, mesh.faces)
    assert len(trimesh.load(tmp_path / "p.ply").vertices) == 10


def test_field_renders_an_opaque_cube_where_geometry_says():
    cfg = FieldConfig(grid_size=32, render_size=24, samples_per_ray=96, bound=0.5)
    axis = np.linspace(-0.5, 0.5, 32)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    cube = (np.abs(x) <= 0.25) & (np.abs(y) <= 0.25) & (np.abs(z) <= 0.25)
    field = VoxelField(cfg, field_from_occupancy(cube, cfg, inside=30.0)).eval()
    with torch.no_grad():
        out = field.render([orbit_camera(90.0, 0.0, 2.0)], cfg.render_size)  # level camera on +x, looking at -x
    opacity, depth = out.opacity[0, 0].numpy(), out.depth[0, 0].numpy()
    # Analytic silhouette: the front face x = 0.25 at distance 1.75 spans |u - c| < f * 0.25 / 1.75.
    intr = CameraIntrinsics.from_fov(TRAINING_FOV_DEG, cfg.render_size, cfg.render_size)
    half = intr.fx * 0.25 / 1.75
    c = intr.cx
    assert opacity[round(c), round(c)] > 0.98
    assert opacity[0, 0] < 0.02
    centre_depth = depth[int(c) : int(c) + 2, int(c) : int(c) + 2].mean()
    assert centre_depth == pytest.approx(1.75, abs=0.04)  # z-depth of the front face
    inside = np.abs(np.arange(cfg.render_size) - c) < half - 1
    outside = np.abs(np.arange(cfg.render_size) - c) > half + 2.5
    assert opacity[np.ix_(inside, inside)].min() > 0.9
    assert opacity[np.ix_(outside, outside)].max() < 0.1
    # Gradients reach the grid (the renderer is differentiable).
    field.train()
    field.render([orbit_camera(60.0, 30.0, 2.0)], 8).opacity.sum().backward()
    assert field.density.grad is not None and field.density.grad.abs().sum() > 0
