"""Build the z123_interfaces messages (and tf2_msgs where none is installed) into the active virtual environment.

No apt ROS and no colcon: plain CMake against the ament/rosidl packages installed by pip, installed into the venv
prefix, after which ``from z123_interfaces.msg import ObjectReconstruction`` works with no environment variables.
``tf2_msgs`` (the /tf message, from interfaces/tf2_msgs) is built the same way, but only when no tf2_msgs is
importable: the pip wheels of ROS 2 have none, an apt ROS 2 install has the full package and it is left alone.

Two known defects of the wheels are fixed first (idempotently):
- their exported CMake files hard-code the wheel builder's Python include dir and numpy include dir;
- (nothing else so far; add here with a note when a new wheel release needs it).

Usage: python scripts/build_interfaces.py [--build-dir DIR] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "msg"
PREFIX = Path(sys.prefix)
BUILDER_INCLUDE = re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+")
BUILDER_NUMPY = re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/_?core/include")


def fix_wheel_cmake_paths(prefix: Path) -> int:
    """Re-point the builder's include dirs in ``prefix/share/**/*.cmake`` to this interpreter's; returns #files."""
    import numpy

    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text(errors="surrogateescape")
        if "/opt/python/" not in text:
            continue
        new = BUILDER_NUMPY.sub(numpy_include, BUILDER_INCLUDE.sub(python_include, text))
        if new != text:
            path.write_text(new, errors="surrogateescape")
            changed += 1
    return changed


@dataclass(frozen=True)
class InterfacePackage:
    """One ament_cmake interface package this script builds."""

    name: str
    """Package name (the Python module it installs)."""
    source: Path
    """Folder holding its CMakeLists.txt, package.xml and msg/."""
    only_if_missing: bool = False
    """Build it only when no such package is importable yet (never shadow an installed one, e.g. apt ROS 2's)."""


PACKAGES = (
    InterfacePackage("z123_interfaces", SOURCE),
    # /tf and /tf_static: the pip wheels of ROS 2 have no tf2_msgs; an apt ROS 2 install has the full package.
    InterfacePackage("tf2_msgs", ROOT / "interfaces" / "tf2_msgs", only_if_missing=True),
)


def _stamp_path(prefix: Path, package: InterfacePackage) -> Path:
    return prefix / "share" / package.name / ".z123_source_stamp"


def up_to_date(prefix: Path, package: InterfacePackage) -> bool:
    stamp = _stamp_path(prefix, package)
    return stamp.is_file() and stamp.read_text() == _source_stamp(package.source)


def installed_elsewhere(prefix: Path, package: InterfacePackage) -> bool:
    """True when ``package`` is importable and was not built by this script (so it must not be rebuilt here)."""
    return importlib.util.find_spec(package.name) is not None and not _stamp_path(prefix, package).is_file()


def _source_stamp(source: Path) -> str:
    files = sorted(p for p in source.rglob("*") if p.is_file())
    return "\n".join(f"{p.relative_to(source)}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files)


def build_package(package: InterfacePackage, build_dir: Path) -> bool:
    """Configure, build and install ``package`` into the venv prefix; False (with the tool output) on failure."""
    if build_dir.exists():
        shutil.rmtree(build_dir)
    build_dir.mkdir(parents=True)
    t0 = time.monotonic()
    configure = [
        "cmake",
        "-S",
        str(package.source),
        "-B",
        str(build_dir),
        f"-DCMAKE_PREFIX_PATH={PREFIX}",
        f"-DCMAKE_INSTALL_PREFIX={PREFIX}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DPython3_FIND_VIRTUALENV=ONLY",
        "-DBUILD_TESTING=OFF",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    build = ["cmake", "--build", str(build_dir), "-j2"]
    for cmd in (configure, build, ["cmake", "--install", str(build_dir)]):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
            print(f"error: {package.name}: {' '.join(cmd[:3])} failed (exit {result.returncode})", file=sys.stderr)
            return False
    _stamp_path(PREFIX, package).write_text(_source_stamp(package.source))
    print(f"built and installed {package.name} into {PREFIX} in {time.monotonic() - t0:.1f} s")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build", help="parent of one build folder per package")
    parser.add_argument("--force", action="store_true", help="rebuild even when the installed messages are current")
    args = parser.parse_args()

    if sys.prefix == sys.base_prefix:
        print("error: run this with the project's virtual environment active (python from .venv)", file=sys.stderr)
        return 2
    n = fix_wheel_cmake_paths(PREFIX)
    if n:
        print(f"fixed builder include paths in {n} CMake files of the ROS wheels")
    for package in PACKAGES:
        if package.only_if_missing and installed_elsewhere(PREFIX, package):
            print(f"{package.name} is already installed (not built here)")
        elif not args.force and up_to_date(PREFIX, package):
            print(f"{package.name} is up to date")
        elif not build_package(package, args.build_dir / package.name):
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
