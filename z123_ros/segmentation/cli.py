"""z123 segment: objects in RGB(-D) frames -> one mask PNG per object, objects.json and overlay.png per frame.

    z123 segment --rgb RGB.png [--depth DEPTH.png|.npy] --camera CAMERA.json --out DIR [--roi X0 Y0 X1 Y1]
    z123 segment --frames FRAME_DIR_OR_SET [...] --out DIR

``--frames`` takes frame folders (rgb.png, camera.json and depth.npy or depth.png, the layout of
../shared/data/real) or folders of them, all in one process (start-up is paid once): each frame's outputs go to
DIR/<frame folder name>/. File conventions are those of z123_ros.io (the same as ``z123 reconstruct``). Bad input
exits 2 with one line on stderr and writes nothing: every frame is loaded and checked before any output is written,
and each output folder is made in a temporary folder first and moved into place at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from z123_ros.errors import SegmentationError, Z123Error
from z123_ros.io import CameraModel, load_camera, load_depth, load_rgb, save_mask, save_rgb, staged_output
from z123_ros.segmentation.config import SegmentationConfig
from z123_ros.segmentation.factory import METHODS, make_segmenter

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
    p.add_argument("--rgb", help="colour image (PNG/JPEG, 8-bit)")
    p.add_argument("--frames", nargs="+", metavar="DIR", help="frame folders, or folders of frame folders")
    p.add_argument("--depth", help="registered depth: 16-bit PNG (CAMERA.json depth_unit, default mm) or .npy metres")
    p.add_argument("--camera", help="CAMERA.json with K, width, height [, T_cam_from_world] (with --rgb)")
    p.add_argument("--out", required=True, help="output folder (created; existing outputs of a run are replaced)")
    p.add_argument("--roi", nargs=4, type=float, metavar=("X0", "Y0", "X1", "Y1"), help="region of interest in pixels")
    p.add_argument("--stride", type=int, default=None, help="coarse grid stride of the RGB-D segmenter (default 4)")
    p.add_argument("--no-colour-split", action="store_true", help="do not split touching objects by colour")
    p.add_argument("--method", choices=METHODS, default=None, help="segmentation.method (default tabletop)")
    p.add_argument("--sam-model", help="local Segment Anything folder for --method sam")
    p.set_defaults(func=run)


def overlay_image(rgb: np.ndarray, objects: list) -> np.ndarray:
    """The RGB image with each object's mask tinted, its box drawn and its id written at the box corner."""
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
    with staged_output(out, owned=("mask_*.png", "overlay.png", "objects.json")) as tmp:
        for obj in result.objects:
            save_mask(tmp / f"mask_{obj.id:02d}.png", obj.mask)
        save_rgb(tmp / "overlay.png", overlay_image(rgb, result.objects))
        (tmp / "objects.json").write_text(json.dumps(objects_json(result, rgb.shape[1], rgb.shape[0]), indent=2))


@dataclass
class _Frame:
    """One frame to segment, loaded and checked."""

    name: str
    rgb: np.ndarray
    depth: np.ndarray | None
    camera: CameraModel
    source: str


def _frame_folders(paths: list[str]) -> list[Path]:
    """Frame folders (holding rgb.png and camera.json) among ``paths`` and their sub-folders, sorted per path."""
    out: list[Path] = []
    for p in map(Path, paths):
        if (p / "rgb.png").is_file():
            out.append(p)
        elif p.is_dir():
            inner = sorted(q for q in p.iterdir() if (q / "rgb.png").is_file())
            if not inner:
                raise Z123Error(f"--frames {p} holds no frame folder (rgb.png + camera.json)")
            out.extend(inner)
        else:
            raise Z123Error(f"--frames {p} is not a folder")
    names = [f.name for f in out]
    if len(set(names)) != len(names):
        raise Z123Error("--frames: two frame folders have the same name; their outputs would collide")
    return out


def _load_frames(args: argparse.Namespace) -> list[_Frame]:
    if (args.rgb is None) == (args.frames is None):
        raise Z123Error("give either --rgb (with --camera) or --frames")
    if args.rgb is not None:
        if args.camera is None:
            raise Z123Error("--rgb needs --camera")
        camera = load_camera(args.camera)
        depth = None if args.depth is None else load_depth(args.depth, camera.depth_unit)
        return [_Frame("", load_rgb(args.rgb), depth, camera, args.rgb)]
    frames = []
    for folder in _frame_folders(args.frames):
        camera = load_camera(folder / "camera.json")
        depth_file = next((folder / n for n in ("depth.npy", "depth.png") if (folder / n).is_file()), None)
        depth = None if depth_file is None else load_depth(depth_file, camera.depth_unit)
        frames.append(_Frame(folder.name, load_rgb(folder / "rgb.png"), depth, camera, str(folder)))
    return frames


def _config(args: argparse.Namespace) -> SegmentationConfig:
    config = SegmentationConfig()
    if args.stride is not None:
        config.stride = args.stride
    if args.no_colour_split:
        config.colour_split = False
    if args.method is not None:
        config.method = args.method
    if args.sam_model is not None:
        config.sam_model_dir = args.sam_model
    return config


def _segment_all(args: argparse.Namespace, frames: list[_Frame]) -> list:
    segmenter = make_segmenter(_config(args))
    results = []
    for frame in frames:
        pose = frame.camera.T_cam_from_world
        result = segmenter.segment(frame.rgb, frame.camera.intrinsics, frame.depth, roi=args.roi, T_cam_from_world=pose)
        if not result.objects:
            hint = (
                "no object stands on a support plane"
                if frame.depth is not None
                else "the RGB-only fallback found nothing"
            )
            raise SegmentationError(f"no object found in {frame.source}: {hint}; try --roi around the object")
        results.append(result)
    return results


def run(args: argparse.Namespace) -> int:
    """Run ``z123 segment``; returns the exit code."""
    try:
        out = Path(args.out)
        if out.exists() and not out.is_dir():
            raise Z123Error(f"--out {out} exists and is not a folder")
        frames = _load_frames(args)
        results = _segment_all(args, frames)
        for frame, result in zip(frames, results, strict=True):
            _write_outputs(out / frame.name if frame.name else out, result, frame.rgb)
    except Z123Error as exc:
        sys.stderr.write(f"z123 segment: error: {exc}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"z123 segment: error: cannot write {args.out}: {exc}\n")
        return 2
    logger.info("%d frame(s), %d object(s) -> %s", len(frames), sum(len(r.objects) for r in results), out)
    return 0
