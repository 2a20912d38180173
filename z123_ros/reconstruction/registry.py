"""The one list of reconstruction backends: name -> run function, what it needs (depth, a Zero-1-to-3 model).

Backends defined outside the package reach processes the caller does not start itself (the dispatcher's actors, the
ROS node) through the environment: ``Z123_BACKEND_MODULES=pkg.mod1,pkg.mod2`` names modules imported when the
registry is first read, each registering its backends on import (:mod:`z123_ros.plugins`, the loader worker kinds
share).

Every caller (``reconstruct()``, ``z123 reconstruct``, the dispatcher's reconstruction worker, the ROS node, the demo
and the evaluation runner) reads this registry instead of keeping its own list of names. Adding a backend is one
module with a run function plus one :func:`register_backend` call.

The built-in backends are registered here by name, with run functions that import their module on the first call
(:func:`deferred_run`): reading the registry (the node's configuration checks ``needs_model``) does not import the
backends' stack (trimesh, scikit-image, scipy.optimize).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from z123_ros.errors import ConfigError
from z123_ros.plugins import import_env_modules

RunFunction = Callable[..., Any]
"""``run(inp: ReconstructionInput, config: ReconstructionConfig, pipeline) -> ReconstructionResult``; ``pipeline`` is
the loaded Zero-1-to-3 pipeline for backends that need a model, else None."""


@dataclass(frozen=True)
class Backend:
    """One reconstruction backend."""

    name: str
    """Name used by ``reconstruct(backend=...)``, ``--backend`` and the node's ``backend`` parameter."""
    run: RunFunction
    """The function that reconstructs one view (see :data:`RunFunction`)."""
    needs_depth: bool
    """The input must carry metric depth."""
    needs_model: bool
    """The backend needs a Zero-1-to-3 pipeline (``--model`` / ``model_path``)."""
    summary: str = ""
    """One line for help texts."""


#: Environment variable naming extra modules (comma-separated) that register backends when imported.
PLUGINS_ENV = "Z123_BACKEND_MODULES"

_BACKENDS: dict[str, Backend] = {}


def deferred_run(module: str, function: str) -> RunFunction:
    """A run function that imports ``module`` on its first call and calls its ``function`` (the built-in backends'
    registrations: the registry names them without importing their modules)."""

    def run(inp: Any, config: Any, pipeline: Any = None) -> Any:
        return getattr(importlib.import_module(module), function)(inp, config, pipeline)

    run.__qualname__ = f"{module}.{function}"
    return run


def _load_plugins() -> None:
    """Import the modules named in ``$Z123_BACKEND_MODULES`` (once each; the loader is shared with worker kinds)."""
    import_env_modules(PLUGINS_ENV, "backend")


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Add ``backend`` to the registry (``replace=True`` to redefine an existing name). Returns it."""
    if not backend.name or not backend.name.isidentifier():
        raise ConfigError(f"a backend name must be an identifier, got {backend.name!r}")
    if backend.name in _BACKENDS and not replace:
        raise ConfigError(f"a backend named {backend.name!r} is already registered")
    _BACKENDS[backend.name] = backend
    return backend


def unregister_backend(name: str) -> None:
    """Remove ``name`` from the registry (tests that register a toy backend clean up with this)."""
    _BACKENDS.pop(name, None)


def backend_names() -> tuple[str, ...]:
    """Registered backend names, in registration order (the built-in ones first)."""
    _load_plugins()
    return tuple(_BACKENDS)


def get_backend(name: str) -> Backend:
    """The backend called ``name``; ConfigError naming the choices when there is none."""
    _load_plugins()
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}") from None


#: The built-in backends: name, function in z123_ros.reconstruction.api, needs depth, needs a model, summary.
_BUILTIN = (
    ("depth", "_reconstruct_depth", True, False, "geometric completion of the visible surface, no weights"),
    ("multiview", "_reconstruct_multiview", False, True, "Zero-1-to-3 novel views + a short field fit"),
    ("zero123", "_reconstruct_zero123", False, True, "Score Jacobian Chaining guided by Zero-1-to-3"),
    ("hull", "_reconstruct_hull", True, False, "convex hull of the visible depth points (the baseline)"),
)
for _name, _function, _depth, _model, _summary in _BUILTIN:
    register_backend(Backend(_name, deferred_run("z123_ros.reconstruction.api", _function), _depth, _model, _summary))
