"""z123 segment: objects in one RGB(-D) frame -> one mask PNG per object, objects.json and overlay.png.

    z123 segment --rgb RGB.png [--depth DEPTH.png|.npy] --camera CAMERA.json --out DIR [--roi X0 Y0 X1 Y1]

File conventions are those of z123_ros.io (the same as ``z123 reconstruct``). Bad input exits 2 with one line on
stderr and writes nothing: every output is made in a temporary folder first and moved into DIR at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

#: Distinct colours (RGB) for the overlay, cycled by object id.
PALETTE = np.array(
    [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)],
    dtype=np.uint8,
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment`` subcommand to the ``z123`` tool."""
    p = subparsers.add_parser(
        "segment",
        help="objects in an RGB(-D) frame -> masks, objects.json, overlay",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument("--rgb", required=True, help="colour image (PNG/JPEG, 8-bit)")
    p.add_argument("--depth", help="registered depth: 16-bit PNG (CAMERA.json depth_unit, default mm) or .npy metres")
    p.add_argument("--camera", required=True, help="CAMERA.json with K, width, height [, T_cam_from_world]")
    p.add_argument("--out", required=True, help="output folder (created; existing outputs of a run are replaced)")
    p.add_argument("--roi", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="region of interest in pixels")
    p.add_argument("--stride", type=int, default=None, help="coarse grid stride of the RGB-D segmenter (default 4)")
    p.add_argument("--no-colour-split", action="store_true", help="do not split touching objects by colour")
    p.set_defaults(func=run)


def overlay_image(rgb: np.ndarray, objects: list) -> np.ndarray:
    """The RGB image with each object's mask tinted, its box drawn and its id written at the box corner."""
    import cv2

    out = rgb.copy()
    for obj in objects:
        colour = PALETTE[(obj.id - 1) % len(PALETTE)]
        out[obj.mask] = (0.5 * out[obj.mask] + 0.5 * colour).astype(np.uint8)
    bgr = np.ascontiguousarray(out[:, :, ::-1])
    for obj in objects:
        colour = tuple(int(c) for c in PALETTE[(obj.id - 1) % len(PALETTE)][::-1])
        x0, y0, x1, y1 = obj.box_xyxy
        cv2.rectangle(bgr, (x0, y0), (x1 - 1, y1 - 1), colour, 2)
        label = f"{obj.id} {obj.method} {obj.score:.2f}"
        cv2.putText(bgr, label, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _vec(v: np.ndarray | None) -> list[float] | None:
    return None if v is None else [float(x) for x in np.asarray(v).ravel()]


def objects_json(result, width: int, height: int) -> dict:
    """The content of objects.json for a FrameSegmentation."""
    return {
        "image_size": [width, height],
        "plane_cam": _vec(result.plane_cam),
        "camera_polar_deg": result.camera_polar_deg,
        "objects": [
            {
                "id": obj.id,
                "mask": f"mask_{obj.id:02d}.png",
                "box_xyxy": [int(v) for v in obj.box_xyxy],
                "area_px": obj.area_px,
                "centroid_cam": _vec(obj.centroid_cam),
                "extent_m": _vec(obj.extent_m),
                "size_on_plane_m": _vec(obj.size_on_plane_m),
                "camera_polar_deg": obj.camera_polar_deg,
                "score": round(float(obj.score), 4),
                "method": obj.method,
                "depth_coverage": round(float(obj.depth_coverage), 4),
            }
            for obj in result.objects
        ],
        "timings_s": {k: round(v, 6) for k, v in result.timings.items()},
    }


def _write_outputs(out: Path, result, rgb: np.ndarray) -> None:
    from z123_ros.io import save_mask, save_rgb, staged_output

    with staged_output(out, owned=("mask_*.png", "overlay.png", "objects.json")) as tmp:
        for obj in result.objects:
            save_mask(tmp / f"mask_{obj.id:02d}.png", obj.mask)
        save_rgb(tmp / "overlay.png", overlay_image(rgb, result.objects))
        (tmp / "objects.json").write_text(json.dumps(objects_json(result, rgb.shape[1], rgb.shape[0]), indent=2))


def run(args: argparse.Namespace) -> int:
    """Run ``z123 segment``; returns the exit code."""
    from z123_ros.errors import SegmentationError, Z123Error
    from z123_ros.io import load_camera, load_depth, load_rgb
    from z123_ros.segmentation import SegmentationConfig, TabletopSegmenter

    try:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise Z123Error(f"--out {out} exists and is not a folder")
        camera = load_camera(args.camera)
        rgb = load_rgb(args.rgb)
        depth = None if args.depth is None else load_depth(args.depth, camera.depth_unit)
        config = SegmentationConfig()
        if args.stride is not None:
            config.stride = args.stride
        if args.no_colour_split:
            config.colour_split = False
        segmenter = TabletopSegmenter(config)
        pose = camera.T_cam_from_world
        result = segmenter.segment(rgb, camera.intrinsics, depth, roi=args.roi, T_cam_from_world=pose)
        if not result.objects:
            hint = "no object stands on a support plane" if depth is not None else "the RGB-only fallback found nothing"
            raise SegmentationError(f"no object found in {args.rgb}: {hint}; try --roi around the object")
        _write_outputs(out, result, rgb)
    except Z123Error as exc:
        sys.stderr.write(f"z123 segment: error: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"z123 segment: error: cannot write {args.out}: {exc}\n")
        return 2
    logger.info("%d object(s) -> %s", len(result.objects), out)
    return 0
