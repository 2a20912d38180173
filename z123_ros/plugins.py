"""Extension modules named in the environment: how code outside the package registers reconstruction backends and
worker kinds in processes the caller does not start itself (the dispatcher's Ray actors, the dispatch process, the
ROS node started by a launch file).

    Z123_BACKEND_MODULES=my_pkg.backends     # registers reconstruction backends on import
    Z123_WORKER_MODULES=my_pkg.workers       # registers worker kinds on import

Each variable holds comma-separated module names; a registry calls :func:`import_env_modules` before it is read, so
the modules are imported once per process, in the order given. Child processes inherit the environment, which is how
the embedded Ray's actors see the same plugins as their driver.
"""

from __future__ import annotations

import importlib
import os

from z123_ros.errors import ConfigError

_imported: set[tuple[str, str]] = set()
"""(variable, module) pairs already imported in this process."""


def env_modules(variable: str) -> list[str]:
    """The module names listed in ``$variable`` (comma-separated; blanks ignored)."""
    return [m.strip() for m in os.environ.get(variable, "").split(",") if m.strip()]


def import_env_modules(variable: str, what: str) -> None:
    """Import every module named in ``$variable`` that this function has not imported yet.

    ``what`` names what the modules register (for the error). Raises ConfigError with one line when a module cannot
    be imported: a deployment that names a plugin must not run without it.
    """
    for module in env_modules(variable):
        if (variable, module) in _imported:
            continue
        _imported.add((variable, module))
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(f"{variable}: cannot import {what} module {module!r}: {exc}") from exc


def forget(variable: str, module: str) -> None:
    """Let :func:`import_env_modules` import ``module`` again (tests that unregister a plugin clean up with this)."""
    _imported.discard((variable, module))
