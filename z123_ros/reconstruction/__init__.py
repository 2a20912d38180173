"""3D reconstruction: one segmented view -> a metric, watertight mesh and a point cloud a gripper can use.

Backends (all return :class:`ReconstructionResult`):

- ``depth``: geometric completion of the visible surface (support plane, free space, symmetry). No weights; the
  embedded default.
- ``multiview``: one batched Zero-1-to-3 call for a ring of novel views, then a short voxel-field fit.
- ``zero123``: Score Jacobian Chaining of a voxel radiance field guided by Zero-1-to-3 (the paper's method).
- ``hull``: the convex hull of the visible depth points (the baseline).
"""

from __future__ import annotations

from z123_ros._lazy import lazy_exports

_EXPORTS = {
    "reconstruct": "z123_ros.reconstruction.api",
    "result_from_mesh": "z123_ros.reconstruction.result",
    "DepthBackendConfig": "z123_ros.reconstruction.base",
    "FieldConfig": "z123_ros.reconstruction.base",
    "MultiviewConfig": "z123_ros.reconstruction.base",
    "ReconstructionConfig": "z123_ros.reconstruction.base",
    "ReconstructionInput": "z123_ros.reconstruction.base",
    "ReconstructionResult": "z123_ros.reconstruction.base",
    "SJCConfig": "z123_ros.reconstruction.base",
    "Backend": "z123_ros.reconstruction.registry",
    "backend_names": "z123_ros.reconstruction.registry",
    "get_backend": "z123_ros.reconstruction.registry",
    "register_backend": "z123_ros.reconstruction.registry",
    "unregister_backend": "z123_ros.reconstruction.registry",
}

__all__ = sorted(_EXPORTS)
# Lazy: the ROS node and the dispatch process need the config and input types and the registry's names, not the
# backends' stack (trimesh, scipy.optimize, scikit-image: 0.5 s of the node's 0.9 s import on the 2-core machine).
__getattr__ = lazy_exports(__name__, _EXPORTS)
