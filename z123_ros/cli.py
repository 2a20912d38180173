"""The ``z123`` command-line tool. Each area registers its own subcommand from ``z123_ros/<area>/cli.py``.

    z123 segment      objects in an RGB(-D) frame -> masks, objects.json, overlay
    z123 views        novel views of an object with a Zero-1-to-3 model
    z123 reconstruct  one segmented view -> mesh.ply, points.ply, result.json, preview.png
    z123 eval         paper-style evaluation on real scanned objects
    z123 demo         the simulated tabletop demo, end to end (camera -> node -> Ray -> meshes)
    z123 dispatch-check  is Ray (embedded or a cluster) reachable, and does a job go through it
    z123 render-dataset / train   fine-tune Zero-1-to-3 on your own objects (Ray Train)
    z123 bag          record / play rosbag2 bags (sim camera, /tf) without a ROS install
    z123 info         versions, share directory, devices

Every subcommand exits 0 on success and 2 with one line on stderr for bad input; nothing partial is written.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import platform
import sys

from z123_ros.resources import package_share_dir

# Explicit, ordered: the subcommands a user sees in --help. Modules are imported here, heavy libraries only when a
# subcommand runs.
SUBCOMMAND_MODULES = (
    "z123_ros.segmentation.cli",
    "z123_ros.segmentation.learned_cli",
    "z123_ros.novel_views.cli",
    "z123_ros.reconstruction.cli",
    "z123_ros.evaluation.cli",
    "z123_ros.demo",
    "z123_ros.dispatch.cli",
    "z123_ros.training.cli",
    "z123_ros.ros.bag_cli",
)


def _info(args: argparse.Namespace) -> int:
    lines = [f"python {platform.python_version()} on {platform.machine()}", f"share dir: {package_share_dir()}"]
    for mod in ("numpy", "torch", "diffusers", "transformers", "ray", "open3d", "cv2", "rclpy"):
        try:
            m = importlib.import_module(mod)
            lines.append(f"{mod} {getattr(m, '__version__', 'installed')}")
        except ImportError as exc:
            lines.append(f"{mod}: not importable ({exc})")
    try:
        import torch

        lines.append(f"cuda: {torch.cuda.is_available()} ({torch.cuda.device_count()} devices)")
    except ImportError:
        pass
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="z123", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(name).register(sub)
    info = sub.add_parser("info", help="versions, share directory and devices")
    info.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
