"""A thin CPU renderer over pybullet's TinyRenderer, driven by OpenCV intrinsics and ``T_cam_from_world``.

pybullet thinks in OpenGL (camera looks down -z, y up, column-major matrices, a non-linear depth buffer). This module
is the only place that converts: callers give OpenCV intrinsics and extrinsics and get back RGB, metric z-depth and
per-pixel body ids. Each :class:`TinyRenderer` owns its own DIRECT physics client, so several can live in one process
(threads each use their own).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from z123_ros.camera import CameraIntrinsics, check_rigid
from z123_ros.errors import InputError

logger = logging.getLogger(__name__)

#: Where hidden bodies are parked: far below the table, outside every camera's frustum.
_PARKING_Z_M = -1000.0

# OpenCV camera (x right, y down, z forward) -> OpenGL camera (x right, y up, z backward).
_CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


def opengl_projection(intrinsics: CameraIntrinsics, near_m: float, far_m: float) -> np.ndarray:
    """4x4 OpenGL projection matrix (row-major) that images a point exactly where ``intrinsics`` projects it.

    Pixel (u, v) in OpenCV is the centre of the pixel at column u, row v counted from the top. TinyRenderer samples
    column i at NDC x = 2 i / W - 1 and, as it flips rows to return them top first, row v at NDC y = 1 - 2 (v + 1) / H
    (measured: with these offsets back-projected depth lands on the mesh within ~0.002 mm, tests/test_sim_scene.py).
    """
    W, H = intrinsics.width, intrinsics.height
    P = np.zeros((4, 4))
    P[0, 0] = 2.0 * intrinsics.fx / W
    P[0, 2] = 1.0 - 2.0 * intrinsics.cx / W
    P[1, 1] = 2.0 * intrinsics.fy / H
    P[1, 2] = 2.0 * (intrinsics.cy + 1.0) / H - 1.0
    P[2, 2] = -(far_m + near_m) / (far_m - near_m)
    P[2, 3] = -2.0 * far_m * near_m / (far_m - near_m)
    P[3, 2] = -1.0
    return P


def opengl_view(T_cam_from_world: np.ndarray) -> np.ndarray:
    """4x4 OpenGL view matrix (row-major) of an OpenCV camera with extrinsics ``T_cam_from_world``."""
    return _CV_TO_GL @ check_rigid(T_cam_from_world, "T_cam_from_world")


def zbuffer_to_depth(zbuffer: np.ndarray, near_m: float, far_m: float) -> np.ndarray:
    """Metric z-depth (float32 metres) from pybullet's non-linear depth buffer; background (zbuffer == 1) -> NaN."""
    z = np.asarray(zbuffer, dtype=np.float64)
    depth = far_m * near_m / (far_m - (far_m - near_m) * z)
    depth[z >= 1.0 - 1e-7] = np.nan
    return depth.astype(np.float32)


@dataclass
class LightConfig:
    """TinyRenderer lighting. One directional light with hard shadows, as pybullet offers."""

    direction: tuple[float, float, float] = (0.4, -0.5, 1.0)
    """Direction towards the light, world frame (+z up)."""
    ambient: float = 0.55
    """Ambient coefficient: keeps faces turned away from the light readable."""
    diffuse: float = 0.45
    """Diffuse coefficient."""
    specular: float = 0.05
    """Specular coefficient; scans are mostly matte."""
    shadow: bool = True
    """Cast shadows (on the table)."""


@dataclass
class RenderBuffers:
    """One rendered frame in OpenCV conventions."""

    rgb: np.ndarray
    """(H, W, 3) uint8."""
    depth_m: np.ndarray
    """(H, W) float32 metric z-depth along the optical axis; NaN where no surface was hit."""
    body_ids: np.ndarray
    """(H, W) int32 pybullet body unique id per pixel; -1 where no surface was hit."""


