"""``z123 reconstruct``: one segmented view -> DIR/mesh.ply, points.ply, result.json, preview.png."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import trimesh

from z123_ros.errors import ConfigError, InputError, Z123Error
from z123_ros.io import load_camera, load_depth, load_mask, load_rgb, staged_output
from z123_ros.reconstruction import ReconstructionConfig, ReconstructionInput, get_backend, reconstruct
from z123_ros.reconstruction.base import validate_input
from z123_ros.reconstruction.mesh import make_preview, write_mesh_ply, write_points_ply

logger = logging.getLogger(__name__)

#: What `z123 reconstruct` writes into --out.
OUTPUT_FILES = ("mesh.ply", "points.ply", "result.json", "preview.png")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``reconstruct`` subcommand."""
    p = subparsers.add_parser(
        "reconstruct",
        help="one segmented view -> mesh.ply, points.ply, result.json, preview.png",
        description="Reconstruct an object from one RGB(-D) view and its mask. With depth the output is in metres in "
        "the camera frame; without, in a normalised object frame (result.json says which).",
    )
    p.add_argument("--rgb", required=True, help="RGB image (PNG/JPEG)")
    p.add_argument("--mask", required=True, help="8-bit mask PNG, non-zero = object")
    p.add_argument("--depth", help="16-bit PNG in millimetres (or CAMERA.json's depth_unit) or .npy of float metres")
    p.add_argument("--camera", required=True, help='CAMERA.json: {"K", "width", "height", ["T_cam_from_world"]}')
    p.add_argument(
        "--backend", default="depth", help="a registered backend: depth | multiview | zero123 | hull (default: depth)"
    )
    p.add_argument("--model", help="Zero-1-to-3 model folder or hub id (multiview and zero123 backends)")
    p.add_argument("--steps", type=int, help="optimisation steps (zero123: SJC steps; multiview: fit steps)")
    p.add_argument("--preset", default="default", help="default | quick (small grids, few steps)")
    p.add_argument("--device", default="cpu", help="cpu | cuda (learned backends)")
    p.add_argument("--out", required=True, help="output folder (created; existing output files are replaced)")
    p.set_defaults(func=run)


def _write_outputs(folder: Path, result, inp) -> None:
    write_mesh_ply(folder / "mesh.ply", result.vertices, result.faces)
    write_points_ply(folder / "points.ply", result.points)
    (folder / "result.json").write_text(json.dumps(result.to_json(), indent=2) + "\n")
    mesh = trimesh.Trimesh(result.vertices, result.faces, process=False)
    if result.frame == "camera":
        up = result.plane_cam[:3] if result.plane_cam is not None else np.array([0.0, -1.0, 0.0])
    else:
        up = np.array([0.0, 0.0, 1.0])
    preview = make_preview(inp.rgb, inp.mask, mesh, up=up)
    if not cv2.imwrite(str(folder / "preview.png"), np.ascontiguousarray(preview[:, :, ::-1])):
        raise OSError(f"cannot write {folder / 'preview.png'}")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``z123 reconstruct``; returns the exit code (2 with one stderr line on bad input)."""
    try:
        return _run(args)
    except Z123Error as exc:
        sys.stderr.write(f"z123 reconstruct: error: {exc}\n")
        return 2


def _run(args: argparse.Namespace) -> int:
    backend = get_backend(args.backend)
    if args.steps is not None and args.steps < 1:
        raise ConfigError(f"--steps must be a positive integer, got {args.steps}")
    config = ReconstructionConfig.preset(args.preset)
    config.device = args.device
    config.show_progress = True
    if args.steps is not None:
        config.sjc.steps = args.steps
        config.multiview.fit_steps = args.steps
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")

    camera = load_camera(args.camera)
    rgb = load_rgb(args.rgb)
    mask = load_mask(args.mask)
    depth = load_depth(args.depth, camera.depth_unit) if args.depth else None
    inp = ReconstructionInput(rgb, mask, camera.intrinsics, depth_m=depth, T_cam_from_world=camera.T_cam_from_world)
    # Validate before loading a model: bad input must fail in milliseconds, not after minutes of loading.
    validate_input(inp, need_depth=backend.needs_depth)

    pipeline = None
    if backend.needs_model:
        if not args.model:
            raise ConfigError(f"the {args.backend} backend needs --model (a Zero-1-to-3 folder or hub id)")
        from z123_ros.novel_views import load_zero123

        pipeline = load_zero123(args.model, device=args.device)

    # Staged before the work: an unwritable --out fails now (one line), not after minutes of reconstruction.
    with staged_output(out, owned=OUTPUT_FILES) as tmp:
        result = reconstruct(inp, args.backend, config, pipeline)
        _write_outputs(tmp, result, inp)
    sys.stdout.write(
        f"{result.backend}: {len(result.faces)} faces, extent {np.round(result.extent_m, 3).tolist()} "
        f"({'m' if result.metric else 'unit box'}, {result.frame} frame), watertight={result.watertight} -> {out}\n"
    )
    return 0
