"""Reconstruction benchmark: seconds per object per backend, at the default and the quick preset.

    python bench/bench_reconstruction.py [--quick]

Rows: the ``depth`` backend and the hull baseline on rendered YCB objects (with IoU / Chamfer against the scans), and
the learned backends with a tiny random-weight Zero-1-to-3 (the machinery's cost: rendering, field updates, score
calls; a real model adds its UNet time per step). For the learned backends at the default preset (10 000 SJC steps at
100^3) the row gives the measured seconds per optimisation step, not a full run. All rows come from one run on one
machine, so their ratios are comparable.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._reconstruction_helpers import evaluate_in_world, render_object_view  # noqa: E402
from z123_ros.reconstruction import ReconstructionConfig, reconstruct  # noqa: E402

OBJECTS = ("005_tomato_soup_can", "003_cracker_box", "006_mustard_bottle", "011_banana", "025_mug", "013_apple")


def _time(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def run(quick: bool = False) -> list[dict]:
    """Benchmark rows: backend, preset, objects, seconds per object (and quality where it is meaningful)."""
    names = OBJECTS[:2] if quick else OBJECTS
    views = [render_object_view(n) for n in names]
    rows: list[dict] = []
    for backend in ("hull", "depth"):
        for preset in ("default", "quick"):
            if backend == "hull" and preset == "quick":
                continue
            cfg = ReconstructionConfig.preset(preset)
            secs, ious, cds = [], [], []
            for view in views:
                s, result = _time(lambda v=view, c=cfg, b=backend: reconstruct(v.inp, b, c))
                m = evaluate_in_world(result, view, num_points=5000)
                secs.append(s)
                ious.append(m["iou"])
                cds.append(1e3 * m["chamfer"])
            rows.append(
                {
                    "backend": backend,
                    "preset": preset,
                    "objects": len(views),
                    "s_per_object": float(np.mean(secs)),
                    "iou": float(np.mean(ious)),
                    "chamfer_mm": float(np.mean(cds)),
                    "note": "",
                }
            )

    from z123_ros.novel_views import load_zero123
    from z123_ros.novel_views.testing import save_tiny_zero123

    with tempfile.TemporaryDirectory() as folder:
        pipe = load_zero123(save_tiny_zero123(folder, layout="kxic"))
        view = views[0]
        quick_cfg = ReconstructionConfig.preset("quick")
        for backend in ("multiview", "zero123"):
            s, _ = _time(lambda b=backend: reconstruct(view.inp, b, quick_cfg, pipe))
            steps = quick_cfg.sjc.steps if backend == "zero123" else quick_cfg.multiview.fit_steps
            rows.append(
                {
                    "backend": backend,
                    "preset": "quick",
                    "objects": 1,
                    "s_per_object": s,
                    "iou": float("nan"),
                    "chamfer_mm": float("nan"),
                    "note": f"tiny model, {steps} steps",
                }
            )
        # Default preset: time a few steps and report seconds per step.
        probe_steps = 2 if quick else 5
        for backend in ("multiview", "zero123"):
            cfg = ReconstructionConfig()
            cfg.num_points = 2000
            cfg.sjc.steps = probe_steps
            cfg.multiview.fit_steps = probe_steps
            cfg.multiview.num_inference_steps = 2
            result = reconstruct(view.inp, backend, cfg, pipe)
            key = "optimise" if backend == "zero123" else "fit"
            rows.append(
                {
                    "backend": backend,
                    "preset": "default",
                    "objects": 1,
                    "s_per_object": float("nan"),
                    "iou": float("nan"),
                    "chamfer_mm": float("nan"),
                    "note": f"tiny model: {result.timings[key] / probe_steps:.2f} s per step at "
                    f"{cfg.voxel_field.grid_size}^3 / {cfg.voxel_field.render_size}px "
                    f"(x {cfg.sjc.steps if backend == 'zero123' else cfg.multiview.fit_steps} steps)",
                }
            )
    return rows


def evaluate(num_objects: int) -> list[dict]:
    """Depth backend vs the hull baseline, one input view per object (seed 0), metric scores in the world frame."""
    from z123_ros.sim import OBJECT_NAMES

    rows = []
    for name in OBJECT_NAMES[:num_objects]:
        view = render_object_view(name)
        row: dict = {"object": name}
        for backend in ("hull", "depth"):
            s, result = _time(lambda b=backend, v=view: reconstruct(v.inp, b))
            m = evaluate_in_world(result, view)
            row[backend] = {"iou": m["iou"], "chamfer_mm": 1e3 * m["chamfer"], "f_score": m["f_score"], "s": s}
            if backend == "depth":
                row["prior"] = result.info["prior"]
        rows.append(row)
    return rows


def eval_markdown(rows: list[dict]) -> str:
    lines = [
        "| object | hull IoU | hull CD (mm) | hull F@5mm | depth IoU | depth CD (mm) | depth F@5mm | depth s | prior |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h, d = r["hull"], r["depth"]
        lines.append(
            f"| {r['object']} | {h['iou']:.3f} | {h['chamfer_mm']:.1f} | {h['f_score']:.2f} | {d['iou']:.3f} | "
            f"{d['chamfer_mm']:.1f} | {d['f_score']:.2f} | {d['s']:.2f} | {r['prior']} |"
        )
    mean = {b: {k: float(np.mean([r[b][k] for r in rows])) for k in rows[0][b]} for b in ("hull", "depth")}
    h, d = mean["hull"], mean["depth"]
    lines.append(
        f"| **mean ({len(rows)})** | {h['iou']:.3f} | {h['chamfer_mm']:.1f} | {h['f_score']:.2f} | {d['iou']:.3f} | "
        f"{d['chamfer_mm']:.1f} | {d['f_score']:.2f} | {d['s']:.2f} | |"
    )
    return "\n".join(lines)


def to_markdown(rows: list[dict]) -> str:
    lines = [
        "| backend | preset | objects | s / object | IoU | Chamfer (mm) | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['preset']} | {r['objects']} | {r['s_per_object']:.2f} | {r['iou']:.3f} | "
            f"{r['chamfer_mm']:.1f} | {r['note']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 objects, fewer probe steps")
    parser.add_argument("--eval", type=int, metavar="N", help="instead: depth vs hull quality on the first N objects")
    args = parser.parse_args()
    print(eval_markdown(evaluate(args.eval)) if args.eval else to_markdown(run(quick=args.quick)))
