"""Evaluation benchmark: reconstruction seconds per object for every backend that runs on this CPU.

On the seeded evaluation set (z123_ros.evaluation, real YCB scans, one 640x480 RGB-D view each) it times
``reconstruct()`` per object for ``hull`` and ``depth`` (default settings), and for ``multiview`` and ``zero123``
with a tiny random-weight Zero-1-to-3 model and the ``quick`` preset (their code path, not their real-size cost:
real models run on GPUs; ``zero123`` only without ``--quick``). Also times building one evaluation object (input
view, 12 held-out views, 64^3 occupancy) and scoring one reconstruction (IoU, Chamfer, F-score in both protocols).
All rows come from one run, side by side, so the ratios to ``hull`` are comparable.

    python bench/bench_eval.py [--quick]

``--conditions`` instead regenerates the conditions report kept in docs/evaluation (conditions.md, conditions.json,
plots): segmentation and reconstruction per condition bucket and on the real dev frames, beside the Open3D and hull
baselines (z123_ros.evaluation.conditions). Minutes on 2 cores:

    python bench/bench_eval.py --conditions [--spec all] [--seeds 2] [--name conditions] [--out docs/evaluation]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _table import markdown_table  # bench/ is sys.path[0] when a bench script runs

# Run against this working tree, not an installed copy of the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from z123_ros.evaluation import EvalConfig, EvalSetConfig, build_eval_object
from z123_ros.evaluation.conditions import ConditionsConfig, run_conditions
from z123_ros.evaluation.conditions_report import owned_files, write_conditions_report
from z123_ros.evaluation.real import DEFAULT_REAL_ROOT
from z123_ros.evaluation.runner import _mesh_in_world
from z123_ros.io import staged_output
from z123_ros.reconstruction import ReconstructionConfig, ReconstructionInput, reconstruct
from z123_ros.reconstruction.metrics import evaluate_mesh

logger = logging.getLogger(__name__)


def _tiny_pipeline(folder: str):
    try:
        from z123_ros.novel_views import load_zero123
        from z123_ros.novel_views.testing import save_tiny_zero123
    except ImportError as exc:
        logger.warning("novel views unavailable (%s): skipping the learned backends", exc)
        return None
    return load_zero123(save_tiny_zero123(folder, layout="kxic", seed=0), progress_bar=False)


def run(quick: bool = False) -> list[dict]:
    n_objects = 3 if quick else 10
    set_config = EvalSetConfig(num_objects=n_objects, seed=0)
    build_s, objects = [], []
    for index, name in enumerate(set_config.resolved_object_names()):
        t0 = time.perf_counter()
        objects.append(build_eval_object(set_config, index, name))
        build_s.append(time.perf_counter() - t0)

    with tempfile.TemporaryDirectory() as tmp:
        pipeline = _tiny_pipeline(tmp)
        backends = [("hull", ReconstructionConfig(), None, "-"), ("depth", ReconstructionConfig(), None, "-")]
        if pipeline is not None:
            quick_cfg = ReconstructionConfig.preset("quick")
            backends.append(("multiview", quick_cfg, pipeline, "tiny random, quick preset"))
            if not quick:  # SJC is the slowest path even at the quick preset: minutes per object on 2 cores
                backends.append(("zero123", quick_cfg, pipeline, "tiny random, quick preset"))
        rows, seconds = [], {}
        for backend, config, pipe, model in backends:
            times, failures = [], 0
            for obj in objects:
                inp = ReconstructionInput(
                    obj.input.rgb, obj.input.mask, obj.input.intrinsics, obj.input.depth_m, obj.input.T_cam_from_world
                )
                t0 = time.perf_counter()
                try:
                    reconstruct(inp, backend, config, pipe)
                except Exception as exc:  # a benchmark row records the failure and the others still run
                    failures += 1
                    logger.warning("%s failed on %s: %s", backend, obj.name, exc)
                    continue
                times.append(time.perf_counter() - t0)
            seconds[backend] = float(np.median(times)) if times else float("nan")
            rows.append(
                {
                    "bench": "eval_reconstruct_per_object",
                    "backend": backend,
                    "model": model,
                    "objects": len(times),
                    "failed": failures,
                    "median_s": round(seconds[backend], 3),
                    "mean_s": round(float(np.mean(times)), 3) if times else float("nan"),
                    "max_s": round(float(np.max(times)), 3) if times else float("nan"),
                    "x_hull": round(seconds[backend] / seconds["hull"], 1) if seconds.get("hull") else float("nan"),
                }
            )

    # Scoring cost of one depth reconstruction (both protocols), and the set-building cost.
    eval_cfg = EvalConfig()
    obj = objects[0]
    inp = ReconstructionInput(
        obj.input.rgb, obj.input.mask, obj.input.intrinsics, obj.input.depth_m, obj.input.T_cam_from_world
    )
    world = _mesh_in_world(reconstruct(inp, "depth"), obj)
    t0 = time.perf_counter()
    evaluate_mesh(world, obj.mesh_world, eval_cfg.num_points, eval_cfg.f_threshold_m, False, eval_cfg.iou_resolution)
    evaluate_mesh(world, obj.mesh_world, eval_cfg.num_points, eval_cfg.f_threshold_unit, True, eval_cfg.iou_resolution)
    rows.append(
        {"bench": "eval_score_one_reconstruction", "backend": "depth", "median_s": round(time.perf_counter() - t0, 3)}
    )
    rows.append({"bench": "eval_build_object", "objects": n_objects, "median_s": round(float(np.median(build_s)), 3)})
    return rows


REPO = Path(__file__).resolve().parents[1]


def run_conditions_report(spec: str, seeds: int, out: Path, name: str) -> Path:
    """Run the conditions benchmark (with the real dev frames when present) and write its report into ``out``."""
    # The whole real tree: the labelled dev frames are scored, the unlabelled ones shown.
    real = DEFAULT_REAL_ROOT
    config = ConditionsConfig(spec=spec, seeds_per_bucket=seeds, real=str(real) if real.is_dir() else None)
    if config.real is None:
        logger.warning("%s is absent: the report has no real-frame rows", real)
    command = f"python bench/bench_eval.py --conditions --spec {spec} --seeds {seeds} --name {name}"
    if out.resolve() != (REPO / "docs" / "evaluation").resolve():
        command += f" --out {out}"
    result = run_conditions(config, progress=lambda done, total, case: logger.info("[%d/%d] %s", done, total, case))
    with staged_output(out, owned_files(name)) as staging:  # the folder's other reports stay
        paths = write_conditions_report(result, staging, command=command, name=name)
    return out / paths["markdown"].name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 objects instead of 10")
    parser.add_argument("--conditions", action="store_true", help="regenerate the conditions report instead")
    parser.add_argument("--spec", default="all", help="condition buckets (see z123 eval --conditions)")
    parser.add_argument("--seeds", type=int, default=ConditionsConfig.seeds_per_bucket, help="scenes per bucket")
    parser.add_argument("--name", default="conditions", help="report file stem (conditions_before for the baseline)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "evaluation", help="report folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.conditions else logging.WARNING, stream=sys.stderr)
    if args.conditions:
        print(f"report: {run_conditions_report(args.spec, args.seeds, args.out, args.name)}")
        return
    rows = run(args.quick)
    print(markdown_table(rows))


if __name__ == "__main__":
    main()
