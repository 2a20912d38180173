"""Thin open shells (bowl, cups, mug) seen alone on the table: the dev sweep of issue 15's hollow-object goal.

Seeded single-object views, not the conditions benchmark's frames: per seed, each shell from a range drawn in
0.35-1.2 m and an elevation in 20-75 deg (any azimuth), the sensor preset cycling through ideal, structured light and
active stereo; 640x480. The ``depth`` backend and the hull baseline side by side, scored as the conditions benchmark
scores (z123_ros.evaluation.conditions.mesh_metrics: 32^3 IoU over both boxes, Chamfer, F@5mm). Seeds 200-205 were
the development set of the revolved walls (reconstruction/hollow.py); 300-305 were held out.

    python bench/bench_shells.py [--seeds 200-205] [--json FILE]

``--floor`` instead scores, for each view through a noisy sensor preset, the exact ground truth moved by the errors
the frame's sensor made everywhere (the depth image's misregistration against the colour image, found against the
exact depth to the pixel, and its depth scale): what a reconstruction that is perfect in the sensor's own frame
would score with the benchmark's metric (issue 15's thin-shell floor; no reconstruction is run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests._reconstruction_helpers import single_shell_view  # noqa: E402
from z123_ros.evaluation.conditions import ConditionsConfig, mesh_metrics  # noqa: E402
from z123_ros.reconstruction import reconstruct  # noqa: E402
from z123_ros.sim import SceneConfig, render_tabletop_scene  # noqa: E402

SHELLS = ("024_bowl", "025_mug", "065-a_cups")
SENSORS = ("ideal", "structured_light", "active_stereo")


def views(seeds):
    """The seeded views: (seed, shell, range, elevation, azimuth, sensor)."""
    for seed in seeds:
        for k, name in enumerate(SHELLS):
            rng = np.random.default_rng([seed, k, 15])
            yield {
                "seed": seed,
                "name": name,
                "range_m": float(rng.uniform(0.35, 1.2)),
                "elev": float(rng.uniform(20.0, 75.0)),
                "az": float(rng.uniform(0.0, 360.0)),
                "sensor": SENSORS[(seed + k) % 3],
            }


def _scene(view):
    config = SceneConfig(
        seed=view["seed"], num_objects=1, object_names=(view["name"],), width=640, height=480,
        camera_range_m=view["range_m"], camera_elevation_deg=view["elev"], camera_azimuth_deg=view["az"],
        sensor=view["sensor"], compute_visible_fraction=False,
    )  # fmt: skip
    return render_tabletop_scene(config)


def render(view):
    """(input, ground truth in the camera frame) of one view (tests/_reconstruction_helpers.single_shell_view)."""
    return single_shell_view(
        view["name"], view["sensor"], view["seed"], view["range_m"], view["elev"], azimuth_deg=view["az"]
    )


def run(seeds, backends):
    """One record per view and backend; views without depth inside the mask (every backend refuses them) skipped."""
    config, rows = ConditionsConfig(), []
    for view in views(seeds):
        inp, gt = render(view)
        if not np.any(np.nan_to_num(inp.depth_m[inp.mask]) > 0):
            print(f"skipped (no depth in the mask): {view}")
            continue
        for backend in backends:
            t0 = time.perf_counter()
            result = reconstruct(inp, backend)
            seconds = time.perf_counter() - t0
            pred = trimesh.Trimesh(
                np.asarray(result.vertices, float), np.asarray(result.faces, np.int64), process=False
            )
            m = mesh_metrics(pred, gt, config)
            pieces = len(trimesh.graph.connected_components(pred.face_adjacency, nodes=np.arange(len(pred.faces))))
            rows.append({**view, "backend": backend, "iou": m["iou"], "chamfer_mm": 1e3 * m["chamfer"],
                         "f_score": m["f_score"], "seconds": seconds, "pieces": pieces,
                         "prior": result.info.get("prior", ""), "confidence": float(result.confidence)})  # fmt: skip
    return rows


def sensor_error(depth: np.ndarray, depth_true: np.ndarray, reach: int = 2) -> tuple[int, int, float]:
    """(dx, dy, scale): the whole-pixel shift of the measured depth image against the exact one (measured(u) =
    exact(u - (dx, dy))) that leaves the fewest pixels more than 1 cm apart, and the median measured / exact depth
    ratio at that shift."""
    best = None
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            moved = np.roll(depth_true, (dy, dx), axis=(0, 1))
            both = np.isfinite(depth) & np.isfinite(moved)
            apart = float(np.mean(np.abs(depth[both] - moved[both]) > 0.01))
            if best is None or apart < best[0]:
                best = (apart, dx, dy, float(np.median(depth[both] / moved[both])))
    return best[1], best[2], best[3]


def floor(seeds):
    """The ground truth moved by each noisy view's sensor error (see the module docstring), scored against itself."""
    config, ious = ConditionsConfig(), {}
    for view in views(seeds):
        if view["sensor"] == "ideal":
            continue
        scene = _scene(view)
        if not np.any(np.nan_to_num(scene.depth_m[scene.instance_ids == scene.objects[0].id]) > 0):
            continue  # skipped by the benchmark too
        gt = scene.objects[0].mesh_world.copy()
        gt.apply_transform(scene.T_cam_from_world)
        dx, dy, scale = sensor_error(scene.depth_m, scene.depth_true_m)
        # A pixel's depth seen one pixel over lies on this pixel's ray: the surface moved by range / f per pixel.
        z, f = float(np.median(gt.vertices[:, 2])), scene.intrinsics.fx
        moved = trimesh.Trimesh((gt.vertices + [z * dx / f, z * dy / f, 0.0]) * scale, gt.faces, process=False)
        iou = mesh_metrics(moved, gt, config)["iou"]
        ious.setdefault(view["name"], []).append(iou)
        print(
            f"{view['seed']} {view['name']:10s} {view['sensor']:16s} {view['range_m']:.2f} m: shift ({dx}, {dy}) px ="
            f" {1e3 * z * np.hypot(dx, dy) / f:.2f} mm, depth scale {1e3 * (scale - 1):+.2f}e-3, IoU {iou:.3f}"
        )
    for name, values in ious.items():
        print(f"  {name:12s} floor IoU median {np.median(values):.3f} min {min(values):.3f} max {max(values):.3f}")


def summary(rows):
    for backend in sorted({r["backend"] for r in rows}):
        rs = [r for r in rows if r["backend"] == backend]
        iou = [r["iou"] for r in rs]
        print(
            f"{backend}: n={len(rs)} IoU median {np.median(iou):.3f} p10 {np.percentile(iou, 10):.3f} mean "
            f"{np.mean(iou):.3f}, Chamfer median {np.median([r['chamfer_mm'] for r in rs]):.2f} mm, F@5mm median "
            f"{np.median([r['f_score'] for r in rs]):.3f}, s/object median {np.median([r['seconds'] for r in rs]):.2f}"
            f" max {max(r['seconds'] for r in rs):.2f}, meshes in pieces {sum(r['pieces'] > 1 for r in rs)}"
        )
        for name in SHELLS:
            print(f"  {name:12s} IoU " + " ".join(f"{r['iou']:.2f}" for r in rs if r["name"] == name))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="200-205", help="first-last seed (inclusive)")
    parser.add_argument("--backends", default="depth,hull")
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--floor", action="store_true", help="the ground truth moved by each noisy view's sensor error")
    args = parser.parse_args()
    first, last = (int(s) for s in args.seeds.split("-"))
    if args.floor:
        floor(range(first, last + 1))
        return
    rows = run(range(first, last + 1), args.backends.split(","))
    summary(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
