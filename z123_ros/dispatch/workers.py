"""Jobs and the workers that run them. Plain Python: no Ray here, so the same code runs in an actor or in process.

A job is a dataclass naming its worker ``kind``; a worker is built once per actor from its
:class:`~z123_ros.dispatch.config.WorkerPoolConfig` (loading its model), warmed up once, then called per job.
The kinds are an explicit dict, :data:`WORKER_KINDS`. The core modules are imported lazily inside the workers so
importing the dispatch layer stays cheap and the models load only in the actor processes.

``echo`` and ``cpu_burn`` are diagnostics (transport round trips, timeouts, failure drills, throughput): they load
no model and their results are deterministic.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from z123_ros.dispatch.config import WorkerPoolConfig
from z123_ros.errors import ConfigError, ModelLoadError, Z123Error

logger = logging.getLogger(__name__)


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


@dataclass(kw_only=True)
class EchoJob(Job):
    """Diagnostic: returns ``data`` unchanged after sleeping ``sleep_s`` (a stand-in for a slow model call)."""

    kind: ClassVar[str] = "echo"
    data: Any = None
    """Anything picklable, e.g. a 256x256 RGBA crop."""
    sleep_s: float = 0.0
    """Seconds the worker sleeps before answering."""


@dataclass(kw_only=True)
class CpuBurnJob(Job):
    """Diagnostic: a deterministic CPU-bound SHA-256 chain of ``rounds`` steps; returns the hex digest."""

    kind: ClassVar[str] = "cpu_burn"
    rounds: int = 100_000
    """Hash steps (about 2 us each in CPython on the project's 2-core CI machine)."""
    seed: int = 0
    """Start value of the chain."""


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


def _synthetic_view(size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A grey box 0.47 m in front of a wall at 0.5 m: rgb (H,W,3) uint8, mask (H,W) bool, depth_m (H,W) float32."""
    h, w = (size * 3) // 4, size
    depth = np.full((h, w), 0.5, np.float32)
    mask = np.zeros((h, w), bool)
    mask[h // 2 - 6 : h // 2 + 6, w // 2 - 6 : w // 2 + 6] = True
    depth[mask] = 0.47
    rgb = np.full((h, w, 3), 200, np.uint8)
    rgb[mask] = (180, 60, 40)
    return rgb, mask, depth


class ReconstructionWorker:
    """Runs ``reconstruct()``; holds the Zero-1-to-3 pipeline the learned backends need."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        import z123_ros.reconstruction  # noqa: F401  (the import itself is part of the start-up cost)

        self._zero123 = _Zero123Cache(pool)
        if pool.model_path:
            self._zero123.get(pool.model_path)

    def warmup(self) -> None:
        from z123_ros.camera import CameraIntrinsics
        from z123_ros.reconstruction import ReconstructionInput

        rgb, mask, depth = _synthetic_view()
        inp = ReconstructionInput(rgb=rgb, mask=mask, intrinsics=CameraIntrinsics.from_fov(60.0, 64, 48), depth_m=depth)
        try:
            self(ReconstructionJob(inp=inp, backend="depth"))
        except Z123Error as exc:
            # The synthetic box is a warm-up, not a test of the backend: the imports and caches are warm either way.
            logger.info("reconstruction warm-up job ended with %s: %s", type(exc).__name__, exc)

    def __call__(self, job: ReconstructionJob) -> Any:
        from z123_ros.reconstruction import get_backend, reconstruct

        pipeline = self._zero123.get(job.model_path) if get_backend(job.backend).needs_model else None
        return reconstruct(job.inp, backend=job.backend, config=job.config, pipeline=pipeline)


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


class EchoWorker:
    """Diagnostic: no model; returns the job's data."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        del pool

    def warmup(self) -> None:
        self(EchoJob(data=np.zeros((4, 4), np.uint8)))

    def __call__(self, job: EchoJob) -> Any:
        if job.sleep_s > 0:
            time.sleep(job.sleep_s)
        return job.data


def cpu_burn(rounds: int, seed: int = 0) -> str:
    """The CpuBurnJob computation: ``rounds`` chained SHA-256 steps from ``seed``; returns the final hex digest."""
    digest = int(seed).to_bytes(8, "little", signed=True)
    for _ in range(int(rounds)):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()


class CpuBurnWorker:
    """Diagnostic: no model; a deterministic CPU-bound job for throughput checks."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        del pool

    def warmup(self) -> None:
        cpu_burn(10)

    def __call__(self, job: CpuBurnJob) -> str:
        return cpu_burn(job.rounds, job.seed)


#: Worker kind -> worker class. The kinds match :data:`z123_ros.dispatch.config.KINDS` and the jobs' ``kind``.
WORKER_KINDS: dict[str, type] = {
    "reconstruction": ReconstructionWorker,
    "novel_views": NovelViewsWorker,
    "echo": EchoWorker,
    "cpu_burn": CpuBurnWorker,
}


def make_worker(kind: str, pool: WorkerPoolConfig | None = None) -> Worker:
    """Build the worker of ``kind`` in this process (what an actor does at start); for in-process use and tests."""
    if kind not in WORKER_KINDS:
        raise ConfigError(f"unknown worker kind {kind!r}; choose one of {', '.join(WORKER_KINDS)}")
    return WORKER_KINDS[kind](pool or WorkerPoolConfig(num_actors=1))


class WorkerHost:
    """What runs inside one Ray actor: builds the worker lazily (again after a restart) and never raises job errors.

    The dispatcher wraps this class with ``ray.remote``; it is plain Python so it can be tested without Ray.
    """

    def __init__(self, kind: str, pool: WorkerPoolConfig) -> None:
        self._kind = kind
        self._pool = pool
        self._worker: Worker | None = None

    def _ensure_worker(self) -> Worker:
        if self._worker is None:
            t0 = time.perf_counter()
            self._worker = make_worker(self._kind, self._pool)
            logger.info("%s worker built in %.2f s (pid %d)", self._kind, time.perf_counter() - t0, os.getpid())
        return self._worker

    def warmup(self) -> WorkerReply:
        """Build the model (if not yet) and run the kind's warm-up job. A failure here means the actor is unusable."""
        t0 = time.perf_counter()
        try:
            worker = self._ensure_worker()
            if self._pool.warm_up:
                worker.warmup()
        except Exception as exc:  # noqa: BLE001  (any failure is reported to the dispatcher, which decides)
            return _failure(exc, time.perf_counter() - t0)
        return WorkerReply(ok=True, run_s=time.perf_counter() - t0, pid=os.getpid())

    def run(self, job: Job) -> WorkerReply:
        t0 = time.perf_counter()
        try:
            value = self._ensure_worker()(job)
        except Exception as exc:  # noqa: BLE001  (job errors travel back as a reason, see WorkerReply)
            return _failure(exc, time.perf_counter() - t0)
        return WorkerReply(ok=True, value=value, run_s=time.perf_counter() - t0, pid=os.getpid())

    def pid(self) -> int:
        return os.getpid()


def _failure(exc: Exception, run_s: float) -> WorkerReply:
    reason = exc.reason if isinstance(exc, Z123Error) else "job_error"
    return WorkerReply(ok=False, reason=reason, message=f"{type(exc).__name__}: {exc}", run_s=run_s, pid=os.getpid())
