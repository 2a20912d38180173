"""The one list of reconstruction backends: name -> run function, what it needs (depth, a Zero-1-to-3 model).

Every caller (``reconstruct()``, ``z123 reconstruct``, the dispatcher's reconstruction worker, the ROS node, the demo
and the evaluation runner) reads this registry instead of keeping its own list of names. Adding a backend is one
module with a run function plus one :func:`register_backend` call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from z123_ros.errors import ConfigError

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


_BACKENDS: dict[str, Backend] = {}


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
    return tuple(_BACKENDS)


def get_backend(name: str) -> Backend:
    """The backend called ``name``; ConfigError naming the choices when there is none."""
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}") from None
