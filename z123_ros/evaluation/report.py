"""The evaluation report: Markdown with tables and plots, and the same numbers as JSON."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import numpy as np

from z123_ros.evaluation.runner import EvalConfig, EvalResult

PLOTS = ("per_object_iou.png", "per_object_chamfer.png", "metric_vs_size.png")
#: Every file the report writes (what its output folder's swap may replace; other files there are kept).
REPORT_FILES = ("report.md", "results.json", *PLOTS)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def summary_table(result: EvalResult) -> str:
    """The headline Markdown table: one row per backend."""
    summary = result.summary()
    cfg = result.config
    lines = [
        f"| backend | IoU | Chamfer (mm) | F@{cfg.f_threshold_m * 1000:g}mm | IoU (unit box) | Chamfer (unit box) "
        f"| F@{cfg.f_threshold_unit:g} (unit box) | silhouette IoU | s / object | ok / failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend in cfg.backends():
        s = summary[backend]
        lines.append(
            f"| {backend} | {_fmt(s['iou_mean'])} | {_fmt(s['chamfer_mm_mean'], 2)} | {_fmt(s['f_score_mean'])} "
            f"| {_fmt(s['iou_unit_mean'])} | {_fmt(s['chamfer_unit_mean'], 4)} | {_fmt(s['f_score_unit_mean'])} "
            f"| {_fmt(s['silhouette_iou_mean'])} | {_fmt(s['seconds_mean'], 2)} "
            f"| {int(s['n_ok'])} / {int(s['n_failed'])} |"
        )
    return "\n".join(lines)


def _per_object_table(result: EvalResult) -> str:
    backends = result.config.backends()
    head = "| # | object | size (cm) | visible | polar (deg) | " + " | ".join(
        f"{b} IoU | {b} CD (mm) | {b} F | {b} s" for b in backends
    )
    if any(o.novel_views for o in result.objects):
        head += " | PSNR | SSIM"
    lines = [head + " |", "|" + "---|" * (head.count("|") - 0)]
    for o in result.objects:
        row = f"| {o.index} | {o.name} | {o.size_m * 100:.1f} | {o.visible_fraction:.2f} | {o.input_polar_deg:.0f} | "
        cells = []
        for b in backends:
            s = o.scores[b]
            if s.ok:
                cells.append(f"{_fmt(s.iou)} | {_fmt(s.chamfer_mm, 2)} | {_fmt(s.f_score)} | {_fmt(s.seconds, 2)}")
            else:
                cells.append("failed | failed | failed | n/a")
        row += " | ".join(cells)
        if o.novel_views is not None:
            row += f" | {o.novel_views.psnr:.2f} | {o.novel_views.ssim:.3f}"
        lines.append(row + " |")
    return "\n".join(lines)


def _plots(result: EvalResult, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    backends = result.config.backends()
    names = [o.name for o in result.objects]
    x = np.arange(len(names))
    width = 0.8 / len(backends)
    for metric, label, filename in (
        ("iou", "volumetric IoU (metric, world frame)", PLOTS[0]),
        ("chamfer_mm", "Chamfer distance (mm)", PLOTS[1]),
    ):
        fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.0))
        for i, b in enumerate(backends):
            values = [o.scores[b].__dict__[metric] if o.scores[b].ok else np.nan for o in result.objects]
            ax.bar(x + (i - (len(backends) - 1) / 2) * width, values, width, label=b)
        ax.set_xticks(x, names, rotation=75, ha="right", fontsize=7)
        ax.set_ylabel(label)
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        fig.savefig(out / filename, dpi=110)
        plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0))
    sizes = np.array([o.size_m * 100 for o in result.objects])
    for b in backends:
        iou = np.array([o.scores[b].iou if o.scores[b].ok else np.nan for o in result.objects])
        cd = np.array([o.scores[b].chamfer_mm if o.scores[b].ok else np.nan for o in result.objects])
        axes[0].scatter(sizes, iou, label=b)
        axes[1].scatter(sizes, cd, label=b)
    axes[0].set_ylabel("IoU (metric)")
    axes[1].set_ylabel("Chamfer (mm)")
    for ax in axes:
        ax.set_xlabel("object size: longest side (cm)")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / PLOTS[2], dpi=110)
    plt.close(fig)


def write_report(result: EvalResult, out: str | Path, command: str | None = None) -> dict[str, Path]:
    """Write ``report.md``, ``results.json`` and the plots into ``out`` (which must exist). Returns the paths."""
    out = Path(out)
    _plots(result, out)
    data = result.to_json()
    data["command"] = command
    data["machine"] = {"python": platform.python_version(), "platform": platform.platform(), "cpu": platform.machine()}
    json_path = out / "results.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n")

    lines = _summary_lines(result, command) + _protocol_lines(result.config)
    lines += [
        "## Per object",
        "",
        _per_object_table(result),
        "",
        "## Plots",
        "",
        f"![per-object IoU]({PLOTS[0]})",
        "",
        f"![per-object Chamfer]({PLOTS[1]})",
        "",
        f"![metric vs object size]({PLOTS[2]})",
        "",
    ]
    failures = [(o.name, s) for o in result.objects for s in o.scores.values() if not s.ok]
    if failures:
        lines += ["## Failures", ""] + [f"- {name} / {s.backend}: {s.error}" for name, s in failures] + [""]
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines))
    return {"report": md_path, "json": json_path, **{p: out / p for p in PLOTS}}


def _summary_lines(result: EvalResult, command: str | None) -> list[str]:
    """The report's title, the object set, the command and the summary table with its verdict lines."""
    cfg, set_cfg = result.config, result.set_config
    summary = result.summary()
    nv = summary.get("novel_views")
    lines = [
        f"# Evaluation: `{cfg.backend}`" + (f" vs `{cfg.baseline}`" if cfg.baseline else ""),
        "",
        f"{len(result.objects)} YCB objects (seed {set_cfg.seed}), one robot-like RGB-D input view each "
        f"({set_cfg.width}x{set_cfg.height}, FoV {set_cfg.fov_deg:g} deg, camera {set_cfg.camera_height_range_m[0]:g}-"
        f"{set_cfg.camera_height_range_m[1]:g} m above the table, {set_cfg.camera_distance_range_m[0]:g}-"
        f"{set_cfg.camera_distance_range_m[1]:g} m away), {set_cfg.num_views} held-out views at {set_cfg.view_size}x"
        f"{set_cfg.view_size}, FoV {set_cfg.view_fov_deg:g} deg on white. Total {result.seconds_total:.0f} s.",
        "",
    ]
    if command:
        lines += ["Command:", "", "```", command, "```", ""]
    lines += [
        "## Summary (means over objects)",
        "",
        summary_table(result),
        "",
    ]
    if cfg.baseline and cfg.baseline != cfg.backend:
        s = summary[cfg.backend]
        lines += [
            f"`{cfg.backend}` beats `{cfg.baseline}` on IoU for {_fmt(100 * s['iou_win_rate'], 0)}% of the objects "
            f"and on Chamfer for {_fmt(100 * s['chamfer_win_rate'], 0)}%.",
            "",
        ]
    if nv:
        lines += [
            f"Novel views (model `{cfg.model}`, {cfg.novel_view_steps} DDIM steps, guidance "
            f"{cfg.novel_view_guidance:g}): PSNR {nv['psnr_mean']:.2f} dB, SSIM {nv['ssim_mean']:.3f}, "
            f"{nv['seconds_mean']:.1f} s per object for {set_cfg.num_views} views.",
            "",
        ]
    return lines


