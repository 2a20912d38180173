"""Packaging a backend's mesh as a :class:`ReconstructionResult` (shared by every backend, learned or not).

Its own module so that the learned backends' setup (learned.py) does not import api.py, which dispatches to them.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import trimesh

from z123_ros.errors import ReconstructionError
from z123_ros.reconstruction.base import ReconstructionResult
from z123_ros.reconstruction.mesh import sample_points, watertight


def result_from_mesh(
    mesh: trimesh.Trimesh,
    *,
    backend: str,
    metric: bool,
    frame: str,
    confidence: float,
    timings: dict[str, float],
    num_points: int,
    plane_cam: np.ndarray | None = None,
    info: dict[str, Any] | None = None,
) -> ReconstructionResult:
    """Package a mesh as a :class:`ReconstructionResult` (samples the point cloud, records the sampling time)."""
    if len(mesh.faces) == 0:
        raise ReconstructionError(f"the {backend} backend produced an empty mesh")
    t0 = time.perf_counter()
    points = sample_points(mesh, num_points)
    timings = {**timings, "sample_points": time.perf_counter() - t0}
    lo, hi = mesh.bounds
    return ReconstructionResult(
        vertices=np.asarray(mesh.vertices, dtype=np.float32),
        faces=np.asarray(mesh.faces, dtype=np.int32),
        points=points,
        metric=metric,
        frame=frame,
        backend=backend,
        confidence=float(np.clip(confidence, 0.0, 1.0)),
        timings=timings,
        centre=(0.5 * (lo + hi)).astype(np.float64),
        extent_m=(hi - lo).astype(np.float64),
        watertight=all(watertight(mesh.faces)),
        plane_cam=None if plane_cam is None else np.asarray(plane_cam, dtype=np.float64),
        info=dict(info or {}),
    )
