"""The one list of worker kinds: name -> worker class, the job it runs, its default pool.

Every reader takes the kinds from here: :class:`~z123_ros.dispatch.config.DispatchConfig` (its default ``pools``),
the dispatcher (which actors to start, which jobs it accepts), the dispatch process, the ROS node (one
``dispatch.<kind>.*`` parameter group per production kind), ``z123 dispatch-check`` and the benchmarks.

Adding a kind is one module with a :class:`~z123_ros.dispatch.workers.Job` subclass, a worker class (built once per
actor from its :class:`WorkerPoolConfig`, then ``warmup()`` and ``__call__(job)``) and one :func:`register_kind`
call. Kinds defined outside the package reach processes the caller does not start itself through the environment:
``Z123_WORKER_MODULES=pkg.mod1,pkg.mod2`` names modules imported when the registry is first read (the loader is
:mod:`z123_ros.plugins`, shared with ``Z123_BACKEND_MODULES``). The Ray actors need no such help: each receives its
:class:`WorkerKind`, whose classes travel by reference (the actor imports their module).

Diagnostic kinds (``echo``, ``cpu_burn`` in :mod:`z123_ros.dispatch.diagnostics`) are registered only where that
module is imported (tests, benchmarks, ``z123 dispatch-check``) and are never in the default pools, so they never
become parameters of the production node.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

from z123_ros.dispatch.pool import WorkerPoolConfig
from z123_ros.dispatch.workers import (
    Job,
    NovelViewsJob,
    NovelViewsWorker,
    ReconstructionJob,
    ReconstructionWorker,
    Worker,
)
from z123_ros.errors import ConfigError
from z123_ros.plugins import import_env_modules

#: Environment variable naming extra modules (comma-separated) that register worker kinds when imported.
PLUGINS_ENV = "Z123_WORKER_MODULES"


@dataclass(frozen=True)
class WorkerKind:
    """One kind of worker actor and the job it runs."""

    name: str
    """The jobs' ``kind``, the key in ``DispatchConfig.pools``, the ``dispatch.<name>.*`` parameter group."""
    worker: Callable[[WorkerPoolConfig], Worker]
    """Builds the worker in the actor process (a class taking the pool config; it may load a model)."""
    job: type[Job]
    """The job class this kind runs (its ``kind`` class variable equals ``name``)."""
    default_pool: WorkerPoolConfig = field(default_factory=WorkerPoolConfig)
    """The pool a default ``DispatchConfig`` gets for this kind (copied, never shared)."""
    diagnostic: bool = False
    """A diagnostic kind (no model, for drills and benchmarks): left out of the default pools, so it never becomes a
    parameter of the node; a config that wants it names it in ``pools``."""
    summary: str = ""
    """One line for help texts."""
    collect_at_warm_up: bool = True
    """Run a full garbage collection at the end of the warm-up, before what is alive is frozen (``gc.freeze``). On
    for a kind that loads a model: cyclic garbage of its loading (tensors among it) would otherwise be frozen, kept
    for the actor's life. Off where the imports leave only a few kB in cycles and the collection would cost more
    than it frees (the reconstruction kind: 0.07-0.13 CPU-s over ~110k objects, for 27 objects)."""


_KINDS: dict[str, WorkerKind] = {}


def register_kind(kind: WorkerKind, *, replace: bool = False) -> WorkerKind:
    """Add ``kind`` to the registry (``replace=True`` to redefine an existing name). Returns it."""
    if not kind.name or not kind.name.isidentifier():
        raise ConfigError(f"a worker kind name must be an identifier, got {kind.name!r}")
    if getattr(kind.job, "kind", None) != kind.name:
        raise ConfigError(f"worker kind {kind.name!r}: its job class {kind.job.__name__} has kind {kind.job.kind!r}")
    if kind.name in _KINDS and not replace:
        raise ConfigError(f"a worker kind named {kind.name!r} is already registered")
    _KINDS[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove ``name`` from the registry (tests that register a toy kind clean up with this)."""
    _KINDS.pop(name, None)


def kind_names() -> tuple[str, ...]:
    """Registered kind names, in registration order (the built-in ones first)."""
    import_env_modules(PLUGINS_ENV, "worker kind")
    return tuple(_KINDS)


def is_kind(name: str) -> bool:
    """True when ``name`` is a registered kind."""
    return name in kind_names()


def get_kind(name: str) -> WorkerKind:
    """The kind called ``name``; ConfigError naming the choices when there is none."""
    import_env_modules(PLUGINS_ENV, "worker kind")
    try:
        return _KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown worker kind {name!r}; choose one of {', '.join(_KINDS)}") from None


def default_pools() -> dict[str, WorkerPoolConfig]:
    """Kind -> a copy of its default pool, for every registered non-diagnostic kind (``DispatchConfig.pools``)."""
    return {name: copy.deepcopy(_KINDS[name].default_pool) for name in kind_names() if not _KINDS[name].diagnostic}


def make_worker(kind: str, pool: WorkerPoolConfig | None = None) -> Worker:
    """Build the worker of ``kind`` in this process (what an actor does at start); for in-process use and tests."""
    return get_kind(kind).worker(pool or WorkerPoolConfig(num_actors=1))


register_kind(
    WorkerKind(
        "reconstruction",
        ReconstructionWorker,
        ReconstructionJob,
        WorkerPoolConfig(num_actors=1),
        summary="z123_ros.reconstruction.reconstruct() on one segmented view",
        collect_at_warm_up=False,
    )
)
register_kind(
    WorkerKind(
        "novel_views",
        NovelViewsWorker,
        NovelViewsJob,
        WorkerPoolConfig(),
        summary="Zero-1-to-3 novel views of one object image (needs the pool's model_path)",
    )
)
