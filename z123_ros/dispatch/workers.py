"""The production jobs and the workers that run them. Plain Python: no Ray here, so the same code runs in an actor
or in process.

A job is a dataclass naming its worker ``kind``; a worker is built once per actor from its
:class:`~z123_ros.dispatch.pool.WorkerPoolConfig` (loading its model), warmed up once, then called per job. Which
kinds exist is :mod:`z123_ros.dispatch.kinds` (the diagnostic ones are in :mod:`z123_ros.dispatch.diagnostics`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from z123_ros.dispatch.pool import WorkerPoolConfig
from z123_ros.errors import ModelLoadError


@dataclass(kw_only=True)
class Job:
    """Base of every job. Subclasses set ``kind`` and add their inputs; all of them must be picklable."""

    kind: ClassVar[str] = ""
    key: str | None = None
    """Object key (e.g. the tracked object id): a newer job with the same key replaces a queued older one."""
    timeout_s: float | None = None
    """Seconds from submit() to the result; None = DispatchConfig.job_timeout_s."""


@dataclass(kw_only=True)
class ReconstructionJob(Job):
    """One segmented view -> ReconstructionResult, through ``z123_ros.reconstruction.reconstruct``."""

    kind: ClassVar[str] = "reconstruction"
    inp: Any
    """A ``z123_ros.reconstruction.ReconstructionInput``."""
    backend: str = "depth"
    """Reconstruction backend: "depth", "multiview", "zero123" or "hull"."""
    config: Any = None
    """A ``ReconstructionConfig`` or None for its defaults."""
    model_path: str | None = None
    """Zero-1-to-3 weights for the learned backends; None = the pool's ``model_path``."""
    max_faces: int | None = None
    """Decimate the mesh to at most this many faces in the actor (``z123_ros.reconstruction.simplify``), off the
    caller's process; None = the mesh as the backend made it."""


@dataclass(kw_only=True)
class NovelViewsJob(Job):
    """One object image -> novel views (``NovelViewOutput``) from the pool's Zero-1-to-3 model."""

    kind: ClassVar[str] = "novel_views"
    image: Any
    """Input view: (H, W, 3|4) uint8 or float in [0, 1], or a ``Zero123Input`` from preprocess_for_zero123."""
    views: list[tuple[float, float, float]] = field(default_factory=lambda: [(0.0, 90.0, 0.0)])
    """Target views relative to the input: (d_polar_deg, d_azimuth_deg, d_radius)."""
    input_polar_deg: float | None = None
    """Polar angle of the input view (stable Zero123 conditioning); None = the pipeline's default."""
    num_inference_steps: int = 50
    """DDIM steps."""
    guidance_scale: float = 3.0
    """Classifier-free guidance scale."""
    seed: int = 0
    """Seed of the initial noise: the same job gives the same images."""


@dataclass
class WorkerReply:
    """What an actor sends back for one job. Job errors travel as a reason and message, never as a pickled
    traceback object, so a failure the caller cannot import still arrives intact."""

    ok: bool
    value: Any = None
    reason: str = ""
    """The Z123Error ``reason`` of a failed job ("job_error" for any other exception)."""
    message: str = ""
    run_s: float = 0.0
    """Seconds the worker spent in the job (excludes transfer and queueing)."""
    pid: int = 0
    """Process id of the worker that ran it."""


class Worker(Protocol):
    """A model owner: built once (may load weights), warmed up once, then called per job."""

    def warmup(self) -> None: ...

    def __call__(self, job: Any) -> Any: ...


def _resolve_device(pool: WorkerPoolConfig) -> str:
    if pool.device != "auto":
        return pool.device
    import torch

    # Ray sets CUDA_VISIBLE_DEVICES for actors that reserve a GPU; one without a reservation must stay off the GPU.
    return "cuda" if pool.num_gpus > 0 and torch.cuda.is_available() else "cpu"


class _Zero123Cache:
    """The one Zero-1-to-3 pipeline an actor holds; a different ``model_path`` replaces it (GPU memory is finite)."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        self._pool = pool
        self._path: str | None = None
        self._pipe: Any = None

    def get(self, model_path: str | None) -> Any:
        path = model_path or self._pool.model_path
        if not path:
            raise ModelLoadError("this job needs Zero-1-to-3 weights: set the pool's model_path or the job's")
        if path != self._path:
            from z123_ros.novel_views import load_zero123

            self._pipe = None  # release the old model before loading the next
            device = _resolve_device(self._pool)
            self._pipe = load_zero123(path, device=device, dtype=self._pool.dtype, progress_bar=False)
            self._path = path
        return self._pipe


class ReconstructionWorker:
    """Runs ``reconstruct()``; holds the Zero-1-to-3 pipeline the learned backends need."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        # The reconstruction stack (the built-in backends' module: trimesh, scipy, scikit-image; 0.5 s) loads here,
        # in the actors that run it: the dispatch process and the diagnostic actors import this module too and must
        # start fast.
        import z123_ros.reconstruction.api  # noqa: F401  (the import itself is part of the start-up cost)

        self._zero123 = _Zero123Cache(pool)
        if pool.model_path:
            self._zero123.get(pool.model_path)

    def warmup(self) -> None:
        """Nothing left to warm once built: the backends' stack was imported in ``__init__`` (and the learned
        backends' model loaded), and the depth backend keeps no cache between jobs. A reconstruction of a
        synthetic box here cost 0.12-0.16 CPU-s in each actor, both actors at once in the node's start on two
        cores, and left the first real job as slow as without it (a 3-object frame's first job: 0.65 vs 0.66 CPU-s
        mean over 6 processes each; docs/node/latency.md)."""

    def __call__(self, job: ReconstructionJob) -> Any:
        from z123_ros.reconstruction import get_backend, reconstruct
        from z123_ros.reconstruction.simplify import simplify_result

        pipeline = self._zero123.get(job.model_path) if get_backend(job.backend).needs_model else None
        result = reconstruct(job.inp, backend=job.backend, config=job.config, pipeline=pipeline)
        return result if job.max_faces is None else simplify_result(result, job.max_faces)


class NovelViewsWorker:
    """Runs the Zero-1-to-3 pipeline loaded from the pool's ``model_path`` at actor start."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        self._zero123 = _Zero123Cache(pool)
        self._zero123.get(None)

    def warmup(self) -> None:
        image = np.full((64, 64, 3), 255, np.uint8)
        image[16:48, 16:48] = (180, 60, 40)
        self(NovelViewsJob(image=image, views=[(0.0, 30.0, 0.0)], num_inference_steps=1))

    def __call__(self, job: NovelViewsJob) -> Any:
        import torch

        pipe = self._zero123.get(None)
        generator = torch.Generator().manual_seed(int(job.seed))
        return pipe(
            job.image,
            views=list(job.views),
            input_polar_deg=job.input_polar_deg,
            num_inference_steps=job.num_inference_steps,
            guidance_scale=job.guidance_scale,
            generator=generator,
        )
