"""``z123 eval``: build the seeded evaluation set, run a backend and the baseline, write the report.

    z123 eval --backend depth --baseline hull --objects 20 --seed 0 --out eval_out

With ``--conditions SPEC`` and/or ``--real DIR`` it runs the conditions benchmark instead
(z123_ros.evaluation.conditions): segmentation (the project's segmenter vs the Open3D baseline) and reconstruction
(``--backend`` vs ``--baseline``) per condition bucket and on real frames, written as DIR/conditions.md,
DIR/conditions.json and plots:

    z123 eval --conditions all --real ../shared/data/real/ycbv-dev --out docs/evaluation --overwrite

Writes DIR/report.md (tables, plots), DIR/results.json and the plots; with ``--save-set`` also DIR/set/<object>/
(the inputs in the ``z123 reconstruct`` file conventions plus ground truth). Everything is written to a temporary
folder first and moved into place at the end, so a failed run leaves nothing partial.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from z123_ros.errors import InputError, Z123Error
from z123_ros.evaluation.conditions import ConditionsConfig, count_cases, run_conditions
from z123_ros.evaluation.conditions_report import owned_files, write_conditions_report
from z123_ros.evaluation.dataset import EvalSetConfig, iter_eval_set, save_eval_object
from z123_ros.evaluation.report import REPORT_FILES, summary_table, write_report
from z123_ros.evaluation.runner import EvalConfig, evaluate
from z123_ros.io import staged_output

logger = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
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
    p.add_argument("--iou-resolution", type=int, default=None, help="IoU grid side (64; 32 with --conditions/--real)")
    p.add_argument("--depth-noise", type=float, default=0.0, help="Gaussian depth noise of the input views, metres")
    p.add_argument("--no-silhouettes", action="store_true", help="skip the held-out silhouette IoU renders")
    p.add_argument("--save-set", action="store_true", help="also write the evaluation set under DIR/set/")
    _add_conditions_arguments(p)
    p.set_defaults(func=run_eval)


def _add_conditions_arguments(p: argparse.ArgumentParser) -> None:
    c = ConditionsConfig()
    g = p.add_argument_group("conditions benchmark (instead of the paper-style set)")
    g.add_argument(
        "--conditions",
        default=None,
        metavar="SPEC",
        help="condition buckets: all, a comma list of names (clean,range_far,...), random:N, or a mix",
    )
    g.add_argument("--real", default=None, metavar="DIR", help="folder of labelled real frames (ycbv-dev layout)")
    g.add_argument("--seeds", type=int, default=c.seeds_per_bucket, help="scenes per named bucket")
    g.add_argument("--segmenter", default=c.segmenter, help="segmenter under test: a segmentation.method (tabletop)")
    g.add_argument("--seg-baseline", default=c.segmentation_baseline, help="segmentation baseline (open3d, none)")
    g.add_argument("--max-objects", type=int, default=c.max_objects, help="objects reconstructed per frame")
    g.add_argument("--no-segmentation", action="store_true", help="skip the segmentation part")
    g.add_argument("--no-reconstruction", action="store_true", help="skip the reconstruction part")
    g.add_argument("--report-name", default="conditions", help="file stem of the report (NAME.md, NAME.json)")


def _configs(args: argparse.Namespace):
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
        iou_resolution=args.iou_resolution or EvalConfig.iou_resolution,
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


def _conditions_config(args: argparse.Namespace):
    return ConditionsConfig(
        spec=args.conditions or "",
        seeds_per_bucket=args.seeds,
        seed=args.seed,
        real=args.real,
        segmenter=args.segmenter,
        segmentation_baseline=args.seg_baseline,
        backend=args.backend,
        baseline=str(args.baseline or "none"),
        segmentation=not args.no_segmentation,
        reconstruction=not args.no_reconstruction,
        max_objects=args.max_objects,
        iou_resolution=args.iou_resolution or ConditionsConfig.iou_resolution,
    )


def run_conditions_eval(args: argparse.Namespace) -> int:
    """``z123 eval --conditions/--real``: the conditions benchmark, written atomically into ``--out``."""
    out = Path(args.out)
    try:
        config = _conditions_config(args)
        config.check()
        _check_out(out, args.overwrite)
        command = "z123 " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "eval" in sys.argv[1:] else None
        bar = _progress_bar(count_cases(config), unit="frame")
        try:
            # Only the report's own files are replaced: docs/evaluation also holds the paper-style report.
            with staged_output(out, owned_files(args.report_name)) as staging:
                result = run_conditions(config, progress=lambda done, total, name: bar.update(1))
                paths = write_conditions_report(result, staging, command=command, name=args.report_name)
        finally:
            bar.close()
    except Z123Error as exc:
        sys.stderr.write(f"z123 eval: error: {exc}\n")
        return 2
    sys.stdout.write(f"report: {out / paths['markdown'].name}\n")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    """Entry point of ``z123 eval``; returns the exit code."""
    if args.conditions is not None or args.real is not None:
        return run_conditions_eval(args)

    out = Path(args.out)
    try:
        set_config, config = _configs(args)
        set_config.check()
        config.check()
        _check_out(out, args.overwrite)
        command = "z123 " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if "eval" in sys.argv[1:] else None
        # One swap at the end: a killed run leaves the previous report whole (_check_out asked for --overwrite).
        with staged_output(out, (*REPORT_FILES, "set")) as staging:

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
    except Z123Error as exc:
        sys.stderr.write(f"z123 eval: error: {exc}\n")
        return 2
    sys.stdout.write(summary_table(result) + "\n")
    sys.stdout.write(f"report: {out / 'report.md'}\n")
    return 0


def _progress_bar(total: int, unit: str = "object"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="z123 eval", unit=unit, file=sys.stderr)
