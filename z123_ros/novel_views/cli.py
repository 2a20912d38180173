"""``z123 views``: novel views of an object from one image with a Zero-1-to-3 model.

    z123 views IMAGE [--mask MASK.png] [--camera CAMERA.json] --model PATH_OR_ID
        (--polar DEG... --azimuth DEG... [--radius R...] | --views "dpolar,dazim,dradius;...")
        [--steps N] [--guidance G] [--seed S] [--device cpu|cuda] [--dtype fp32|fp16|bf16] --out DIR

Views are relative to the input view (degrees; a positive d_polar moves the camera down). With --mask the object is
cropped and centred as the model expects; with --camera (K and T_cam_from_world, world +z up, table at z = 0) the
input view's polar angle is computed for Stable Zero123. Writes view_XX.png per view, input.png (the model's input),
contact_sheet.png (input + views labelled with their poses) and views.json. Bad input exits 2 with one line on
stderr and writes nothing: outputs are made in a temporary folder and moved into DIR at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from z123_ros.errors import InputError, Z123Error
from z123_ros.io import load_camera, load_mask, load_rgb, save_rgb, staged_output
from z123_ros.novel_views.preprocess import preprocess_for_zero123

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``views`` subcommand to the ``z123`` tool."""
    p = subparsers.add_parser(
        "views",
        help="novel views of an object with a Zero-1-to-3 model",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("image", nargs="?", help="input RGB image (PNG/JPEG)")
    p.add_argument("--image", dest="image_opt", metavar="IMAGE", help="input RGB image (same as the positional)")
    p.add_argument("--mask", help="object mask PNG (non-zero = object): crop and centre the object on white")
    p.add_argument("--camera", help="CAMERA.json of IMAGE; with T_cam_from_world gives the input polar angle")
    p.add_argument("--input-polar", type=float, help="absolute polar angle of the input view, deg (Stable Zero123)")
    p.add_argument("--model", required=True, help="model folder (any published layout) or hub id owner/name")
    p.add_argument("--polar", type=float, nargs="+", help="d_polar of each view, deg")
    p.add_argument("--azimuth", type=float, nargs="+", help="d_azimuth of each view, deg")
    p.add_argument("--radius", type=float, nargs="+", help="d_radius of each view (one value for all; default 0)")
    p.add_argument("--views", help='views as "dpolar,dazim,dradius;..." (instead of --polar/--azimuth/--radius)')
    p.add_argument("--steps", type=int, default=50, help="DDIM steps (default 50)")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale (default 3.0)")
    p.add_argument(
        "--eta",
        type=float,
        default=1.0,
        help="DDIM eta in [0, 1]: 1.0 (default) as the original Zero-1-to-3 demo, 0.0 reproduces the diffusers port",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same images)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    p.add_argument("--dtype", default="fp32", choices=("fp32", "fp16", "bf16"))
    p.add_argument("--max-views-per-batch", type=int, default=None, help="memory knob: views per UNet batch")
    p.add_argument("--stable", choices=("auto", "yes", "no"), default="auto", help="Stable Zero123 pose convention")
    p.add_argument("--out", required=True, help="output folder (created; files of an earlier run are replaced)")
    p.set_defaults(func=run)


def parse_views(args: argparse.Namespace) -> list[tuple[float, float, float]]:
    """The views from --views or --polar/--azimuth/--radius; raises InputError naming the bad flag."""
    if args.views is not None:
        if args.polar or args.azimuth or args.radius:
            raise InputError("give either --views or --polar/--azimuth/--radius, not both")
        views = []
        for item in filter(None, (s.strip() for s in args.views.split(";"))):
            parts = [s.strip() for s in item.split(",")]
            try:
                values = [float(s) for s in parts]
            except ValueError as exc:
                raise InputError(f"--views entry {item!r} is not numbers: {exc}") from exc
            if len(values) not in (2, 3):
                raise InputError(f"--views entry {item!r} must be dpolar,dazim[,dradius]")
            views.append((values[0], values[1], values[2] if len(values) == 3 else 0.0))
    else:
        if not args.polar or not args.azimuth:
            raise InputError("give the views: --polar DEG... --azimuth DEG... or --views 'dp,da,dr;...'")
        n = len(args.polar)
        if len(args.azimuth) != n:
            raise InputError(f"--polar has {n} values but --azimuth has {len(args.azimuth)}")
        radius = args.radius or [0.0]
        if len(radius) == 1:
            radius = radius * n
        if len(radius) != n:
            raise InputError(f"--radius needs 1 or {n} values, got {len(radius)}")
        views = list(zip(args.polar, args.azimuth, radius, strict=True))
    if not views:
        raise InputError("no views given")
    if not all(math.isfinite(v) for view in views for v in view):
        raise InputError("view angles and radii must be finite")
    return views


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    """``tile`` with a white strip underneath holding ``text``."""
    strip = np.full((22, tile.shape[1], 3), 255, np.uint8)
    scale = min(0.45, 0.45 * tile.shape[1] / 256 * 1.6)
    cv2.putText(strip, text, (4, 15), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([tile, strip], axis=0)


def contact_sheet(input_image: np.ndarray, views: list[np.ndarray], labels: list[str], input_label: str) -> np.ndarray:
    """Input + all views in a grid (up to 5 per row), each labelled; (H, W, 3) uint8 RGB."""
    tiles = [_label(input_image, input_label)] + [_label(v, t) for v, t in zip(views, labels, strict=True)]
    cols = min(5, len(tiles))
    rows = -(-len(tiles) // cols)
    h, w = tiles[0].shape[:2]
    sheet = np.full((rows * h, cols * w, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = tile
    return sheet


def _write_outputs(out: Path, files: dict[str, np.ndarray], meta: dict) -> None:
    with staged_output(out, owned=("*.png", "views.json")) as tmp:
        for name, image in files.items():
            save_rgb(tmp / name, image)
        (tmp / "views.json").write_text(json.dumps(meta, indent=2) + "\n")


def run(args: argparse.Namespace) -> int:
    """Run ``z123 views``; returns the exit code."""
    try:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} exists and is not a folder")
        image_path = args.image_opt or args.image
        if image_path is None:
            raise InputError("give the input image: z123 views IMAGE ... or --image IMAGE")
        if args.image_opt and args.image and args.image_opt != args.image:
            raise InputError("give the input image once (positional or --image)")
        views = parse_views(args)
        if args.steps < 1:
            raise InputError(f"--steps must be >= 1, got {args.steps}")
        if not 0.0 <= args.eta <= 1.0:
            raise InputError(f"--eta must be in [0, 1], got {args.eta}")
        if args.max_views_per_batch is not None and args.max_views_per_batch < 1:
            raise InputError(f"--max-views-per-batch must be >= 1, got {args.max_views_per_batch}")
        files, meta = generate(args, image_path, views)
        _write_outputs(out, files, meta)
    except Z123Error as exc:
        sys.stderr.write(f"z123 views: error: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"z123 views: error: cannot write {args.out}: {exc}\n")
        return 2
    logger.info("%d view(s) -> %s", len(views), out)
    return 0


def generate(args: argparse.Namespace, image_path: str, views: list) -> tuple[dict[str, np.ndarray], dict]:
    """Load, preprocess, run the model; returns the images to write (name -> RGB uint8) and views.json."""
    import torch

    from z123_ros.novel_views.pipeline import load_zero123, to_uint8

    rgb = load_rgb(image_path)
    camera = load_camera(args.camera) if args.camera else None
    if camera is not None and (camera.intrinsics.width, camera.intrinsics.height) != (rgb.shape[1], rgb.shape[0]):
        raise InputError(
            f"{args.camera} is for {camera.intrinsics.width}x{camera.intrinsics.height}, "
            f"{image_path} is {rgb.shape[1]}x{rgb.shape[0]}"
        )
    stable = {"auto": None, "yes": True, "no": False}[args.stable]
    pipe = load_zero123(args.model, device=args.device, dtype=args.dtype, stable_zero123=stable)
    size = pipe.image_size
    input_polar = args.input_polar
    if args.mask:
        mask = load_mask(args.mask)
        inp = preprocess_for_zero123(
            rgb,
            mask,
            size=size,
            object_size=round(size * 200 / 256),
            intrinsics=None if camera is None else camera.intrinsics,
            T_cam_from_world=None if camera is None else camera.T_cam_from_world,
        )
        model_input = inp.image
        if input_polar is None:
            input_polar = inp.input_polar_deg
    else:
        if rgb.shape[0] != rgb.shape[1]:
            raise InputError(
                f"{image_path} is {rgb.shape[1]}x{rgb.shape[0]}: without --mask the image must be square with the "
                "object centred on white (give --mask to crop it)"
            )
        model_input = rgb if rgb.shape[0] == size else _resize(rgb, size)
    generator = torch.Generator().manual_seed(args.seed)
    result = pipe(
        model_input,
        views=views,
        input_polar_deg=input_polar,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance,
        eta=args.eta,
        generator=generator,
        max_views_per_batch=args.max_views_per_batch,
    )
    images = [to_uint8(a) for a in result.images]
    labels = [f"dp {p:+.0f} da {a:.0f} dr {r:+.2f}" for p, a, r in views]
    polar_text = "input" if result.input_polar_deg is None else f"input, polar {result.input_polar_deg:.0f}"
    files = {"input.png": model_input} | {f"view_{i:02d}.png": im for i, im in enumerate(images)}
    files["contact_sheet.png"] = contact_sheet(model_input, images, labels, polar_text)
    meta = {
        "model": str(args.model),
        "stable_zero123": pipe.is_stable_zero123,
        "input_polar_deg": result.input_polar_deg,
        "steps": args.steps,
        "guidance_scale": args.guidance,
        "eta": args.eta,
        "seed": args.seed,
        "dtype": args.dtype,
        "seconds": round(result.seconds, 3),
        "views": [
            {"file": f"view_{i:02d}.png", "d_polar_deg": p, "d_azimuth_deg": a, "d_radius": r, "pose_vector": pv}
            for i, ((p, a, r), pv) in enumerate(zip(views, result.pose_vectors.tolist(), strict=True))
        ],
    }
    return files, meta


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    interp = cv2.INTER_AREA if rgb.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(rgb, (size, size), interpolation=interp)
