"""The one camera/pose convention (z123_ros.camera), pinned against the reference code's formulas."""

import numpy as np
import pytest

from z123_ros import camera
from z123_ros.errors import CameraError, InputError


def reference_get_T(target_c2w: np.ndarray, cond_c2w: np.ndarray) -> np.ndarray:
    """cvlab-columbia/zero123 ldm/data/simple.py get_T, on camera centres (their RT is world->cam; centre = -R^T t)."""

    def cartesian_to_spherical(xyz):
        xy = xyz[0] ** 2 + xyz[1] ** 2
        z = np.sqrt(xy + xyz[2] ** 2)
        theta = np.arctan2(np.sqrt(xy), xyz[2])
        azimuth = np.arctan2(xyz[1], xyz[0])
        return theta, azimuth, z

    th_t, az_t, z_t = cartesian_to_spherical(target_c2w[:3, 3])
    th_c, az_c, z_c = cartesian_to_spherical(cond_c2w[:3, 3])
    d_theta = th_t - th_c
    d_az = (az_t - az_c) % (2 * np.pi)
    return np.array([d_theta, np.sin(d_az), np.cos(d_az), z_t - z_c])


@pytest.mark.parametrize("seed", range(5))
def test_pose_vector_matches_reference(seed):
    rng = np.random.default_rng(seed)
    cond = camera.orbit_pose(rng.uniform(20, 120), rng.uniform(0, 360), rng.uniform(1.5, 2.2))
    target = camera.orbit_pose(rng.uniform(20, 120), rng.uniform(0, 360), rng.uniform(1.5, 2.2))
    d = camera.relative_view(cond, target, np.zeros(3))
    ours = camera.zero123_pose_vector(*d)
    np.testing.assert_allclose(ours, reference_get_T(target, cond), atol=1e-9)


def test_positive_d_polar_moves_camera_down():
    up = camera.orbit_pose(60, 30, 2.0)
    down = camera.orbit_pose(80, 30, 2.0)
    d_polar, d_az, d_r = camera.relative_view(up, down, np.zeros(3))
    assert d_polar == pytest.approx(20)
    assert down[2, 3] < up[2, 3]
    assert d_r == pytest.approx(0, abs=1e-9)
    assert min(d_az, 360 - d_az) == pytest.approx(0, abs=1e-6)


def test_look_at_is_opencv_and_keeps_world_up_up_in_image():
    T = camera.orbit_pose(70, 0, 2.0)  # camera on +x, looking at the origin
    R = T[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1)
    np.testing.assert_allclose(R[:, 2], -T[:3, 3] / np.linalg.norm(T[:3, 3]), atol=1e-12)  # z forward to target
    K = camera.CameraIntrinsics.from_fov(49.1, 256, 256)
    T_cam_from_world = camera.invert(T)
    top, bottom = camera.transform_points(T_cam_from_world, np.array([[0, 0, 0.2], [0, 0, -0.2]]))
    uv = K.project(np.stack([top, bottom]))
    assert uv[0, 1] < uv[1, 1]  # world +z appears higher in the image (smaller v)
    uv_centre = K.project(camera.transform_points(T_cam_from_world, np.zeros((1, 3))))
    np.testing.assert_allclose(uv_centre[0], [127.5, 127.5], atol=1e-9)


def test_look_at_straight_down_is_defined():
    T = camera.orbit_pose(0, 0, 1.0)
    np.testing.assert_allclose(T[:3, 2], [0, 0, -1], atol=1e-12)
    assert np.linalg.det(T[:3, :3]) == pytest.approx(1)


def test_spherical_round_trip():
    for polar, az, r in [(10, 20, 1), (90, 270, 2), (135, 359, 0.5)]:
        got = camera.cartesian_to_spherical(camera.spherical_to_cartesian(polar, az, r))
        np.testing.assert_allclose(got, (polar, az, r), atol=1e-9)


def test_backproject_project_round_trip_and_validation():
    K = camera.CameraIntrinsics(500.0, 510.0, 319.5, 239.5, 640, 480)
    depth = np.full((480, 640), 1.25, dtype=np.float32)
    depth[0, 0] = np.nan
    depth[1, 1] = 0
    pts, pix = K.backproject(depth)
    assert len(pts) == 640 * 480 - 2
    uv = K.project(pts)
    np.testing.assert_allclose(uv[:, ::-1], pix, atol=1e-6)
    with pytest.raises(InputError, match="does not match"):
        K.backproject(depth[:10])


def test_scaled_intrinsics_keep_pixel_centres():
    K = camera.CameraIntrinsics(500.0, 500.0, 319.5, 239.5, 640, 480)
    half = K.scaled(0.5)
    assert (half.width, half.height) == (320, 240)
    assert half.cx == pytest.approx(159.5) and half.fx == pytest.approx(250)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(fx=0.0, fy=500.0), "positive"),
        (dict(fx=float("nan"), fy=500.0), "finite"),
        (dict(fx=500.0, fy=500.0, width=0), "outside"),
    ],
)
def test_bad_intrinsics_raise_camera_error(kwargs, match):
    args = dict(fx=500.0, fy=500.0, cx=10.0, cy=10.0, width=20, height=20) | kwargs
    with pytest.raises(CameraError, match=match):
        camera.CameraIntrinsics(**args)


def test_check_rigid_rejects_scaled_rotation():
    T = np.eye(4)
    T[:3, :3] *= 2
    with pytest.raises(CameraError, match="rigid"):
        camera.check_rigid(T)


def test_polar_over_plane_and_from_extrinsics_agree():
    # A camera 0.6 m above a table (z=0), 0.8 m back: polar over the object at the origin = atan2(0.8, 0.6).
    T_world_from_cam = camera.look_at([0.8, 0.0, 0.6], [0, 0, 0])
    T_cam_from_world = camera.invert(T_world_from_cam)
    expected = np.degrees(np.arctan2(0.8, 0.6))
    assert camera.polar_from_extrinsics(T_cam_from_world, np.zeros(3)) == pytest.approx(expected)
    # The table plane z = 0 in the camera frame: normal R n_world, offset from the camera origin.
    n_cam = T_cam_from_world[:3, :3] @ np.array([0, 0, 1.0])
    point_cam = camera.transform_points(T_cam_from_world, np.zeros((1, 3)))[0]
    d = -n_cam @ point_cam
    for sign in (1, -1):  # either orientation of the plane gives the same answer
        assert camera.polar_over_plane(sign * np.append(n_cam, d), point_cam) == pytest.approx(expected)
