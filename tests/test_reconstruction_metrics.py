"""Metrics against hand-computed cases: a unit cube, a shifted cube, a sphere in its bounding box, offset planes."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from z123_ros.errors import InputError
from z123_ros.reconstruction.metrics import (
    chamfer_distance,
    evaluate_mesh,
    f_score,
    normalize_to_unit_box,
    volumetric_iou,
)


def unit_cube(offset=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    cube.apply_translation(np.asarray(offset) + 0.5)  # [0, 1]^3 + offset
    return cube


def plane_points(n: int = 30) -> np.ndarray:
    u, v = np.meshgrid(np.linspace(0, 1, n), np.linspace(0, 1, n))
    return np.stack([u.ravel(), v.ravel(), np.zeros(n * n)], axis=1)


def test_iou_of_a_cube_with_itself_is_one():
    assert volumetric_iou(unit_cube(), unit_cube()) == pytest.approx(1.0)


def test_iou_of_cubes_shifted_by_half_a_side():
    # Overlap 0.5, union 1.5 -> 1/3; on the 64^3 grid over the union box: cells 21..42 of 64 overlap -> 22/64.
    iou = volumetric_iou(unit_cube(), unit_cube((0.5, 0.0, 0.0)))
    assert iou == pytest.approx(22 / 64, abs=1e-9)
    assert iou == pytest.approx(1 / 3, abs=0.02)


def test_iou_of_disjoint_cubes_is_zero():
    assert volumetric_iou(unit_cube(), unit_cube((2.0, 0.0, 0.0))) == 0.0


def test_iou_of_a_sphere_in_its_bounding_cube():
    sphere = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    box = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    # Volume ratio (4/3 pi) / 8 = pi / 6.
    assert volumetric_iou(sphere, box) == pytest.approx(np.pi / 6, abs=0.01)


def test_chamfer_and_fscore_of_offset_planes():
    a = plane_points()
    b = a + np.array([0.0, 0.0, 0.1])  # every nearest neighbour is the point straight above: 0.1
    assert chamfer_distance(a, b) == pytest.approx(0.1)
    assert chamfer_distance(a, a) == 0.0
    assert f_score(a, b, threshold=0.05) == 0.0
    assert f_score(a, b, threshold=0.2) == 1.0


def test_chamfer_is_mean_of_both_directions():
    a = np.zeros((1, 3))
    b = np.array([[1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    # a -> b: 1; b -> a: (1 + 3) / 2 = 2; mean of both directions 1.5.
    assert chamfer_distance(a, b) == pytest.approx(1.5)


def test_concentric_spheres():
    inner = trimesh.creation.icosphere(subdivisions=4, radius=1.0)
    outer = trimesh.creation.icosphere(subdivisions=4, radius=1.1)
    m = evaluate_mesh(outer, inner, num_points=20000, f_threshold=0.05)
    assert m["chamfer"] == pytest.approx(0.1, abs=0.01)
    assert m["f_score"] < 0.05
    assert m["iou"] == pytest.approx(1 / 1.1**3, abs=0.03)


def test_normalize_to_unit_box():
    pts = np.array([[1.0, 2.0, 3.0], [3.0, 6.0, 4.0]])
    out = normalize_to_unit_box(pts)
    np.testing.assert_allclose(out, [[-0.25, -0.5, -0.125], [0.25, 0.5, 0.125]])


def test_normalised_evaluation_is_scale_invariant():
    m = evaluate_mesh(unit_cube(), trimesh.creation.box(extents=(3.0, 3.0, 3.0)), normalize=True)
    assert m["iou"] == pytest.approx(1.0)
    assert m["chamfer"] < 0.01


def test_bad_metric_inputs():
    with pytest.raises(InputError):
        chamfer_distance(np.zeros((0, 3)), np.zeros((3, 3)))
    with pytest.raises(InputError):
        chamfer_distance(np.full((2, 3), np.nan), np.zeros((3, 3)))
    with pytest.raises(InputError):
        f_score(np.zeros((2, 3)), np.zeros((3, 3)), threshold=0.0)
    with pytest.raises(InputError):
        normalize_to_unit_box(np.zeros((5, 3)))
