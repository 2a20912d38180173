"""CPU time of the depth backend per object, in process, on the objects of bench_node.py's scenes (segmented and
tracked as the node does, with the node's reconstruction settings); a hash of the outputs, for checking that a
speed-up leaves them identical; and the conditions benchmark's objects scored as the backend makes them and as the
node publishes them (simplified to its max_mesh_faces).

    python bench/profile_objects.py                          # scenes 0-4 (bench_node's; --quick runs 0-2)
    python bench/profile_objects.py --repeat 3 --cprofile 2  # min CPU of 3 runs; cProfile of the 2 slowest objects
    python bench/profile_objects.py --hash out.json          # + the conditions benchmark's objects (depth backend)
    python bench/profile_objects.py --compare old.json new.json
    python bench/profile_objects.py --score rows.json [--faces 30000]

One object at a time in this process (no pool, no Ray): the CPU seconds are the work itself. Run niced on a shared
machine; CPU time moves less with load than wall time, but not nothing (caches, frequency).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import os
import pstats
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_node  # noqa: E402  (puts the repository and tests/ on sys.path)

from z123_ros.reconstruction import reconstruct  # noqa: E402
from z123_ros.segmentation import ObjectTracker, SegmentationConfig, TabletopSegmenter, TrackerConfig  # noqa: E402

REAL = Path("/work/shared/data/real")


def node_objects(scenes: int) -> list[tuple[str, object]]:
    """(label, input) of every object of bench_node's first ``scenes`` scenes."""
    segmenter, tracker, out = TabletopSegmenter(SegmentationConfig()), ObjectTracker(TrackerConfig()), []
    for s, scene in enumerate(bench_node._scenes(quick=False)[:scenes]):
        for k, inp in enumerate(bench_node.object_inputs(scene, segmenter, tracker)):
            out.append((f"node scene {s} object {k} ({np.count_nonzero(inp.mask)} px)", inp))
    return out


def conditions_objects(seeds: int) -> list[tuple[str, object]]:
    """(label, input) of the conditions benchmark's reconstructed objects (every bucket, ``seeds`` seeds, the real
    frames when present)."""
    from z123_ros.evaluation.conditions import ConditionsConfig, case_inputs, iter_cases

    config = ConditionsConfig(seeds_per_bucket=seeds, real=str(REAL) if REAL.is_dir() else None, segmentation=False)
    return [(f"{case.name} {obj.name}", inp) for case in iter_cases(config) for obj, inp in case_inputs(case, config)]


def score(seeds: int, max_faces: int, out: Path) -> None:
    """The conditions benchmark's objects (default settings, as the benchmark runs them) scored as the benchmark
    scores them, the backend's mesh and the mesh the node publishes (simplified to ``max_faces``); one JSON row
    per object in ``out``, and the thin shells' median IoU and the pooled means of both printed."""
    import trimesh

    from z123_ros.evaluation.conditions import ConditionsConfig, case_inputs, iter_cases, mesh_metrics
    from z123_ros.ros.conversions import simplify_mesh

    config = ConditionsConfig(seeds_per_bucket=seeds, real=str(REAL) if REAL.is_dir() else None, segmentation=False)
    rows = []
    for case in iter_cases(config):
        for obj, inp in case_inputs(case, config):
            c0 = time.process_time()
            result = reconstruct(inp, "depth")
            row = {"case": case.name, "object": obj.name, "prior": result.info.get("prior", ""),
                   "cpu_s": time.process_time() - c0, "faces": len(result.faces)}  # fmt: skip
            published = simplify_mesh(result.vertices, result.faces, max_faces)
            for key, (v, f) in {"": (result.vertices, result.faces), "pub_": published}.items():
                m = mesh_metrics(trimesh.Trimesh(np.asarray(v, np.float64), np.asarray(f, np.int64), process=False),
                                 obj.mesh_cam, config)  # fmt: skip
                row.update({f"{key}{k}": float(x) for k, x in m.items()})
            row["pub_faces"] = len(published[1])
            rows.append(row)
            print(json.dumps(row), flush=True)
    out.write_text(json.dumps(rows, indent=1))
    summarise(rows)


