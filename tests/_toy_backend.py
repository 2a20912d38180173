"""A toy reconstruction backend (a test double, not a method): the axis-aligned box around the visible depth points.

Importing this module registers it as ``toy_box``; tests reach other processes with
``Z123_BACKEND_MODULES=tests._toy_backend``. Nothing outside this module names it: that is what the registry test shows.
"""

from __future__ import annotations

import numpy as np
import trimesh

from z123_ros.reconstruction import Backend, ReconstructionConfig, ReconstructionInput, register_backend
from z123_ros.reconstruction.result import result_from_mesh

NAME = "toy_box"


def run_toy_box(inp: ReconstructionInput, config: ReconstructionConfig, pipeline=None):
    points, _ = inp.intrinsics.backproject(np.asarray(inp.depth_m, dtype=np.float64), np.asarray(inp.mask, bool))
    lo, hi = points.min(axis=0), points.max(axis=0)
    box = trimesh.creation.box(extents=np.maximum(hi - lo, 1e-3))
    box.apply_translation(0.5 * (lo + hi))
    return result_from_mesh(
        box, backend=NAME, metric=True, frame="camera", confidence=0.1, timings={}, num_points=config.num_points
    )


register_backend(Backend(NAME, run_toy_box, needs_depth=True, needs_model=False, summary="test double"), replace=True)
