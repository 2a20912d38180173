"""Where the package's share files (package.xml, launch/, config/) are, found through the ament index.

On a ROS 2 install AMENT_PREFIX_PATH lists the install prefixes. In a pip venv nobody sets it, so the venv prefix
(where setup.py installs the ament index entry) is searched as well.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "z123_ros"
_SOURCE_ROOT = Path(__file__).resolve().parent.parent


def ensure_ament_prefix_path() -> None:
    """Append this interpreter's prefix to AMENT_PREFIX_PATH (when missing), before rclpy or ament_index look it up."""
    paths = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    if sys.prefix not in paths:
        os.environ["AMENT_PREFIX_PATH"] = os.pathsep.join([*paths, sys.prefix])


def package_share_dir() -> Path:
    """The installed share directory of z123_ros; the source tree when running from a checkout without an install."""
    ensure_ament_prefix_path()
    from ament_index_python.packages import PackageNotFoundError, get_package_share_directory

    try:
        return Path(get_package_share_directory(PACKAGE))
    except PackageNotFoundError:
        return _SOURCE_ROOT


def default_config(name: str) -> Path:
    """Path of a default parameter file, e.g. ``default_config("z123_node.yaml")``."""
    path = package_share_dir() / "config" / name
    source = _SOURCE_ROOT / "config" / name
    # An install older than this checkout may lack a newer file: the checkout's copy is the one that matches.
    return source if not path.is_file() and source.is_file() else path
