"""3D reconstruction: one segmented view -> a metric, watertight mesh and a point cloud a gripper can use.

Backends (all return :class:`ReconstructionResult`):

- ``depth``: geometric completion of the visible surface (support plane, free space, symmetry). No weights; the
  embedded default.
- ``multiview``: one batched Zero-1-to-3 call for a ring of novel views, then a short voxel-field fit.
- ``zero123``: Score Jacobian Chaining of a voxel radiance field guided by Zero-1-to-3 (the paper's method).
- ``hull``: the convex hull of the visible depth points (the baseline).
"""

from z123_ros.reconstruction.api import reconstruct, result_from_mesh
from z123_ros.reconstruction.base import (
    DepthBackendConfig,
    FieldConfig,
    MultiviewConfig,
    ReconstructionConfig,
    ReconstructionInput,
    ReconstructionResult,
    SJCConfig,
)
from z123_ros.reconstruction.registry import Backend, backend_names, get_backend, register_backend, unregister_backend

__all__ = [
    "Backend",
    "DepthBackendConfig",
    "FieldConfig",
    "MultiviewConfig",
    "ReconstructionConfig",
    "ReconstructionInput",
    "ReconstructionResult",
    "SJCConfig",
    "backend_names",
    "get_backend",
    "reconstruct",
    "register_backend",
    "result_from_mesh",
    "unregister_backend",
]