def _protocol_lines(cfg: EvalConfig) -> list[str]:
    """How each metric is measured, with the thresholds of this run."""
    return [
        "## Protocols",
        "",
        "- **Metric (world frame)**: the reconstruction, metres in the input camera frame, is moved to the world "
        "(table) frame with `T_cam_from_world` and compared with the scan where it stands. IoU on a "
        f"{cfg.iou_resolution}^3 grid over the union of both bounding boxes (inside = winding number > 0.5), "
        "Chamfer = mean of both nearest-neighbour directions between "
        f"{cfg.num_points} surface samples each, in mm; F-score at {cfg.f_threshold_m * 1000:g} mm. "
        "Scale and placement errors count.",
        "- **Unit box** (the paper's protocol as SyncDreamer reproduces it): each mesh is first normalised to its own "
        "bounding box (centred, longest side 1); Chamfer in unit-box units, F-score at "
        f"{cfg.f_threshold_unit:g}. Scale and placement errors are forgiven.",
        "- **Silhouette IoU**: the reconstruction rendered at the held-out viewpoints vs the ground-truth masks.",
        "- **PSNR / SSIM** (only with a model): generated views vs the held-out renders, both framed like the "
        "model's training data (object centred, longer side 200/256).",
        "- **s / object**: wall time of `reconstruct()` on this machine.",
        "",
    ]
