"""``reconstruct()``: one segmented view -> a watertight mesh and a point cloud, with any backend."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from z123_ros.errors import ConfigError, ReconstructionError
from z123_ros.reconstruction.base import (
    BACKENDS,
    ReconstructionConfig,
    ReconstructionInput,
    ReconstructionResult,
    validate_input,
)
from z123_ros.reconstruction.mesh import extract_mesh
from z123_ros.reconstruction.result import result_from_mesh

if TYPE_CHECKING:
    from z123_ros.novel_views import Zero123Pipeline

logger = logging.getLogger(__name__)


def _reconstruct_depth(inp: ReconstructionInput, config: ReconstructionConfig) -> ReconstructionResult:
    from z123_ros.reconstruction.depth_backend import complete_from_depth

    completion, _ = complete_from_depth(inp, config.depth)
    t0 = time.perf_counter()
    mesh = extract_mesh(
        completion.occupancy.astype(np.float32),
        0.5,
        completion.T_cam_from_index,
        smooth_sigma=config.depth.smooth_sigma,
    )
    timings = {**completion.timings, "mesh": time.perf_counter() - t0}
    # Evidence vs prior: a consistent symmetry is strong support, a thickness guess is weak.
    confidence = 0.4 + 0.5 * completion.consistency if completion.prior.startswith("symmetry") else 0.3
    return result_from_mesh(
        mesh,
        backend="depth",
        metric=True,
        frame="camera",
        confidence=confidence,
        timings=timings,
        num_points=config.num_points,
        plane_cam=completion.plane_cam,
        info={
            "prior": completion.prior,
            "plane_source": completion.plane_source,
            "symmetry_consistency": completion.consistency,
        },
    )


def _reconstruct_hull(inp: ReconstructionInput, config: ReconstructionConfig) -> ReconstructionResult:
    from z123_ros.reconstruction.hull import convex_hull_mesh

    t0 = time.perf_counter()
    mesh = convex_hull_mesh(inp)
    return result_from_mesh(
        mesh,
        backend="hull",
        metric=True,
        frame="camera",
        confidence=0.2,
        timings={"hull": time.perf_counter() - t0},
        num_points=config.num_points,
    )


def reconstruct(
    inp: ReconstructionInput,
    backend: str = "depth",
    config: ReconstructionConfig | None = None,
    pipeline: Zero123Pipeline | None = None,
) -> ReconstructionResult:
    """Reconstruct one segmented view.

    Args:
        inp: the view (RGB, mask, intrinsics, optional metric depth and camera pose / support plane).
        backend: ``"depth"`` (geometric completion, no weights; needs depth), ``"multiview"`` (novel views + a short
            field fit), ``"zero123"`` (Score Jacobian Chaining, the paper's method) or ``"hull"`` (the convex-hull
            baseline; needs depth).
        config: settings; ``ReconstructionConfig()`` (the paper's defaults) when None.
        pipeline: a loaded :class:`~z123_ros.novel_views.Zero123Pipeline`; required by the learned backends.

    Returns:
        A :class:`ReconstructionResult`; metres in the camera frame when the input has depth, else the normalised
        object frame.

    Raises:
        InputError: inconsistent or empty input (names the problem).
        ConfigError: unknown backend, or a learned backend without a pipeline.
        ReconstructionError: the backend ran but produced no surface.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"unknown reconstruction backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    config = config or ReconstructionConfig()
    t0 = time.perf_counter()
    validate_input(inp, need_depth=backend in ("depth", "hull"))
    validated = time.perf_counter() - t0
    if backend == "depth":
        result = _reconstruct_depth(inp, config)
    elif backend == "hull":
        result = _reconstruct_hull(inp, config)
    else:
        if pipeline is None:
            raise ConfigError(f"the {backend} backend needs a Zero-1-to-3 pipeline (load one with load_zero123)")
        if backend == "multiview":
            from z123_ros.reconstruction.multiview import reconstruct_multiview

            result = reconstruct_multiview(inp, pipeline, config)
        else:
            from z123_ros.reconstruction.sjc import reconstruct_sjc

            result = reconstruct_sjc(inp, pipeline, config)
    result.timings = {"validate": validated, **result.timings}
    if not np.all(np.isfinite(result.vertices)):
        raise ReconstructionError(f"the {backend} backend produced non-finite vertices")
    logger.debug("reconstruct(%s): %d faces, %.2f s", backend, len(result.faces), sum(result.timings.values()))
    return result


__all__ = ["reconstruct", "result_from_mesh"]
