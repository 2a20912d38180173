"""Surface cues of the coarse grid: the sensor noise model, normals, and LCCP's convexity test."""

from __future__ import annotations

import numpy as np

from z123_ros.camera import CameraIntrinsics
from z123_ros.segmentation.surface import concave_crease, depth_sigma, grid_normals, normal_noise_deg


def test_depth_noise_grows_with_range_as_the_structured_light_model() -> None:
    # Kinect v1 / Xtion (Nguyen et al. 2012): 1.2 mm + 1.9 mm * (z - 0.4)^2.
    sigma = depth_sigma(np.array([0.4, 1.0, 1.4]), 0.0012, 0.0019, 0.4)
    np.testing.assert_allclose(sigma, [0.0012, 0.0012 + 0.0019 * 0.36, 0.0012 + 0.0019 * 1.0])
    assert depth_sigma(np.array([0.2]), 0.0012, 0.0019, 0.4)[0] == 0.0012  # no growth below z0
    # A normal from 3x3-averaged samples two spacings apart: the noisier and the closer the samples, the worse.
    assert normal_noise_deg(np.array(0.003), np.array(0.005)) > normal_noise_deg(np.array(0.001), np.array(0.005))


def test_normals_of_a_tilted_plane_face_the_camera() -> None:
    intr = CameraIntrinsics.from_fov(60.0, 40, 30)
    v, u = np.mgrid[0:30, 0:40]
    rays = intr.backproject_pixels(u, v, 1.0)
    n_true = np.array([0.0, -0.6, -0.8])  # a floor seen from above and in front, normal towards the camera
    depth = 0.5 / -(rays @ n_true)
    points = rays * depth[..., None]
    valid = np.ones((30, 40), dtype=bool)
    valid[10:12, 10:14] = False  # a hole: its neighbours have no normal, the rest is unaffected
    points[~valid] = np.nan
    n = grid_normals(points, valid)
    good = np.isfinite(n[..., 0])
    assert good.sum() > 0.7 * good.size and not good[10, 11]
    np.testing.assert_allclose(n[good], np.broadcast_to(n_true, n[good].shape), atol=1e-4)


def test_lccp_convexity_tells_a_box_edge_from_a_valley() -> None:
    up, side = np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0]])
    # A box's top (left, higher) and its side face (right, lower): convex.
    top_x, side_x = np.array([[-0.01, 0.0, 0.0]]), np.array([[0.0, 0.0, -0.01]])
    assert not concave_crease(up, side, top_x, side_x, 10.0)[0]
    assert concave_crease(side, up, top_x, side_x, 10.0)[0]  # swapped normals: the same geometry as a valley
    # A low box's top meeting a tall box's side (normal pointing back towards it): concave.
    wall = np.array([[-1.0, 0.0, 0.0]])
    low_top_x, wall_x = np.array([[-0.01, 0.0, 0.0]]), np.array([[0.0, 0.0, 0.01]])
    assert concave_crease(up, wall, low_top_x, wall_x, 10.0)[0]
    # Below the angle threshold nothing is a crease, and missing normals never are.
    tilt = np.array([[np.sin(0.1), 0.0, np.cos(0.1)]])
    assert not concave_crease(up, tilt, low_top_x, wall_x, 10.0)[0]
    assert not concave_crease(np.full((1, 3), np.nan), wall, low_top_x, wall_x, 10.0)[0]
