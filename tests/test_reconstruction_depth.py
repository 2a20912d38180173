"""The ``depth`` backend and the hull baseline end to end on rendered YCB objects (real scans on a table)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh

from tests._reconstruction_helpers import evaluate_in_world, render_object_view
from z123_ros.camera import invert, transform_points
from z123_ros.reconstruction import ReconstructionConfig, ReconstructionInput, reconstruct
from z123_ros.reconstruction.metrics import nearest_distances


@pytest.fixture(scope="module")
def can():
    return render_object_view("005_tomato_soup_can")


@pytest.fixture(scope="module")
def box():
    return render_object_view("003_cracker_box", seed=1)


@pytest.mark.parametrize("fixture", ["can", "box"])
def test_depth_backend_beats_the_hull(fixture, request):
    view = request.getfixturevalue(fixture)
    depth = reconstruct(view.inp, "depth")
    hull = reconstruct(view.inp, "hull")
    m_depth, m_hull = evaluate_in_world(depth, view), evaluate_in_world(hull, view)
    assert m_depth["iou"] > 0.7
    assert m_depth["iou"] > m_hull["iou"] + 0.05
    assert m_depth["chamfer"] < m_hull["chamfer"]
    assert m_depth["chamfer"] < 0.005  # metres
    assert depth.info["prior"].startswith("symmetry")


def test_noisy_depth_still_beats_the_hull():
    # 2 mm Gaussian depth noise, like a structured-light sensor at 0.7 m: the free-space tolerance adapts to the
    # noise measured on the table, so the symmetry is still recognised.
    view = render_object_view("007_tuna_fish_can", depth_noise_m=0.002)
    depth, hull = reconstruct(view.inp, "depth"), reconstruct(view.inp, "hull")
    m_depth, m_hull = evaluate_in_world(depth, view), evaluate_in_world(hull, view)
    assert depth.info["prior"].startswith("symmetry")
    assert m_depth["iou"] > m_hull["iou"] + 0.1
    assert m_depth["chamfer"] < m_hull["chamfer"]


def test_depth_result_is_a_watertight_metric_mesh_in_the_camera_frame(can):
    r = reconstruct(can.inp, "depth", ReconstructionConfig(num_points=3000))
    assert r.metric and r.frame == "camera" and r.backend == "depth"
    assert r.watertight
    mesh = trimesh.Trimesh(r.vertices, r.faces, process=False)
    assert mesh.is_watertight and mesh.volume > 0
    assert r.vertices.dtype == np.float32 and r.faces.dtype == np.int32 and r.points.shape == (3000, 3)
    # Points lie on the mesh; the visible depth points lie on (near) the mesh too.
    assert nearest_distances(r.points, r.vertices).max() < 0.01
    visible, _ = can.inp.intrinsics.backproject(can.inp.depth_m, can.inp.mask)
    assert np.median(nearest_distances(visible, r.points)) < 0.003
    # The object stands on the table: the mesh bottom is at world z = 0 (+- a voxel), nothing below.
    world = transform_points(invert(can.T_cam_from_world), r.vertices)
    assert world[:, 2].min() == pytest.approx(0.0, abs=0.004)
    gt_height = can.gt_mesh_world.bounds[1, 2]
    assert world[:, 2].max() == pytest.approx(gt_height, abs=0.006)
    np.testing.assert_allclose(r.extent_m, np.ptp(r.vertices, axis=0), atol=1e-5)
    assert list(r.timings)[0] == "validate" and all(v >= 0 for v in r.timings.values())
    assert 0.0 <= r.confidence <= 1.0
    assert r.plane_cam is not None and r.info["plane_source"] == "pose"


def test_support_plane_is_fitted_without_a_pose(can):
    inp = ReconstructionInput(can.inp.rgb, can.inp.mask, can.inp.intrinsics, depth_m=can.inp.depth_m)
    r = reconstruct(inp, "depth")
    assert r.info["plane_source"] == "fitted"
    true_plane = np.asarray(
        ReconstructionInput(
            can.inp.rgb, can.inp.mask, can.inp.intrinsics, T_cam_from_world=can.T_cam_from_world
        ).T_cam_from_world
    )[:3, 2]
    assert abs(float(r.plane_cam[:3] @ true_plane)) > 0.999
    assert evaluate_in_world(r, can)["iou"] > 0.7


def test_explicit_support_plane_is_used(can):
    from z123_ros.geometry import plane_from_pose

    inp = ReconstructionInput(
        can.inp.rgb,
        can.inp.mask,
        can.inp.intrinsics,
        depth_m=can.inp.depth_m,
        support_plane_cam=plane_from_pose(can.T_cam_from_world),
    )
    r = reconstruct(inp, "depth")
    assert r.info["plane_source"] == "input"
    assert evaluate_in_world(r, can)["iou"] > 0.7


def test_without_symmetry_the_hidden_side_gets_a_bounded_thickness(box):
    cfg = ReconstructionConfig()
    cfg.depth.use_symmetry = False
    r = reconstruct(box.inp, "depth", cfg)
    assert r.info["prior"] == "thickness"
    assert r.watertight
    with_symmetry = evaluate_in_world(reconstruct(box.inp, "depth"), box)["iou"]
    assert evaluate_in_world(r, box)["iou"] < with_symmetry


def test_depth_backend_is_deterministic(can):
    a = reconstruct(can.inp, "depth", ReconstructionConfig(num_points=500))
    b = reconstruct(can.inp, "depth", ReconstructionConfig(num_points=500))
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.points, b.points)


def test_hull_is_convex_and_contains_the_visible_points(can):
    r = reconstruct(can.inp, "hull")
    mesh = trimesh.Trimesh(r.vertices, r.faces)
    assert r.backend == "hull" and r.watertight and mesh.is_convex
    visible, _ = can.inp.intrinsics.backproject(can.inp.depth_m, can.inp.mask)
    # Inside (or on) every face plane of the hull.
    offsets = np.einsum("fj,nj->nf", mesh.face_normals, visible) - np.einsum(
        "fj,fj->f", mesh.face_normals, mesh.triangles[:, 0]
    )
    assert offsets.max() < 1e-6