def summarise(rows: list[dict]) -> None:
    """The thin shells' median IoU (simulated / with the real frames) and the pooled means, backend and published."""
    from z123_ros.evaluation.conditions_report import THIN_SHELLS

    thin = [r for r in rows if r["object"].startswith(THIN_SHELLS)]
    sim = [r for r in thin if "real" not in r["case"]]
    for key in ("", "pub_"):
        cd_mm = 1e3 * np.mean([r[key + "chamfer"] for r in rows])
        print(
            f"{key or 'backend '}: thin shells IoU median sim {np.median([r[key + 'iou'] for r in sim]):.3f} "
            f"({len(sim)}) / all {np.median([r[key + 'iou'] for r in thin]):.3f} ({len(thin)}); pooled means "
            f"IoU {np.mean([r[key + 'iou'] for r in rows]):.3f}, CD {cd_mm:.2f}"
            f" mm, F {np.mean([r[key + 'f_score'] for r in rows]):.3f} ({len(rows)})"
        )


def digest(result) -> str:
    """A hash of what a reconstruction hands on: mesh, points, confidence, watertightness."""
    h = hashlib.sha256()
    for array in (result.vertices, result.faces, result.points, np.float64(result.confidence), result.watertight):
        h.update(np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def run_one(inp, config, repeat: int) -> tuple[object, float, float]:
    """(result, min CPU s, min wall s) over ``repeat`` runs."""
    cpu, wall, result = [], [], None
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        result = reconstruct(inp, "depth", config)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return result, min(cpu), min(wall)


def profile(inp, config, top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    reconstruct(inp, "depth", config)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", type=int, default=5, help="bench_node scenes (default 5)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per object; the minimum is reported")
    parser.add_argument("--cprofile", type=int, default=0, metavar="K", help="cProfile of the K slowest objects")
    parser.add_argument("--hash", type=Path, help="also the conditions benchmark's objects; write the hashes here")
    parser.add_argument("--seeds", type=int, default=2, help="with --hash: conditions seeds per bucket (default 2)")
    parser.add_argument("--score", type=Path, help="instead: score the conditions objects' meshes, raw and published")
    parser.add_argument("--faces", type=int, default=30000, help="with --score: the node's max_mesh_faces")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("OLD", "NEW"), help="compare two --hash files")
    args = parser.parse_args()
    if args.compare:
        old, new = (json.loads(p.read_text()) for p in args.compare)
        same = [k for k in old if new.get(k) == old[k]]
        differ = [k for k in old if k in new and new[k] != old[k]]
        print(f"{len(same)} of {len(old)} identical; {len(differ)} differ; {len(set(old) ^ set(new))} in one only")
        for k in differ:
            print(f"  differs: {k}")
        return 0 if len(same) == len(old) == len(new) else 1
    if args.score:
        score(args.seeds, args.faces, args.score)
        return 0
    config = bench_node._node_reconstruction_config()
    objects = node_objects(args.scenes)
    if args.hash:
        objects += conditions_objects(args.seeds)
    rows, hashes = [], {}
    print(f"load {os.getloadavg()[0]:.2f}; {len(objects)} objects", flush=True)
    print("| object | prior | faces | CPU s | wall s | stages (wall ms) |\n|---|---|---|---|---|---|")
    for label, inp in objects:
        try:
            result, cpu, wall = run_one(inp, config, args.repeat)
        except Exception as exc:  # noqa: BLE001  (a failed object is a row too, and its own hash)
            hashes[label] = f"error {type(exc).__name__}: {exc}"
            print(f"| {label} | error | | | | {exc} |", flush=True)
            continue
        hashes[label] = digest(result)
        stages = ", ".join(f"{k} {1e3 * v:.0f}" for k, v in result.timings.items() if v >= 0.005)
        print(f"| {label} | {result.info.get('prior', '')} | {len(result.faces)} | {cpu:.3f} | {wall:.3f} | {stages} |")
        sys.stdout.flush()
        rows.append((cpu, label, inp))
    node_cpu = [cpu for cpu, label, _ in rows if label.startswith("node")]
    print(
        f"node objects: {len(node_cpu)}, CPU s total {sum(node_cpu):.2f}, max {max(node_cpu):.3f}; "
        f"all: total {sum(r[0] for r in rows):.2f}; load {os.getloadavg()[0]:.2f}"
    )
    if args.hash:
        args.hash.write_text(json.dumps(hashes, indent=1))
    for cpu, label, inp in sorted(rows, key=lambda r: -r[0])[: args.cprofile]:
        print(f"\n## cProfile: {label} ({cpu:.3f} CPU s)\n")
        print(profile(inp, config, 30))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
