"""Segmentation benchmark: one table, a row per condition bucket (z123_ros.sim.conditions) and per set of real frames,
for every segmenter side by side in the same run.

Methods (columns ``method``):
- ``tabletop``: the default geometric RGB-D segmenter (z123_ros.segmentation, ``segmentation.method: tabletop``).
- ``tabletop_v1``: the same code with this issue's rules switched off (colour alone may split, no concave creases,
  no hole bridging, no noise model, no flat-clutter / floating / raised-support rules): the previous release, to show
  which bucket each rule helps or hurts.
- ``learned``: the depth-only network trained on the simulator (``segmentation.method: learned``, the packaged weights
  z123_ros/segmentation/weights/learned_seg.safetensors; ``z123 train-segmenter``); left out when they are missing.
- ``open3d``: the baseline a user would write instead, Open3D ``segment_plane`` + ``cluster_dbscan`` with tutorial
  parameters (z123_ros.evaluation.baselines).

Per row: mean and 10th-percentile mask IoU over the ground-truth objects at least 70 % visible, found / missed (IoU
>= 0.5), fragments, merged, false positives (masks on no labelled object: table, clutter, background), median wall ms
and CPU ms per frame, and ``iou_vs_open3d`` (mean IoU / the baseline's in that row). Real frames: ../shared/data/real
ycbv-dev (5 labelled frames of an Xtion; never tuned on). Scoring is z123_ros.evaluation.segmentation, the same as
``z123 eval --conditions``.

    python bench/bench_segmentation.py [--quick] [--seeds N] [--buckets a,b] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

# Run against this working tree, not an installed copy of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _table import markdown_table  # noqa: E402

from z123_ros.errors import ModelLoadError  # noqa: E402
from z123_ros.evaluation.baselines import open3d_plane_dbscan  # noqa: E402
from z123_ros.evaluation.real import DEFAULT_REAL_ROOT, load_real_frames, visible_fractions  # noqa: E402
from z123_ros.evaluation.segmentation import score_frame, summarise_frames  # noqa: E402
from z123_ros.segmentation import SegmentationConfig, make_segmenter  # noqa: E402
from z123_ros.sim.conditions import render_condition  # noqa: E402

#: The buckets of the issue's table: clean, each sensor preset, textured, clutter, background, touching, occluding,
#: border-cut, the range and camera-elevation bands and hollow objects.
BUCKETS = (
    "clean",
    "structured_light",
    "active_stereo",
    "textured",
    "clutter",
    "background",
    "touching",
    "occluding",
    "border_cut",
    "range_close",
    "range_mid",
    "range_far",
    "elev_low",
    "elev_high",
    "hollow",
)
METHODS = ("tabletop", "tabletop_v1", "learned", "open3d")  # the baseline last: ratios are to it

#: The rules of this issue, switched off: the previous release's behaviour.
V1_RULES = dict(
    colour_needs_geometry=False,
    concave_split=False,
    max_hole_px=0,
    noise_sigmas=0.0,
    min_object_height_m=0.0,
    max_base_height_m=100.0,
    support_min_height_m=100.0,
)


def _masks_of(method: str, segmenters: dict, rgb: np.ndarray, depth: np.ndarray, intrinsics) -> list[np.ndarray]:
    if method == "open3d":
        labels = open3d_plane_dbscan(rgb, depth, intrinsics)
        return [labels == k for k in range(1, int(labels.max()) + 1)]
    return [o.mask for o in segmenters[method].segment(rgb, intrinsics, depth).objects]


def _cases(buckets: list[str], seeds: int, real: bool):
    """(row name, rgb, depth, intrinsics, gt ids, visible fractions) for every frame of the run."""
    for bucket in buckets:
        for seed in range(seeds):
            scene = render_condition(bucket, seed)
            visible = {o.id: o.visible_fraction for o in scene.objects}
            yield bucket, scene.rgb, scene.depth_m, scene.intrinsics, scene.instance_ids, visible
    if real and (DEFAULT_REAL_ROOT / "ycbv-dev").is_dir():
        for frame in load_real_frames(DEFAULT_REAL_ROOT / "ycbv-dev"):
            yield "real_ycbv_dev", frame.rgb, frame.depth_m, frame.intrinsics, frame.labels, visible_fractions(frame)


def _row(name: str, method: str, scores: list, cpu: list[float]) -> dict:
    s = summarise_frames(scores)
    return {
        "bucket": name,
        "method": method,
        "frames": s["frames"],
        "objects": s["objects"],
        "mean_iou": round(s["iou_mean"], 3),
        "p10_iou": round(s["iou_p10"], 3),
        "found": f"{s['found']}/{s['objects']}",
        "missed": s["missed"],
        "fragments": s["fragments"],
        "merged": s["merged"],
        "false_pos": s["false_positives"],
        "ms_frame": round(s["ms_median"], 1),
        "cpu_ms_frame": round(1e3 * float(np.median(cpu)), 1),
    }


def run(quick: bool = False, seeds: int | None = None, buckets: list[str] | None = None) -> list[dict]:
    seeds = seeds or (1 if quick else 4)
    buckets = list(buckets or (BUCKETS[:4] if quick else BUCKETS))
    segmenters = {
        "tabletop": make_segmenter(SegmentationConfig()),
        "tabletop_v1": make_segmenter(SegmentationConfig(**V1_RULES)),
    }
    methods = list(METHODS)
    try:
        segmenters["learned"] = make_segmenter(SegmentationConfig(method="learned"))
    except ModelLoadError as exc:
        print(f"learned segmenter left out: {exc}", file=sys.stderr)
        methods.remove("learned")
    scores: dict[tuple[str, str], list] = {}
    cpus: dict[tuple[str, str], list[float]] = {}
    order: list[str] = []
    for name, rgb, depth, intrinsics, gt, visible in _cases(buckets, seeds, real=True):
        if name not in order:
            order.append(name)
        for method in methods:
            t0, c0 = time.perf_counter(), time.process_time()
            masks = _masks_of(method, segmenters, rgb, depth, intrinsics)
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            scores.setdefault((name, method), []).append(score_frame(masks, gt, visible, seconds=wall))
            cpus.setdefault((name, method), []).append(cpu)
    rows = []
    for name in order:
        group = [_row(name, m, scores[(name, m)], cpus[(name, m)]) for m in methods]
        base = group[-1]["mean_iou"]
        for row in group:
            row["iou_vs_open3d"] = round(row["mean_iou"] / base, 2) if base and not math.isnan(base) else float("nan")
        rows += group
    rows += _summary(rows, methods)
    rows.append({"bucket": "machine", "method": f"{os.cpu_count()} cpus", "frames": "", "mean_iou": ""})
    rows[-1]["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return rows


def _summary(rows: list[dict], methods: list[str]) -> list[dict]:
    """Per method: mean over the simulated buckets and the worst one."""
    out = []
    for method in methods:
        sim = [r for r in rows if r["method"] == method and not r["bucket"].startswith("real")]
        if not sim:
            continue
        worst = min(sim, key=lambda r: r["mean_iou"])
        out.append(
            {
                "bucket": "sim mean / worst",
                "method": method,
                "frames": sum(r["frames"] for r in sim),
                "mean_iou": round(float(np.mean([r["mean_iou"] for r in sim])), 3),
                "p10_iou": f"worst: {worst['bucket']} {worst['mean_iou']}",
            }
        )
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed of 4 buckets")
    parser.add_argument("--seeds", type=int, default=None, help="scenes per bucket (default 4)")
    parser.add_argument("--buckets", default=None, help="comma-separated bucket names (default: the issue's list)")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    args = parser.parse_args()
    result = run(args.quick, args.seeds, args.buckets.split(",") if args.buckets else None)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(markdown_table(result))
