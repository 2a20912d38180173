"""``z123 eval``: build the seeded evaluation set, run a backend and the baseline, write the report.

    z123 eval --backend depth --baseline hull --objects 20 --seed 0 --out eval_out

Writes DIR/report.md (tables, plots), DIR/results.json and the plots; with ``--save-set`` also DIR/set/<object>/
(the inputs in the ``z123 reconstruct`` file conventions plus ground truth). Everything is written to a temporary
folder first and moved into place at the end, so a failed run leaves nothing partial.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import shutil
import sys
import tempfile
from pathlib import Path

from z123_ros.errors import InputError, Z123Error

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    from z123_ros.evaluation.dataset import EvalSetConfig
    from z123_ros.evaluation.runner import EvalConfig

    defaults, set_defaults = EvalConfig(), EvalSetConfig()
    p = subparsers.add_parser(
        "eval",
        help="paper-style evaluation on real scanned objects (3D metrics, novel-view metrics, report)",
        description="Build the seeded evaluation set (real YCB scans, one robot-like RGB-D view and 12 held-out views "
        "per object), run a backend and the baseline side by side, write report.md, results.json and plots.",
        epilog="example: z123 eval --backend depth --baseline hull --objects 20 --seed 0 --out eval_out",
    )
    p.add_argument("--backend", default=defaults.backend, help="backend under test: depth, multiview, zero123, hull")
    p.add_argument("--baseline", default=defaults.baseline, help="baseline run side by side ('none' to skip)")
    p.add_argument("--objects", type=int, default=set_defaults.num_objects, help="number of objects (max 33)")
    p.add_argument("--names", default=None, help="comma-separated YCB object names instead of a seeded draw")
    p.add_argument("--seed", type=int, default=set_defaults.seed, help="seed of the evaluation set")
    p.add_argument("--out", required=True, help="output folder (created; must be empty unless --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing, non-empty output folder")
    p.add_argument("--model", default=None, help="Zero-1-to-3 model folder or hub id (learned backends, PSNR/SSIM)")
    p.add_argument("--steps", type=int, default=None, help="optimisation steps of the learned backends")
    p.add_argument("--view-steps", type=int, default=defaults.novel_view_steps, help="DDIM steps for novel views")
    p.add_argument("--device", default=defaults.device, help="torch device: cpu, cuda, cuda:1 ...")
    p.add_argument("--preset", default=defaults.preset, help="reconstruction preset: default or quick")
    p.add_argument("--iou-resolution", type=int, default=defaults.iou_resolution, help="IoU grid side (64)")
    p.add_argument("--depth-noise", type=float, default=0.0, help="Gaussian depth noise of the input views, metres")
    p.add_argument("--no-silhouettes", action="store_true", help="skip the held-out silhouette IoU renders")
    p.add_argument("--save-set", action="store_true", help="also write the evaluation set under DIR/set/")
    p.set_defaults(func=run_eval)


def _configs(args: argparse.Namespace):
    from z123_ros.evaluation.dataset import EvalSetConfig
    from z123_ros.evaluation.runner import EvalConfig

    names = None
    if args.names:
        names = tuple(n.strip() for n in args.names.split(",") if n.strip())
    set_config = EvalSetConfig(
        num_objects=args.objects, seed=args.seed, object_names=names, depth_noise_m=args.depth_noise
    )
    baseline = None if str(args.baseline).lower() in ("none", "") else args.baseline
    config = EvalConfig(
        backend=args.backend,
        baseline=baseline,
        preset=args.preset,
        model=args.model,
        steps=args.steps,
        device=args.device,
        iou_resolution=args.iou_resolution,
        silhouettes=not args.no_silhouettes,
        novel_view_steps=args.view_steps,
        seed=args.seed,
    )
    return set_config, config


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InputError(f"--out {out} is not empty; choose a new folder or pass --overwrite")


def run_eval(args: argparse.Namespace) -> int:
    """Entry point of ``z123 eval``; returns the exit code."""
    from z123_ros.evaluation.dataset import iter_eval_set, save_eval_object
    from z123_ros.evaluation.report import summary_table, write_report
    from z123_ros.evaluation.runner import evaluate

    out = Path(args.out)
    try:
        set_config, config = _configs(args)
        set_config.check()
        config.check()
        _check_out(out, args.overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        command = "z123 " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "eval" in sys.argv[1:] else None
        with tempfile.TemporaryDirectory(prefix=".z123_eval_", dir=out.parent) as tmp:
            staging = Path(tmp)

            def objects():
                for obj in iter_eval_set(set_config):
                    if args.save_set:
                        save_eval_object(obj, staging / "set")
                    yield obj

            bar = _progress_bar(len(set_config.resolved_object_names()))
            try:
                result = evaluate(
                    set_config, config, objects=objects(), progress=lambda done, total, name: bar.update(1)
                )
            finally:
                bar.close()
            write_report(result, staging, command=command)
            out.mkdir(parents=True, exist_ok=True)
            for item in staging.iterdir():
                target = out / item.name
                if target.is_dir():
                    shutil.rmtree(target)
                shutil.move(str(item), str(target))
    except Z123Error as exc:
        sys.stderr.write(f"z123 eval: error: {exc}\n")
        return 2
    sys.stdout.write(summary_table(result) + "\n")
    sys.stdout.write(f"report: {out / 'report.md'}\n")
    return 0


def _progress_bar(total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="z123 eval", unit="object", file=sys.stderr)
