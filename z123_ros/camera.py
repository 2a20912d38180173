"""The one camera and pose convention of the project. Everything else imports it.

Conventions (fixed, tested in tests/test_camera.py):

- Camera frame: OpenCV. x right, y down, z forward. Pixels (u, v) with u along x, v along y, origin at the centre of
  the top-left pixel.
- World frame: any right-handed frame with +z up (e.g. the table frame). Transforms are named ``T_a_from_b``: a 4x4
  homogeneous matrix mapping points in frame b to frame a, ``p_a = T_a_from_b @ p_b``.
- Spherical viewpoints (Zero-1-to-3): the camera centre ``c`` relative to the object centre has
  ``polar = atan2(hypot(cx, cy), cz)`` (0 = looking straight down from above, 90 deg = level) and
  ``azimuth = atan2(cy, cx)`` (counter-clockwise seen from above), ``radius = |c|``. This is ``cartesian_to_spherical``
  of the reference code (cvlab-columbia/zero123, ``zero123/ldm/data/simple.py``) applied to the camera centre.
- Zero-1-to-3 relative pose: ``[d_polar (rad), sin(d_azimuth), cos(d_azimuth), d_radius]`` with
  ``d_x = x_target - x_input`` and ``d_azimuth`` wrapped to [0, 2 pi). A positive ``d_polar`` moves the camera down.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from z123_ros.errors import CameraError, InputError


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics of an undistorted image, in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(v) for v in values):
            raise CameraError(
                f"camera intrinsics must be finite, got fx={self.fx} fy={self.fy} cx={self.cx} cy={self.cy}"
            )
        if self.fx <= 0 or self.fy <= 0:
            raise CameraError(f"focal lengths must be positive, got fx={self.fx} fy={self.fy} (is CameraInfo.k zero?)")
        if not (0 < self.width <= 16384 and 0 < self.height <= 16384):
            raise CameraError(f"image size {self.width}x{self.height} is outside 1..16384 pixels")

    @classmethod
    def from_K(cls, K: np.ndarray | list, width: int, height: int) -> CameraIntrinsics:
        """Build from a 3x3 matrix (or a row-major list of 9 numbers)."""
        K = np.asarray(K, dtype=np.float64)
        if K.size != 9:
            raise CameraError(f"K must have 9 entries (3x3 row-major), got {K.size}")
        K = K.reshape(3, 3)
        intrinsics = cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), int(width), int(height))
        # fx, fy, cx, cy alone describe the camera only for this shape; anything else (a singular or scaled last row,
        # skew) would be silently mis-modelled, so it is refused (after the focal check: an all-zero K, an
        # uncalibrated camera, is reported as such).
        if not np.allclose(K[2], (0.0, 0.0, 1.0), rtol=0.0, atol=1e-9) or abs(K[1, 0]) > 1e-9:
            raise CameraError(f"K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]; got rows {K.tolist()}")
        if abs(K[0, 1]) > 1e-6 * max(abs(K[0, 0]), 1.0):
            raise CameraError(f"K has skew {K[0, 1]:g} (K[0][1]); only zero skew is supported")
        return intrinsics

    @classmethod
    def from_fov(cls, fov_deg: float, width: int, height: int) -> CameraIntrinsics:
        """Square-pixel intrinsics with horizontal field of view ``fov_deg`` and the principal point at the centre."""
        f = 0.5 * width / np.tan(np.deg2rad(fov_deg) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2, width, height)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    def scaled(self, sx: float, sy: float | None = None) -> CameraIntrinsics:
        """Intrinsics of the same camera after resizing the image by (sx, sy)."""
        sy = sx if sy is None else sy
        return CameraIntrinsics(
            self.fx * sx,
            self.fy * sy,
            (self.cx + 0.5) * sx - 0.5,
            (self.cy + 0.5) * sy - 0.5,
            round(self.width * sx),
            round(self.height * sy),
        )

    def project(self, points_cam: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame points -> (N, 2) pixel coordinates (u, v). Points must have z > 0."""
        p = np.asarray(points_cam, dtype=np.float64)
        z = p[:, 2]
        return np.stack([self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy], axis=1)

    def backproject_pixels(self, u: np.ndarray, v: np.ndarray, z: np.ndarray | float) -> np.ndarray:
        """(..., 3) float64 camera-frame points of pixels ``(u, v)`` at z-depth ``z``, all three broadcast together
        (the inverse of :meth:`project`; NaN depth gives NaN points)."""
        u, v, z = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64), np.asarray(z, dtype=np.float64)
        u, v, z = np.broadcast_arrays(u, v, z)
        return np.stack([(u - self.cx) / self.fx * z, (v - self.cy) / self.fy * z, z], axis=-1)

    def backproject(self, depth_m: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Back-project a metric z-depth image.

        Returns ``(points_cam (N, 3) float64, pixels (N, 2) int (v, u))`` for pixels with finite depth > 0 inside
        ``mask`` (when given).
        """
        depth_m = np.asarray(depth_m)
        if depth_m.shape != (self.height, self.width):
            raise InputError(f"depth shape {depth_m.shape} does not match camera {self.height}x{self.width}")
        valid = np.isfinite(depth_m) & (depth_m > 0)
        if mask is not None:
            valid &= np.asarray(mask, dtype=bool)
        v, u = np.nonzero(valid)
        return self.backproject_pixels(u, v, depth_m[v, u]), np.stack([v, u], axis=1)


def check_rigid(T: np.ndarray, name: str = "T") -> np.ndarray:
    """Return ``T`` as a float64 4x4 rigid transform, or raise CameraError naming ``name``."""
    T = np.asarray(T, dtype=np.float64)
    if T.size != 16:
        raise CameraError(f"{name} must be a 4x4 matrix, got {T.size} entries")
    T = T.reshape(4, 4)
    if not np.all(np.isfinite(T)):
        raise CameraError(f"{name} contains NaN or inf")
    R = T[:3, :3]
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0 or not np.allclose(T[3], [0, 0, 0, 1]):
        raise CameraError(f"{name} is not a rigid transform (rotation must be orthonormal, det +1, last row 0 0 0 1)")
    return T


def invert(T: np.ndarray) -> np.ndarray:
    """Inverse of a rigid 4x4 transform."""
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def transform_points(T_a_from_b: np.ndarray, points_b: np.ndarray) -> np.ndarray:
    """Apply a 4x4 transform to (N, 3) points."""
    points_b = np.asarray(points_b, dtype=np.float64)
    T = np.asarray(T_a_from_b, dtype=np.float64)
    # einsum, not ``@``: a (N, 3) x (3, 3) BLAS call is several times slower when the BLAS thread pool competes for
    # busy cores, and reconstruction moves millions of points through this.
    return np.einsum("ij,...j->...i", T[:3, :3], points_b) + T[:3, 3]


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = (0.0, 0.0, 1.0)) -> np.ndarray:
    """``T_world_from_cam`` of an OpenCV camera at ``eye`` looking at ``target``, world ``up`` up in the image.

    When the view direction is parallel to ``up`` the image's up is taken along world +y.
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    norm = np.linalg.norm(z)
    if norm < 1e-12:
        raise CameraError("look_at: eye and target coincide")
    z /= norm
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        x = np.cross(z, np.array([0.0, 1.0, 0.0]))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # image down
    T = np.eye(4)
    T[:3, 0], T[:3, 1], T[:3, 2], T[:3, 3] = x, y, z, eye
    return T


def spherical_to_cartesian(polar_deg: float, azimuth_deg: float, radius: float) -> np.ndarray:
    """Camera centre for a spherical viewpoint (see the module docstring)."""
    p, a = np.deg2rad(polar_deg), np.deg2rad(azimuth_deg)
    return radius * np.array([np.sin(p) * np.cos(a), np.sin(p) * np.sin(a), np.cos(p)])


def cartesian_to_spherical(centre: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`spherical_to_cartesian`: ``(polar_deg, azimuth_deg in [0, 360), radius)``."""
    x, y, z = np.asarray(centre, dtype=np.float64)
    radius = float(np.sqrt(x * x + y * y + z * z))
    polar = float(np.degrees(np.arctan2(np.hypot(x, y), z)))
    azimuth = float(np.degrees(np.arctan2(y, x)) % 360.0)
    return polar, azimuth, radius


def orbit_pose(polar_deg: float, azimuth_deg: float, radius: float, target: np.ndarray = (0, 0, 0)) -> np.ndarray:
    """``T_world_from_cam`` of a camera on a sphere around ``target``, looking at it, world +z up."""
    target = np.asarray(target, dtype=np.float64)
    return look_at(target + spherical_to_cartesian(polar_deg, azimuth_deg, radius), target)


def zero123_pose_vector(d_polar_deg: float, d_azimuth_deg: float, d_radius: float) -> np.ndarray:
    """The relative pose the Zero-1-to-3 UNet is conditioned on: ``[d_polar rad, sin d_az, cos d_az, d_radius]``."""
    d_az = np.deg2rad(d_azimuth_deg % 360.0)
    return np.array([np.deg2rad(d_polar_deg), np.sin(d_az), np.cos(d_az), d_radius], dtype=np.float64)


def relative_view(
    T_world_from_cam_input: np.ndarray, T_world_from_cam_target: np.ndarray, centre: np.ndarray
) -> tuple[float, float, float]:
    """``(d_polar_deg, d_azimuth_deg, d_radius)`` from the input camera to the target camera about ``centre``.

    Mirrors ``get_T`` of the reference code: spherical coordinates of both camera centres relative to ``centre``.
    """
    centre = np.asarray(centre, dtype=np.float64)
    p0, a0, r0 = cartesian_to_spherical(np.asarray(T_world_from_cam_input)[:3, 3] - centre)
    p1, a1, r1 = cartesian_to_spherical(np.asarray(T_world_from_cam_target)[:3, 3] - centre)
    return p1 - p0, (a1 - a0) % 360.0, r1 - r0


def polar_over_plane(plane_in_cam: np.ndarray, point_cam: np.ndarray) -> float:
    """Polar angle (deg) of the camera seen from ``point_cam`` on a support plane ``n . p + d = 0`` (camera frame).

    The plane normal is oriented towards the camera (the side the objects stand on). 0 deg = camera straight above,
    90 deg = camera level with the point. This is the input-view polar Zero-1-to-3 needs.
    """
    plane = np.asarray(plane_in_cam, dtype=np.float64)
    n = plane[:3] / np.linalg.norm(plane[:3])
    if plane[3] / np.linalg.norm(plane[:3]) < 0:  # camera origin must be on the positive side
        n = -n
    to_cam = -np.asarray(point_cam, dtype=np.float64)
    to_cam /= np.linalg.norm(to_cam)
    return float(np.degrees(np.arccos(np.clip(np.dot(n, to_cam), -1.0, 1.0))))


def polar_from_extrinsics(T_cam_from_world: np.ndarray, point_world: np.ndarray) -> float:
    """Polar angle (deg) of the camera over ``point_world`` for a world frame with +z up."""
    T_world_from_cam = invert(check_rigid(T_cam_from_world, "T_cam_from_world"))
    return cartesian_to_spherical(T_world_from_cam[:3, 3] - np.asarray(point_world, dtype=np.float64))[0]
