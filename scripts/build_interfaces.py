"""Build the z123_interfaces messages into the active virtual environment from the ROS 2 pip wheels.

No apt ROS and no colcon: plain CMake against the ament/rosidl packages installed by pip, installed into the venv
prefix, after which ``from z123_interfaces.msg import ObjectReconstruction`` works with no environment variables.

Two known defects of the wheels are fixed first (idempotently):
- their exported CMake files hard-code the wheel builder's Python include dir and numpy include dir;
- (nothing else so far; add here with a note when a new wheel release needs it).

Usage: python scripts/build_interfaces.py [--build-dir DIR] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import sysconfig
import time
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


def interfaces_up_to_date(prefix: Path) -> bool:
    stamp = prefix / "share" / "z123_interfaces" / ".z123_source_stamp"
    return stamp.is_file() and stamp.read_text() == _source_stamp()


def _source_stamp() -> str:
    files = sorted(p for p in SOURCE.rglob("*") if p.is_file())
    return "\n".join(f"{p.relative_to(SOURCE)}:{hashlib.sha256(p.read_bytes()).hexdigest()}" for p in files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "z123_interfaces")
    parser.add_argument("--force", action="store_true", help="rebuild even when the installed messages are current")
    args = parser.parse_args()

    if sys.prefix == sys.base_prefix:
        print("error: run this with the project's virtual environment active (python from .venv)", file=sys.stderr)
        return 2
    n = fix_wheel_cmake_paths(PREFIX)
    if n:
        print(f"fixed builder include paths in {n} CMake files of the ROS wheels")
    if not args.force and interfaces_up_to_date(PREFIX):
        print("z123_interfaces is up to date")
        return 0
    if args.build_dir.exists():
        shutil.rmtree(args.build_dir)
    args.build_dir.mkdir(parents=True)
    t0 = time.monotonic()
    configure = [
        "cmake",
        "-S",
        str(SOURCE),
        "-B",
        str(args.build_dir),
        f"-DCMAKE_PREFIX_PATH={PREFIX}",
        f"-DCMAKE_INSTALL_PREFIX={PREFIX}",
        f"-DPython3_EXECUTABLE={sys.executable}",
        "-DPython3_FIND_VIRTUALENV=ONLY",
        "-DBUILD_TESTING=OFF",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    build = ["cmake", "--build", str(args.build_dir), "-j2"]
    for cmd in (configure, build, ["cmake", "--install", str(args.build_dir)]):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            print(result.stdout[-4000:], result.stderr[-4000:], sep="\n", file=sys.stderr)
            print(f"error: {' '.join(cmd[:3])} failed (exit {result.returncode})", file=sys.stderr)
            return 1
    (PREFIX / "share" / "z123_interfaces" / ".z123_source_stamp").write_text(_source_stamp())
    print(f"built and installed z123_interfaces into {PREFIX} in {time.monotonic() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