class TinyRenderer:
    """A pybullet DIRECT client holding meshes, rendering with ER_TINY_RENDERER. Use as a context manager."""

    def __init__(self) -> None:
        import pybullet

        self._p = pybullet
        self._client = pybullet.connect(pybullet.DIRECT)
        self._parked: dict[int, tuple[list[float], list[float]]] = {}

    def __enter__(self) -> TinyRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None and self._client >= 0:
            self._p.disconnect(physicsClientId=self._client)
        self._client = None

    def add_mesh(
        self,
        vertices: np.ndarray,
        faces: np.ndarray,
        rgb: tuple[float, float, float],
        T_world_from_object: np.ndarray | None = None,
    ) -> int:
        """Add a static mesh (object frame vertices, metres) placed at ``T_world_from_object``; returns its body id."""
        shape = self._p.createVisualShape(
            self._p.GEOM_MESH,
            vertices=np.asarray(vertices, dtype=np.float64).tolist(),
            indices=np.asarray(faces, dtype=np.int64).ravel().tolist(),
            rgbaColor=[*map(float, rgb), 1.0],
            specularColor=[0.2, 0.2, 0.2],
            physicsClientId=self._client,
        )
        if shape < 0:
            raise InputError(f"pybullet could not create a visual shape from a mesh of {len(faces)} faces (empty?)")
        position, orientation = _pose_to_pybullet(np.eye(4) if T_world_from_object is None else T_world_from_object)
        return self._p.createMultiBody(
            baseMass=0,
            baseVisualShapeIndex=shape,
            basePosition=position,
            baseOrientation=orientation,
            physicsClientId=self._client,
        )

    def add_table(self) -> int:
        """pybullet_data's textured table (1.5 m x 1 m), its top at world z = 0, centred on the origin."""
        import pybullet_data

        # table.urdf: a 0.05 m slab centred at z = 0.6, so its top is at 0.625.
        return self._p.loadURDF(
            f"{pybullet_data.getDataPath()}/table/table.urdf",
            basePosition=[0.0, 0.0, -0.625],
            useFixedBase=True,
            physicsClientId=self._client,
        )

    def set_visible(self, body: int, visible: bool) -> None:
        """Hide a body by parking it far outside the view, or bring it back."""
        if not visible and body not in self._parked:
            pos, orn = self._p.getBasePositionAndOrientation(body, physicsClientId=self._client)
            self._parked[body] = (list(pos), list(orn))
            self._p.resetBasePositionAndOrientation(body, [0.0, 0.0, _PARKING_Z_M], orn, physicsClientId=self._client)
        elif visible and body in self._parked:
            pos, orn = self._parked.pop(body)
            self._p.resetBasePositionAndOrientation(body, pos, orn, physicsClientId=self._client)

    def render(
        self,
        intrinsics: CameraIntrinsics,
        T_cam_from_world: np.ndarray,
        near_m: float = 0.01,
        far_m: float = 10.0,
        light: LightConfig | None = None,
    ) -> RenderBuffers:
        """Render RGB, metric depth and body ids with TinyRenderer (deterministic, single-threaded)."""
        light = light or LightConfig()
        W, H = intrinsics.width, intrinsics.height
        view = opengl_view(T_cam_from_world)
        proj = opengl_projection(intrinsics, near_m, far_m)
        # pybullet wants column-major 16-lists.
        _, _, rgba, zbuf, seg = self._p.getCameraImage(
            W,
            H,
            viewMatrix=view.T.ravel().tolist(),
            projectionMatrix=proj.T.ravel().tolist(),
            renderer=self._p.ER_TINY_RENDERER,
            shadow=int(light.shadow),
            lightDirection=list(light.direction),
            lightAmbientCoeff=light.ambient,
            lightDiffuseCoeff=light.diffuse,
            lightSpecularCoeff=light.specular,
            physicsClientId=self._client,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(H, W, 4)[..., :3].copy()
        depth = zbuffer_to_depth(np.asarray(zbuf, dtype=np.float64).reshape(H, W), near_m, far_m)
        seg = np.asarray(seg, dtype=np.int64).reshape(H, W)
        # Segmentation values are uid + ((link + 1) << 24); every body here is a single base link.
        body_ids = np.where(seg < 0, -1, seg & ((1 << 24) - 1)).astype(np.int32)
        return RenderBuffers(rgb=rgb, depth_m=depth, body_ids=body_ids)


def _pose_to_pybullet(T: np.ndarray) -> tuple[list[float], list[float]]:
    """4x4 rigid transform -> (position, quaternion xyzw) as pybullet takes them."""
    T = check_rigid(T, "T_world_from_object")
    return T[:3, 3].tolist(), Rotation.from_matrix(T[:3, :3]).as_quat().tolist()
