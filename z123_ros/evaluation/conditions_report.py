"""Per-bucket summaries of a conditions run, and its report: Markdown tables, the same numbers as JSON, plots.

Per bucket and method: median and 10th percentile of each metric (for Chamfer, where lower is better, the 90th
percentile: the worst tenth either way), the counts of the segmentation errors, and the ratio to the baseline of the
same run. Two rows close each table: the mean over the simulated buckets (each bucket weighs the same) and the worst
bucket value of each column.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from scipy.stats import spearmanr

from z123_ros.errors import InputError
from z123_ros.evaluation.conditions import ConditionsConfig, ConditionsResult, ReconstructionRecord, mesh_metrics
from z123_ros.evaluation.segmentation import summarise_frames
from z123_ros.sim.objects import load_object_mesh

#: Plot file suffixes; each file is ``<report name>_<suffix>``.
PLOTS = ("vs_range.png", "vs_elevation.png", "vs_sensor.png")


def plot_names(name: str) -> list[str]:
    return [f"{name}_{p}" for p in PLOTS]


def owned_files(name: str) -> tuple[str, ...]:
    """The files :func:`write_conditions_report` writes for report ``name`` (the rest of its folder is kept)."""
    return (f"{name}.md", f"{name}.json", *plot_names(name), f"{name}_unlabelled.png")


def _q(values: list[float], q: float) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.quantile(finite, q)) if finite else math.nan


def summarise_reconstruction(records: list[ReconstructionRecord]) -> dict[str, float]:
    """Median / 10th (Chamfer: 90th) percentile of one backend's records. A failed reconstruction scores IoU 0 and
    F 0 (for a robot it is the worst outcome) and no Chamfer; ``failed`` counts them."""
    iou = [r.iou if r.ok else 0.0 for r in records]
    f = [r.f_score if r.ok else 0.0 for r in records]
    cd = [r.chamfer_mm for r in records if r.ok]
    seconds = [r.seconds for r in records]
    return {
        "objects": len(records),
        "failed": sum(not r.ok for r in records),
        "fragmented": sum(r.ok and r.components > 1 for r in records),
        "iou_mean": float(np.mean(iou)) if iou else math.nan,
        "iou_median": _q(iou, 0.5),
        "iou_p10": _q(iou, 0.1),
        "chamfer_mm_mean": float(np.mean(cd)) if cd else math.nan,
        "chamfer_mm_median": _q(cd, 0.5),
        "chamfer_mm_p90": _q(cd, 0.9),
        "f_score_mean": float(np.mean(f)) if f else math.nan,
        "f_score_median": _q(f, 0.5),
        "f_score_p10": _q(f, 0.1),
        "seconds_median": _q(seconds, 0.5),
        "seconds_max": max((s for s in seconds if math.isfinite(s)), default=math.nan),
    }


#: Thin-walled open containers (YCB names or prefixes): their IoU on a 32^3 grid is limited by walls of 1-2 mm, so
#: the pooled figures are also given without them.
THIN_SHELLS = ("024_bowl", "025_mug", "065-")

#: Confidence a user would trust a reconstruction at (result.json's ``confidence``): the report gives the IoU of the
#: objects on either side of it.
TRUST_CONFIDENCE = 0.5


def _thin_shell(record: ReconstructionRecord) -> bool:
    return record.object.startswith(THIN_SHELLS)


#: Errors the thin-shell ceiling applies to the exact mesh: shifts along each of its axes (mm) and scalings about
#: its box centre. A depth sensor's noise at 0.5-1 m is millimetres (the sensor presets), so these are errors no
#: single-view reconstruction can be expected to beat.
CEILING_SHIFTS_MM = (0.5, 1.0, 2.0)
CEILING_SCALES = (0.99, 1.01)


def shell_ceiling(mesh: trimesh.Trimesh, config: ConditionsConfig) -> dict[str, float]:
    """What the IoU can show for a thin shell: the exact mesh scored against itself after small errors, with the
    benchmark's own metric (``mesh_metrics``). ``wall_mm``: the mean wall thickness, 2 x volume / area (a shell's
    area counts both faces; NaN where the signed volume is not positive); ``iou_shift_<d>mm``: IoU of the mesh
    shifted by d mm, the mean over its three axes; ``iou_scale_1pct``: the mean IoU of the mesh scaled by 0.99 and
    1.01 about its box centre. A wall a few voxels thin flickers in and out of the grid's cell centres, so these
    fall fast with the error."""
    # The scans have small holes (not watertight): their signed volume is still near the enclosed one, but a
    # negative one means the surface is open or inside out, and then there is no thickness to read.
    volume = float(mesh.volume)
    out = {"wall_mm": 2e3 * volume / mesh.area if volume > 0 and mesh.area > 0 else math.nan}
    for shift in CEILING_SHIFTS_MM:
        ious = []
        for axis in np.eye(3):
            moved = mesh.copy()
            moved.apply_translation(axis * shift * 1e-3)
            ious.append(mesh_metrics(moved, mesh, config)["iou"])
        out[f"iou_shift_{shift:g}mm"] = float(np.mean(ious))
    scaled = []
    for factor in CEILING_SCALES:
        centre = mesh.bounds.mean(axis=0)
        moved = mesh.copy()
        moved.apply_transform(trimesh.transformations.scale_matrix(factor, centre))
        scaled.append(mesh_metrics(moved, mesh, config)["iou"])
    out["iou_scale_1pct"] = float(np.mean(scaled))
    return out


def shell_ceilings(result: ConditionsResult) -> dict[str, dict[str, float]]:
    """:func:`shell_ceiling` of every thin-shell object of the run (by name; the simulator's mesh of it, where the
    simulator has one)."""
    out = {}
    for name in sorted({r.object for r in result.reconstruction if _thin_shell(r)}):
        try:
            out[name] = shell_ceiling(load_object_mesh(name), result.config)
        except InputError:
            continue  # a real frame's object the simulator does not know: no ceiling to show
    return out


def confidence_tracking(records: list[ReconstructionRecord]) -> dict[str, float]:
    """How well the reported confidence tracks the real error over ``records`` (one backend): the Spearman rank
    correlation of confidence and IoU, and the mean IoU / count of the objects at or above ``TRUST_CONFIDENCE`` and
    below it. Failures score IoU 0 at confidence 0."""
    conf = np.array([r.confidence if r.ok and math.isfinite(r.confidence) else 0.0 for r in records])
    iou = np.array([r.iou if r.ok else 0.0 for r in records])
    trusted = conf >= TRUST_CONFIDENCE
    rank = float(spearmanr(conf, iou)[0]) if len(records) > 2 and np.ptp(conf) > 0 and np.ptp(iou) > 0 else math.nan
    return {
        "spearman": rank,
        "trusted": int(trusted.sum()),
        "trusted_iou_mean": float(iou[trusted].mean()) if trusted.any() else math.nan,
        "untrusted": int((~trusted).sum()),
        "untrusted_iou_mean": float(iou[~trusted].mean()) if (~trusted).any() else math.nan,
    }


def pooled_summaries(result: ConditionsResult) -> dict[str, dict[str, Any]]:
    """backend -> pooled figures over objects (every simulated object weighs the same, unlike the bucket means):
    ``sim`` (every simulated object), ``sim_solid`` (without the thin shells), ``thin_sim`` / ``thin_all`` (the thin
    shells alone, simulated / with the real frames'), ``real``, each a :func:`summarise_reconstruction`; and
    ``confidence`` (:func:`confidence_tracking` over the simulated objects) and ``confidence_all`` (real too)."""
    out: dict[str, dict[str, Any]] = {}
    for backend in result.config.backends():
        mine = [r for r in result.reconstruction if r.backend == backend]
        sim = [r for r in mine if not r.bucket.startswith("real:")]
        out[backend] = {
            "sim": summarise_reconstruction(sim),
            "sim_solid": summarise_reconstruction([r for r in sim if not _thin_shell(r)]),
            "thin_sim": summarise_reconstruction([r for r in sim if _thin_shell(r)]),
            "thin_all": summarise_reconstruction([r for r in mine if _thin_shell(r)]),
            "real": summarise_reconstruction([r for r in mine if r.bucket.startswith("real:")]),
            "confidence": confidence_tracking(sim),
            "confidence_all": confidence_tracking(mine),
        }
    return out


def _ceiling_section(ceilings: dict[str, dict[str, float]], pooled: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown: what the IoU can show for each thin shell (:func:`shell_ceiling`), and the shells' surface errors."""
    if not ceilings:
        return []
    shifts = " / ".join(f"{d:g}" for d in CEILING_SHIFTS_MM)
    lines = [
        "### Thin shells: what the IoU can show",
        "",
        "The exact ground-truth mesh scored against itself after an error a depth sensor's noise makes likely, with "
        "this benchmark's metric: shifted along each axis, scaled by 1 %. A thin shell's IoU is bounded by these, "
        "whatever the reconstruction; its Chamfer and F-score are not.",
        "",
        f"| object | wall (mm, 2 V / A) | IoU shifted {shifts} mm | IoU scaled 1 % |",
        "|---|---|---|---|",
    ]
    for name, c in ceilings.items():
        shifted = " / ".join(_fmt(c[f"iou_shift_{d:g}mm"]) for d in CEILING_SHIFTS_MM)
        lines.append(f"| {name} | {_fmt(c['wall_mm'], 1)} | {shifted} | {_fmt(c['iou_scale_1pct'])} |")
    lines += [
        "",
        "| backend | thin shells, sim + real: n | IoU median | CD median (mm) | F@5 median |",
        "|---|---|---|---|---|",
    ]
    for backend, p in pooled.items():
        t = p["thin_all"]
        lines.append(
            f"| {backend} | {t['objects']} | {_fmt(t['iou_median'])} | {_fmt(t['chamfer_mm_median'], 2)} "
            f"| {_fmt(t['f_score_median'])} |"
        )
    return lines + [""]


def _pooled_section(pooled: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown: pooled figures per backend, and how the confidence tracks the error."""
    lines = [
        "## Pooled over objects",
        "",
        "Every object weighs the same (the bucket tables above weigh every bucket the same). Thin shells: bowls, "
        "mugs, cups (walls of 1-2 mm on a 32^3 grid).",
        "",
        "| backend | objects | IoU mean | CD mean (mm) | F@5 mean | without thin shells: n / IoU / CD / F@5 "
        "| thin shells IoU med: sim (n) / with real (n) | real: n / IoU mean / CD mean | frag | s med / max |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for backend, p in pooled.items():
        sim, solid, real = p["sim"], p["sim_solid"], p["real"]
        lines.append(
            f"| {backend} | {sim['objects']} | {_fmt(sim['iou_mean'])} | {_fmt(sim['chamfer_mm_mean'], 2)} "
            f"| {_fmt(sim['f_score_mean'])} | {solid['objects']} / {_fmt(solid['iou_mean'])} / "
            f"{_fmt(solid['chamfer_mm_mean'], 2)} / {_fmt(solid['f_score_mean'])} "
            f"| {_fmt(p['thin_sim']['iou_median'])} ({p['thin_sim']['objects']}) / "
            f"{_fmt(p['thin_all']['iou_median'])} ({p['thin_all']['objects']}) "
            f"| {real['objects']} / {_fmt(real['iou_mean'])} / {_fmt(real['chamfer_mm_mean'], 2)} "
            f"| {sim['fragmented'] + real['fragmented']} "
            f"| {_fmt(sim['seconds_median'], 2)} / {_fmt(max(sim['seconds_max'], real['seconds_max']), 2)} |"
        )
    lines += [
        "",
        f"Confidence vs error: Spearman rank correlation of the reported confidence and the IoU, and the mean IoU of "
        f"the objects reported at confidence >= {TRUST_CONFIDENCE:g} and below (a failure counts as IoU 0 at "
        "confidence 0).",
        "",
        "| backend | objects | rank corr. sim | rank corr. sim + real | conf >= "
        f"{TRUST_CONFIDENCE:g}: n / IoU mean | conf < {TRUST_CONFIDENCE:g}: n / IoU mean |",
        "|---|---|---|---|---|---|",
    ]
    for backend, p in pooled.items():
        c = p["confidence"]
        lines.append(
            f"| {backend} | {p['sim']['objects']} | {_fmt(c['spearman'])} | {_fmt(p['confidence_all']['spearman'])} "
            f"| {c['trusted']} / {_fmt(c['trusted_iou_mean'])} | {c['untrusted']} / {_fmt(c['untrusted_iou_mean'])} |"
        )
    return lines + [""]


def _win_rate(records: list[ReconstructionRecord], backend: str, baseline: str) -> float:
    by_key: dict[tuple[str, str], dict[str, ReconstructionRecord]] = {}
    for r in records:
        by_key.setdefault((r.case, r.object), {})[r.backend] = r
    wins = [
        (pair[backend].iou if pair[backend].ok else 0.0) > (pair[baseline].iou if pair[baseline].ok else 0.0)
        for pair in by_key.values()
        if backend in pair and baseline in pair
    ]
    return float(np.mean(wins)) if wins else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b != 0 else math.nan


def bucket_summaries(result: ConditionsResult) -> dict[str, dict[str, Any]]:
    """bucket -> {"segmentation": {method: summary}, "reconstruction": {backend: summary}, ratios, win rate}."""
    cfg = result.config
    buckets = list(dict.fromkeys(c.split("/")[0] for c in result.cases))
    out: dict[str, dict[str, Any]] = {}
    for bucket in buckets:
        seg = {
            m: summarise_frames(r.score for r in result.segmentation if r.bucket == bucket and r.method == m)
            for m in cfg.segmenters()
        }
        rec = {
            b: summarise_reconstruction([r for r in result.reconstruction if r.bucket == bucket and r.backend == b])
            for b in cfg.backends()
        }
        entry: dict[str, Any] = {"segmentation": seg, "reconstruction": rec}
        if len(seg) == 2:
            ours, base = (seg[m] for m in cfg.segmenters())
            entry["segmentation_iou_ratio"] = _ratio(ours["iou_mean"], base["iou_mean"])
        if len(rec) == 2:
            ours, base = (rec[b] for b in cfg.backends())
            entry["reconstruction_iou_ratio"] = _ratio(ours["iou_median"], base["iou_median"])
            entry["reconstruction_chamfer_ratio"] = _ratio(ours["chamfer_mm_median"], base["chamfer_mm_median"])
            bucket_records = [r for r in result.reconstruction if r.bucket == bucket]
            entry["win_rate"] = _win_rate(bucket_records, *cfg.backends())
        out[bucket] = entry
    return out


# ----------------------------------------------------------------------------------------------------------------
# Markdown


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


#: (header, getter over a bucket entry, digits, lower_is_better)
Column = tuple[str, Callable[[dict], Any], int, bool]


def _seg_columns(methods: list[str]) -> list[Column]:
    cols: list[Column] = []
    for m in methods:
        cols += [
            (f"{m} IoU mean", lambda e, m=m: e["segmentation"][m]["iou_mean"], 3, False),
            (f"{m} IoU med", lambda e, m=m: e["segmentation"][m]["iou_median"], 3, False),
            (f"{m} IoU p10", lambda e, m=m: e["segmentation"][m]["iou_p10"], 3, False),
            (f"{m} found", lambda e, m=m: e["segmentation"][m]["found_rate"], 2, False),
            (f"{m} missed", lambda e, m=m: e["segmentation"][m]["missed"], 0, True),
            (f"{m} frag", lambda e, m=m: e["segmentation"][m]["fragments"], 0, True),
            (f"{m} merged", lambda e, m=m: e["segmentation"][m]["merged"], 0, True),
            (f"{m} FP", lambda e, m=m: e["segmentation"][m]["false_positives"], 0, True),
            (f"{m} ms", lambda e, m=m: e["segmentation"][m]["ms_median"], 0, True),
        ]
    if len(methods) == 2:
        cols.append(("IoU ratio", lambda e: e.get("segmentation_iou_ratio", math.nan), 2, False))
    return cols


def _rec_columns(backends: list[str]) -> list[Column]:
    cols: list[Column] = []
    for b in backends:
        cols += [
            (f"{b} IoU med", lambda e, b=b: e["reconstruction"][b]["iou_median"], 3, False),
            (f"{b} IoU p10", lambda e, b=b: e["reconstruction"][b]["iou_p10"], 3, False),
            (f"{b} CD med (mm)", lambda e, b=b: e["reconstruction"][b]["chamfer_mm_median"], 1, True),
            (f"{b} CD p90 (mm)", lambda e, b=b: e["reconstruction"][b]["chamfer_mm_p90"], 1, True),
            (f"{b} F@5 med", lambda e, b=b: e["reconstruction"][b]["f_score_median"], 3, False),
            (f"{b} F@5 p10", lambda e, b=b: e["reconstruction"][b]["f_score_p10"], 3, False),
            (f"{b} s med", lambda e, b=b: e["reconstruction"][b]["seconds_median"], 2, True),
            (f"{b} s max", lambda e, b=b: e["reconstruction"][b]["seconds_max"], 2, True),
            (f"{b} frag", lambda e, b=b: e["reconstruction"][b]["fragmented"], 0, True),
            (f"{b} fail", lambda e, b=b: e["reconstruction"][b]["failed"], 0, True),
        ]
    if len(backends) == 2:
        cols += [
            ("beats hull" if backends[1] == "hull" else "win rate", lambda e: e.get("win_rate", math.nan), 2, False),
            ("IoU ratio", lambda e: e.get("reconstruction_iou_ratio", math.nan), 2, False),
            ("CD ratio", lambda e: e.get("reconstruction_chamfer_ratio", math.nan), 2, True),
        ]
    return cols


def _numeric(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _table(summaries: dict[str, dict], columns: list[Column], count: Callable[[dict], Any]) -> list[str]:
    lines = ["| bucket | n | " + " | ".join(c[0] for c in columns) + " |", "|---" * (len(columns) + 2) + "|"]
    sim = {b: e for b, e in summaries.items() if not b.startswith("real:")}
    for bucket, entry in summaries.items():
        cells = [_fmt(getter(entry), digits) for _, getter, digits, _ in columns]
        lines.append(f"| {bucket} | {count(entry)} | " + " | ".join(cells) + " |")
    if len(sim) > 1:
        mean_cells, worst_cells = [], []
        for header, getter, digits, lower in columns:
            values = [_numeric(getter(e)) for e in sim.values()]
            finite = [v for v in values if math.isfinite(v)]
            # Ratios: the median over buckets (one bucket where the baseline collapses would dominate a mean).
            centre = np.median if header.endswith("ratio") else np.mean
            mean_cells.append(_fmt(float(centre(finite)) if finite else math.nan, max(digits, 1)))
            if finite:
                worst = max(finite) if lower else min(finite)
                name = [b for b, v in zip(sim, values, strict=True) if v == worst][0]
                worst_cells.append(f"{_fmt(worst, digits)} ({name})")
            else:
                worst_cells.append("n/a")
        lines.append("| **mean over sim buckets** (ratios: median) | | " + " | ".join(mean_cells) + " |")
        lines.append("| **worst sim bucket** | | " + " | ".join(worst_cells) + " |")
    return lines


def _machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_avg_1_5_15": [round(v, 2) for v in os.getloadavg()],
    }


def _markdown(
    result: ConditionsResult,
    summaries: dict,
    pooled: dict,
    ceilings: dict,
    command: str | None,
    machine: dict,
    name: str,
) -> str:
    cfg = result.config
    methods, backends = cfg.segmenters(), cfg.backends()
    lines = [
        "# Conditions benchmark",
        "",
        f"{len(result.cases)} frames ({cfg.seeds_per_bucket} seeded scenes per named bucket, seed {cfg.seed}"
        + (f"; real frames from `{Path(cfg.real).name}`" if cfg.real else "")
        + f"), {result.seconds_total:.0f} s in total on {machine['cpus']} CPUs, load average "
        f"{machine['load_avg_1_5_15'][0]:g} / {machine['load_avg_1_5_15'][1]:g} at the end (a shared machine: the "
        "timings are upper bounds).",
        "",
    ]
    if command:
        lines += ["Regenerate with:", "", "```", command, "```", ""]
    if methods:
        lines += [
            f"## Segmentation: `{methods[0]}`" + (f" vs the `{methods[1]}` baseline" if len(methods) > 1 else ""),
            "",
            f"IoU per ground-truth object at least {cfg.min_visible:.0%} visible, matched one-to-one (Hungarian); "
            "found = IoU >= 0.5 (fraction of those objects), missed = how many were not; frag = extra pieces inside "
            "a matched object; merged = masks holding two objects; FP = masks on no object; ms = median wall time "
            "per frame; IoU ratio = mean IoU over the baseline's.",
            "",
        ]
        lines += _table(summaries, _seg_columns(methods), lambda e: e["segmentation"][methods[0]]["objects"])
        lines.append("")
    if backends:
        lines += [
            f"## Reconstruction: `{backends[0]}`" + (f" vs `{backends[1]}`" if len(backends) > 1 else ""),
            "",
            f"Each object reconstructed from its ground-truth mask (at most {cfg.max_objects} per frame, the most "
            f"visible first), scored against the ground-truth mesh in the camera frame: volumetric IoU on a "
            f"{cfg.iou_resolution}^3 grid over both bounding boxes, Chamfer (mean of both directions, "
            f"{cfg.num_points} samples) in mm, F-score at {cfg.f_threshold_m * 1e3:g} mm. p10 = 10th percentile, "
            "CD p90 = 90th percentile (the worst tenth). A failure scores IoU 0 and F 0. frag = meshes of more "
            "than one component, fail = failures. Simulated frames give the camera pose; real frames do not.",
            "",
        ]
        lines += _table(summaries, _rec_columns(backends), lambda e: e["reconstruction"][backends[0]]["objects"])
        lines.append("")
        lines += _pooled_section(pooled)
        lines += _ceiling_section(ceilings, pooled)
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plot_names(name)] + [""]
    if result.unlabelled:
        lines += _unlabelled_section(result, name)
    errors = [(r.case, r.object, r.backend, r.error) for r in result.reconstruction if not r.ok]
    errors += [(r.case, "-", r.method, r.error) for r in result.segmentation if r.error]
    if errors:
        lines += ["## Failures", ""] + [f"- {c} / {o} / {m}: {e}" for c, o, m, e in errors[:50]] + [""]
    return "\n".join(lines)


def _unlabelled_section(result: ConditionsResult, name: str) -> list[str]:
    methods = list(result.unlabelled[0].labels)
    lines = [
        "## Real frames without labels (a look, not a score)",
        "",
        "Objects each segmenter reports; the picture shows its masks over the frame (does it find the objects, and "
        "nothing of the carpet or the furniture?).",
        "",
        "| frame | " + " | ".join(f"{m} objects | {m} ms" for m in methods) + " |",
        "|---" * (1 + 2 * len(methods)) + "|",
    ]
    for r in result.unlabelled:
        cells = [f"{r.objects(m)} | {1e3 * r.seconds[m]:.0f}" for m in methods]
        lines.append(f"| {r.case} | " + " | ".join(cells) + " |")
    return [*lines, "", f"![unlabelled frames]({name}_unlabelled.png)", ""]


def _overlay(rgb: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Masks in distinct colours over a dimmed frame."""
    palette = np.random.default_rng(0).integers(40, 255, size=(int(labels.max()) + 1, 3))
    out = (0.45 * rgb).astype(np.uint8)
    hit = labels > 0
    out[hit] = (0.35 * rgb[hit] + 0.65 * palette[labels[hit]]).astype(np.uint8)
    return out


def _unlabelled_plot(result: ConditionsResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    methods = list(result.unlabelled[0].labels)
    rows = len(result.unlabelled)
    fig, axes = plt.subplots(rows, 1 + len(methods), figsize=(3.2 * (1 + len(methods)), 2.5 * rows), squeeze=False)
    for r, record in enumerate(result.unlabelled):
        panels = [("frame", record.rgb)] + [(m, _overlay(record.rgb, record.labels[m])) for m in methods]
        for c, (title, image) in enumerate(panels):
            axes[r, c].imshow(image[::2, ::2])
            axes[r, c].set_axis_off()
            label = title if title == "frame" else f"{title}: {record.objects(title)} objects"
            axes[r, c].set_title(f"{record.case.split('/')[-1]} {label}" if c == 0 else label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# Plots


def _per_object_points(result: ConditionsResult, key: str) -> dict[str, tuple[list[float], list[float]]]:
    """method/backend -> (x values, IoU values) per object, x = range or elevation."""
    out: dict[str, tuple[list[float], list[float]]] = {}
    for r in result.segmentation:
        lookup = r.object_range_m if key == "range" else r.object_elevation_deg
        xs, ys = out.setdefault(f"segmentation: {r.method}", ([], []))
        for o in r.score.evaluated:
            xs.append(lookup.get(o.gt_id, math.nan))
            ys.append(o.iou)
    for r in result.reconstruction:
        xs, ys = out.setdefault(f"reconstruction: {r.backend}", ([], []))
        xs.append(r.range_m if key == "range" else r.elevation_deg)
        ys.append(r.iou if r.ok else 0.0)
    return out


def _scatter_plot(result: ConditionsResult, key: str, xlabel: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.0), sharey=True)
    for label, (xs, ys) in _per_object_points(result, key).items():
        ax = axes[0] if label.startswith("segmentation") else axes[1]
        ax.scatter(xs, ys, s=12, alpha=0.6, label=label.split(": ")[1])
    for ax, title in zip(axes, ("segmentation mask IoU", "reconstruction volumetric IoU"), strict=True):
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
    axes[0].set_ylabel("IoU per object")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _sensor_plot(result: ConditionsResult, path: Path) -> None:
    import matplotlib.pyplot as plt

    groups: dict[str, dict[str, list[float]]] = {}
    for r in result.segmentation:
        groups.setdefault(r.sensor, {}).setdefault(f"seg {r.method}", []).extend(o.iou for o in r.score.evaluated)
    for r in result.reconstruction:
        groups.setdefault(r.sensor, {}).setdefault(f"rec {r.backend}", []).append(r.iou if r.ok else 0.0)
    sensors = sorted(groups)
    series = list(dict.fromkeys(k for g in groups.values() for k in g))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(sensors) + 2), 4.0))
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        medians = [_q(groups[s].get(name, []), 0.5) for s in sensors]
        ax.bar(np.arange(len(sensors)) + (i - (len(series) - 1) / 2) * width, medians, width, label=name)
    ax.set_xticks(np.arange(len(sensors)), sensors)
    ax.set_ylabel("median IoU per object")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_conditions_report(
    result: ConditionsResult, out: str | os.PathLike, command: str | None = None, name: str = "conditions"
) -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.json`` and the plots into the existing folder ``out``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out)
    summaries, pooled, ceilings = bucket_summaries(result), pooled_summaries(result), shell_ceilings(result)
    machine = _machine()
    plots = [out / p for p in plot_names(name)]
    _scatter_plot(result, "range", "range: camera to object centre (m)", plots[0])
    _scatter_plot(result, "elevation", "camera elevation over the table seen from the object (deg)", plots[1])
    _sensor_plot(result, plots[2])
    if result.unlabelled:
        _unlabelled_plot(result, out / f"{name}_unlabelled.png")
    data = {
        "command": command,
        "machine": machine,
        "config": _jsonable(result.config),
        "seconds_total": result.seconds_total,
        "buckets": _jsonable(summaries),
        "pooled": _jsonable(pooled),
        "thin_shell_ceilings": ceilings,
        "segmentation": _jsonable(result.segmentation),
        "reconstruction": _jsonable(result.reconstruction),
        "unlabelled": [{"case": r.case, "objects": {m: r.objects(m) for m in r.labels}} for r in result.unlabelled],
    }
    paths = {"markdown": out / f"{name}.md", "json": out / f"{name}.json", **{p.name: p for p in plots}}
    paths["json"].write_text(json.dumps(data, indent=1) + "\n")
    paths["markdown"].write_text(_markdown(result, summaries, pooled, ceilings, command, machine, name))
    return paths
