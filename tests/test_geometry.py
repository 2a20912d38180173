"""The one geometry module: plane fitting and orientation, heights, projection round trips."""

from __future__ import annotations

import numpy as np
import pytest

from z123_ros.camera import CameraIntrinsics, look_at
from z123_ros.geometry import (
    backproject_grid,
    fit_plane_ransac,
    height_image,
    orient_plane,
    plane_axes,
    plane_from_pose,
    project_points,
    signed_distance,
    transform_points,
)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(np.dot(a[:3], b[:3]), -1.0, 1.0))))


def _plane_points(rng: np.random.Generator, n: np.ndarray, d: float, count: int, noise: float) -> np.ndarray:
    a = np.cross(n, [1.0, 0, 0])
    a /= np.linalg.norm(a)
    b = np.cross(n, a)
    uv = rng.uniform(-0.5, 0.5, size=(count, 2))
    return -d * n + uv[:, :1] * a + uv[:, 1:] * b + rng.normal(0, noise, size=(count, 1)) * n


def test_plane_ransac_finds_the_plane_among_outliers() -> None:
    rng = np.random.default_rng(0)
    n = np.array([0.1, -0.8, -0.5])
    n /= np.linalg.norm(n)
    d = 0.7
    on = _plane_points(rng, n, d, 3000, 0.002)  # 2 mm noise
    off = -d * n + rng.uniform(-0.5, 0.5, size=(1500, 3)) + 0.2 * n
    fit = fit_plane_ransac(np.concatenate([on, off]), 0.008, seed=1)
    assert fit is not None
    assert _angle_deg(fit.plane, np.r_[n, d]) < 0.5
    assert fit.plane[3] > 0  # oriented towards the camera origin
    assert abs(fit.plane[3] - d) < 0.003
    assert fit.inliers[:3000].mean() > 0.99 and fit.inliers[3000:].mean() < 0.1
    assert 0.001 < fit.sigma_m < 0.003
    # The same seed gives the same plane; a generator works as well as a seed.
    again = fit_plane_ransac(np.concatenate([on, off]), 0.008, seed=np.random.default_rng(1))
    np.testing.assert_array_equal(fit.plane, again.plane)


def test_plane_ransac_refuses_too_little_support() -> None:
    rng = np.random.default_rng(2)
    n = np.array([0.0, -1.0, 0.0])
    on = _plane_points(rng, n, 0.5, 100, 0.001)
    scatter = rng.uniform(-1, 1, size=(900, 3))
    points = np.concatenate([on, scatter])
    assert fit_plane_ransac(points, 0.005, seed=0) is not None  # some plane always wins without a floor
    assert fit_plane_ransac(points, 0.005, seed=0, min_inlier_fraction=0.3) is None
    assert fit_plane_ransac(points[:20], 0.005, min_inliers=30) is None
    assert fit_plane_ransac(np.zeros((2, 3)), 0.005) is None
    collinear = np.stack([np.linspace(0, 1, 50), np.zeros(50), np.ones(50)], axis=1)
    assert fit_plane_ransac(collinear, 0.005) is None


def test_orient_plane_puts_the_camera_on_the_positive_side() -> None:
    plane = orient_plane([0.0, 2.0, 0.0, -1.0])
    np.testing.assert_allclose(plane, [0.0, -1.0, 0.0, 0.5])
    assert signed_distance(plane, np.zeros((1, 3)))[0] > 0
    with pytest.raises(ValueError, match="non-zero normal"):
        orient_plane([0, 0, 0, 1])
    axes = plane_axes(plane)
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(axes) > 0 and np.allclose(axes[2], plane[:3])


def test_heights_grid_and_projection_agree_with_the_camera() -> None:
    intr = CameraIntrinsics.from_fov(60.0, 64, 48)
    T_world_from_cam = look_at(np.array([0.3, -0.4, 0.5]), np.zeros(3))
    T_cam_from_world = np.linalg.inv(T_world_from_cam)
    plane = plane_from_pose(T_cam_from_world)
    # Depth of the floor z = 0 seen by this camera, with a 5 cm box-top patch.
    vv, uu = np.mgrid[0:48, 0:64]
    rays = intr.backproject_pixels(uu, vv, 1.0)
    depth = (-plane[3] / (rays @ plane[:3])).astype(np.float32)
    depth[20:28, 30:40] *= 0.9
    h = height_image(plane, depth, intr)
    world = transform_points(T_world_from_cam, intr.backproject(depth)[0]).reshape(48, 64, 3)
    np.testing.assert_allclose(h, world[..., 2], atol=1e-5)
    assert h[24, 35] > 0.03 and abs(h[0, 0]) < 1e-5
    box = (slice(10, 30), slice(5, 50))
    np.testing.assert_allclose(height_image(plane, depth, intr, box), h[box], atol=1e-6)
    grid = backproject_grid(intr, depth, 4)
    np.testing.assert_allclose(grid, intr.backproject(depth)[0].reshape(48, 64, 3)[2::4, 2::4])
    uv = project_points(intr, grid.reshape(-1, 3))
    np.testing.assert_allclose(uv.reshape(12, 16, 2)[..., 0], uu[2::4, 2::4], atol=1e-9)
