"""Lighter imports of numpy's and scipy's extras, in the processes this project owns and starts: the node's and the
reconstruction actors' (issue 20: their imports are on the node's start-up path, on 2 cores).

:func:`lean_scientific_imports` changes, for the calling process only:

- **scipy's import-time docstring notes.** scipy (1.15+) decorates its public functions with
  ``scipy._lib._array_api.xp_capabilities``, which at import parses each function's docstring with numpydoc's
  ``FunctionDoc``, appends a table of the array-API backends it supports to its Notes and writes the docstring back:
  274 functions for the node's scipy modules (``scipy.optimize`` for the tracker, ``scipy.ndimage``,
  ``scipy.sparse.csgraph``, ``scipy.spatial``), 0.06-0.12 CPU-s per process. Once ``scipy._lib._array_api`` loads
  in this process, its decorator leaves docstrings as written in scipy's source; the capabilities themselves are
  still recorded (``xp_capabilities_table``: what scipy's own test machinery reads). Only ``help()`` text differs.
- **numpy.f2py and numpy.testing**, which scipy's array-API layer loads when it clones numpy's namespace (every
  name of ``dir(numpy)``; numpy itself loads both lazily): 0.03 CPU-s per process. They become lazy modules
  (``importlib.util.LazyLoader``) that execute on their first attribute access, so ``numpy.testing.assert_equal``
  and ``from numpy.testing import ...`` work as before.

Nothing is done for a module already loaded. The dispatch process imports neither scipy nor these numpy modules.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

#: scipy's module whose docstring rewriting :func:`lean_scientific_imports` turns off.
SCIPY_ARRAY_API = "scipy._lib._array_api"
#: numpy's submodules made lazy.
NUMPY_EXTRAS = ("f2py", "testing")


class _DocstringAsWritten:
    """Stand-in for numpydoc's ``FunctionDoc`` in :data:`SCIPY_ARRAY_API`: its decorator appends a note to the
    Notes of the parsed docstring and writes ``str(doc)`` minus its first (signature) line back, stripped of
    leading blanks; this gives the docstring as written (less its leading blank space). Takes ``FunctionDoc``'s
    arguments (``func, role, doc, config``), positional or named; :func:`_keep_docstrings` checks it against the
    decorator before keeping it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        func = args[0] if args else kwargs.get("func")
        doc = args[2] if len(args) > 2 else kwargs.get("doc")
        self._doc = (doc if doc is not None else getattr(func, "__doc__", None)) or ""
        self._sections: dict[str, list[str]] = {}

    def __getitem__(self, section: str) -> list[str]:
        return self._sections.setdefault(section, [])

    def __str__(self) -> str:
        return f"\n{self._doc}"


#: Docstring of the function :func:`_keep_docstrings` decorates to check the stand-in.
_PROBE_DOC = """
    Probe of the stand-in.

    Notes
    -----
    As written.
    """


def _keep_docstrings(module: ModuleType) -> None:
    """Swap ``module.FunctionDoc`` for :class:`_DocstringAsWritten`, then decorate a probe function with the
    module's ``xp_capabilities`` (a throwaway table): unless that leaves the probe's docstring as written, scipy's
    own ``FunctionDoc`` is put back (logged): its docstrings then get their notes, at their cost."""
    original = getattr(module, "FunctionDoc", None)
    if original is None:
        logger.info("%s has no FunctionDoc: its docstring notes stay", module.__name__)
        return
    module.FunctionDoc = _DocstringAsWritten

    def probe() -> None:
        pass

    probe.__doc__ = _PROBE_DOC
    try:
        module.xp_capabilities(capabilities_table={})(probe)
        kept = probe.__doc__ == _PROBE_DOC.lstrip(" \n")
    except Exception as exc:  # noqa: BLE001 - any change in scipy's decorator: scipy's own behaviour, logged
        kept, why = False, f"{type(exc).__name__}: {exc}"
    else:
        why = "the docstring came out changed"
    if not kept:
        module.FunctionDoc = original
        logger.info("scipy's docstring notes stay (its xp_capabilities did not take the stand-in: %s)", why)


class _PatchOnLoad(importlib.abc.MetaPathFinder):
    """Finds one module the normal way (once) and runs ``patch`` on it right after its code ran."""

    def __init__(self, name: str, patch: Callable[[ModuleType], None]) -> None:
        self.name, self.patch = name, patch

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_patch(module: ModuleType) -> None:
            exec_module(module)
            self.patch(module)

        loader.exec_module = exec_and_patch
        return spec


def _lazy_numpy_extras() -> list[str]:
    done = []
    for name in NUMPY_EXTRAS:
        full = f"numpy.{name}"
        if full in sys.modules or name in vars(np):
            continue
        spec = importlib.util.find_spec(full)
        if spec is None or spec.loader is None:
            continue
        spec.loader = importlib.util.LazyLoader(spec.loader)
        module = importlib.util.module_from_spec(spec)
        sys.modules[full] = module
        spec.loader.exec_module(module)
        setattr(np, name, module)  # numpy's own __getattr__ would import it again through the parent
        done.append(full)
    return done


def lean_scientific_imports() -> list[str]:
    """Apply the module docstring's two changes in this process (each only where the module is not loaded yet);
    returns what was changed."""
    done = _lazy_numpy_extras()
    if SCIPY_ARRAY_API not in sys.modules and not any(
        isinstance(f, _PatchOnLoad) and f.name == SCIPY_ARRAY_API for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _PatchOnLoad(SCIPY_ARRAY_API, _keep_docstrings))
        done.append(SCIPY_ARRAY_API)
    return done
