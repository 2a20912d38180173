"""Ray's serialization add-ons, left out of the processes this layer owns while nothing there needs them.

Every Ray process builds a serialization context for its job, and Ray 2.60's ``ray.util.serialization_addons.apply``
registers serializers for pydantic's model fields and for pyarrow's tables there: it imports pydantic (with its v1
layer) and pyarrow whenever they are installed (``ray[train]`` installs both), about 0.1 CPU-s in each process. The
dispatch process and the actors send numpy arrays and this project's dataclasses; neither library is loaded in them.
:func:`addons_for_loaded_libraries` makes Ray apply its add-ons in the calling process only if one of those
libraries is already loaded when the process makes its serialization context (once per job, cached): a library
loaded later in that process does not get them. The dispatch process calls it; so does every Ray worker process
that imports ``z123_ros.dispatch.host`` (our actors load it to build WorkerHost; a user's own task that imports it
is lean too, so such a task must import pydantic or pyarrow before its first Ray call if it sends their types). A
user's own Ray driver is left alone; a Ray without this private name keeps its behaviour.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

logger = logging.getLogger(__name__)

#: The libraries whose types Ray's add-ons register serializers for.
ADDON_LIBRARIES = ("pydantic", "pyarrow", "starlette")


def addons_for_loaded_libraries() -> bool:
    """In this process, Ray's serialization add-ons apply only when one of :data:`ADDON_LIBRARIES` is loaded when a
    serialization context is made. Call before the process's first context (before ray.init in a driver; in an
    actor's process, on loading the actor's module). True when Ray's hook was replaced."""
    addons = sys.modules.get("ray.util.serialization_addons")
    apply = getattr(addons, "apply", None)
    if apply is None or getattr(apply, "_z123_lean", False):
        return False
    original = apply

    def apply_when_loaded(serialization_context: Any) -> None:
        if any(name in sys.modules for name in ADDON_LIBRARIES):
            original(serialization_context)

    apply_when_loaded._z123_lean = True  # type: ignore[attr-defined]
    addons.apply = apply_when_loaded
    return True


def in_ray_worker() -> bool:
    """Whether this process is a Ray worker (an actor's or a task's process), not a driver or a plain process."""
    worker = sys.modules.get("ray._private.worker")
    mode = getattr(getattr(worker, "global_worker", None), "mode", None)
    return mode is not None and mode == getattr(worker, "WORKER_MODE", object())
