"""The convex-hull baseline: the convex hull of the input view's back-projected depth points.

It is the trivial baseline of the evaluation (about IoU 0.45 / Chamfer 6.3 mm on the YCB objects of ``z123 eval``);
every backend that ships has to beat it clearly.
"""

from __future__ import annotations

import numpy as np
import trimesh
from scipy.spatial import QhullError

from z123_ros.errors import ReconstructionError
from z123_ros.reconstruction.base import ReconstructionInput


def convex_hull_mesh(inp: ReconstructionInput) -> trimesh.Trimesh:
    """Convex hull (camera frame, metres) of the valid depth points inside the mask."""
    points, _ = inp.intrinsics.backproject(np.asarray(inp.depth_m, dtype=np.float64), np.asarray(inp.mask, bool))
    if len(points) < 4:
        raise ReconstructionError(f"only {len(points)} valid depth pixels inside the mask; a hull needs 4")
    try:
        # Flat point sets give a zero-volume hull, whose centre of mass trimesh divides by zero to compute.
        with np.errstate(invalid="ignore", divide="ignore"):
            hull = trimesh.convex.convex_hull(points)
            volume = float(hull.volume)
    except (QhullError, ValueError, IndexError) as exc:
        raise ReconstructionError(f"convex hull failed (the visible points are degenerate): {exc}") from exc
    if not volume > 0:
        raise ReconstructionError("the visible points are flat: the convex hull has no volume")
    return hull
