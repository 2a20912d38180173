"""Lazy package exports: ``from z123_ros.novel_views import load_zero123`` works, while importing a light submodule
of the package (its ``cli``, its metrics) does not pay for torch and diffusers."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` resolving ``exports`` (name -> defining module) on first use."""

    def __getattr__(name: str) -> object:  # noqa: N807 - the module hook's required name
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            setattr(sys.modules[package], name, value)  # later uses are plain attribute lookups (hot paths)
            return value
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
