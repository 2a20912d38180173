"""Soak benchmark of z123_node: RGB-D frames at 15 Hz for N minutes, with the scene changing every few seconds so the
node keeps segmenting and reconstructing.

Reports: frames published/segmented, reconstructions, latency percentiles from the camera frame's stamp to the mesh
arriving at a subscriber (end to end, through Ray), RSS of the node process and of its Ray workers over time
(start, end, growth per minute after warm-up), queue depths over time (sync queues, pending frame, jobs in flight),
and drops by reason.

    python bench/bench_node.py --quick          # 30 s
    python bench/bench_node.py --minutes 5

The node runs as its own process with config/z123_node.yaml (depth backend, embedded local Ray), exactly as a user
starts it. Frames come from z123_ros.sim (real YCB scans rendered on a table), published reliably (best-effort
megabyte images over loopback lose fragments when the CPU is busy).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(np.random.default_rng().integers(101, 200)))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="z123_bench_log_"))

RATE_HZ = 15.0
SCENE_PERIOD_S = 10.0


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def _descendants(pid: int) -> list[int]:
    """Every descendant process (Ray's raylet, GCS and workers run under the node process)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _slope_per_min(t: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(t / 60.0, y, 1)[0]) if len(t) > 2 else float("nan")


def run(quick: bool = False, minutes: float | None = None) -> list[dict]:
    from _ros_helpers import NodeProcess, Probe, wait_for, write_params
    from std_msgs.msg import Header

    from z123_ros.ros.sim_camera_node import scene_messages
    from z123_ros.sim import SceneConfig, render_tabletop_scene

    duration = 30.0 if quick else 60.0 * (minutes or 5.0)
    scenes = [render_tabletop_scene(SceneConfig(seed=s, num_objects=3)) for s in range(3 if quick else 5)]
    frames = [scene_messages(sc, Header(frame_id="camera_color_optical_frame")) for sc in scenes]

    tmp = Path(tempfile.mkdtemp(prefix="z123_bench_node_"))
    params = write_params(
        tmp / "params.yaml",
        {"input_qos": "reliable", "diagnostics_period_s": 0.5, "forget_after_s": 2.0, "max_segmentation_rate_hz": 2.0},
    )
    proc = NodeProcess(params, tmp / "node.log")
    probe = Probe(node_name="z123_bench_probe")
    rows: list[dict] = []
    try:
        t_start = time.monotonic()
        if not wait_for(lambda: probe.diagnostics().get("state") == "running" or not proc.alive(), timeout=180):
            raise RuntimeError(f"node did not start:\n{proc.log()[-2000:]}")
        startup_s = time.monotonic() - t_start
        samples = []  # (t, node rss, ray rss, diagnostics)
        published = 0
        t0 = time.monotonic()
        next_frame = t0
        next_sample = t0
        while time.monotonic() - t0 < duration and proc.alive():
            now = time.monotonic()
            if now >= next_frame:
                colour, depth, info = frames[int((now - t0) // SCENE_PERIOD_S) % len(frames)]
                probe.publish_frame(colour, depth, info)
                published += 1
                next_frame += 1.0 / RATE_HZ
            if now >= next_sample:
                ray_rss = sum(_rss_mb(p) for p in _descendants(proc.proc.pid))
                samples.append((now - t0, _rss_mb(proc.proc.pid), ray_rss, probe.diagnostics()))
                next_sample += 1.0
            time.sleep(max(0.0, min(next_frame, next_sample) - time.monotonic()))
        alive = proc.alive()
        time.sleep(2.0)  # let the last meshes arrive

        # End-to-end latency: camera stamp -> mesh received by this subscriber (same clock, same machine).
        with probe.lock:
            recs = list(probe.received["reconstruction"])
        latencies = []
        for t_recv_mono, msg in recs:
            stamp_s = msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec
            latencies.append(time.time() - (time.monotonic() - t_recv_mono) - stamp_s)
        latencies = np.array(latencies)
        t = np.array([s[0] for s in samples])
        node_rss = np.array([s[1] for s in samples])
        ray_rss = np.array([s[2] for s in samples])
        warm = t >= min(10.0, duration / 3)

        def queue_series(key: str) -> np.ndarray:
            return np.array([float(s[3].get(key, 0)) for s in samples])

        last = samples[-1][3] if samples else {}
        rows += [
            {"metric": "duration", "value": round(duration, 1), "unit": "s"},
            {
                "metric": "startup (process start -> active, Ray up, models warm)",
                "value": round(startup_s, 1),
                "unit": "s",
            },
            {"metric": "frames published", "value": published, "unit": f"at {RATE_HZ:g} Hz"},
            {"metric": "frames segmented", "value": int(last.get("count.frames_segmented", 0)), "unit": ""},
            {"metric": "reconstructions received", "value": len(recs), "unit": ""},
        ]
        if len(latencies):
            for q in (50, 90, 99):
                rows.append(
                    {
                        "metric": f"frame -> mesh latency p{q}",
                        "value": round(float(np.percentile(latencies, q)), 2),
                        "unit": "s",
                    }
                )
            rows.append({"metric": "frame -> mesh latency max", "value": round(float(latencies.max()), 2), "unit": "s"})
        rows += [
            {"metric": "node RSS start / end", "value": f"{node_rss[0]:.0f} / {node_rss[-1]:.0f}", "unit": "MB"},
            {
                "metric": "node RSS growth after warm-up",
                "value": round(_slope_per_min(t[warm], node_rss[warm]), 1),
                "unit": "MB/min",
            },
            {"metric": "Ray processes RSS start / end", "value": f"{ray_rss[0]:.0f} / {ray_rss[-1]:.0f}", "unit": "MB"},
            {
                "metric": "Ray RSS growth after warm-up",
                "value": round(_slope_per_min(t[warm], ray_rss[warm]), 1),
                "unit": "MB/min",
            },
        ]
        for key in (
            "queue.sync.colour",
            "queue.sync.depth",
            "queue.sync.info",
            "queue.pending_frame",
            "jobs_in_flight",
            "dispatch.queued",
        ):
            series = queue_series(key)
            rows.append(
                {
                    "metric": f"{key} max / mean / last",
                    "unit": "",
                    "value": f"{series.max():.0f} / {series.mean():.2f} / {series[-1]:.0f}",
                }
            )
        for stream in ("colour", "depth", "info"):
            rows.append(
                {
                    "metric": f"{stream}: received / unmatched by sync",
                    "unit": "",
                    "value": f"{last.get(f'count.received_{stream}', 0)} / {last.get(f'sync.unmatched.{stream}', 0)}",
                }
            )
        drops = {k[5:]: v for k, v in last.items() if k.startswith("drop.")}
        rows.append(
            {
                "metric": "drops by reason",
                "value": ", ".join(f"{k}={v}" for k, v in drops.items()) or "none",
                "unit": "",
            }
        )
        rows.append({"metric": "node alive at the end", "value": alive, "unit": ""})
        rows.append(
            {
                "metric": "time series (t s, node MB, Ray MB, in flight)",
                "unit": "",
                "value": " ".join(
                    f"{a:.0f}:{b:.0f}/{c:.0f}/{float(d.get('jobs_in_flight', 0)):.0f}"
                    for a, b, c, d in samples[:: max(1, len(samples) // 10)]
                ),
            }
        )
    finally:
        probe.close()
        proc.stop()
    for row in rows:
        row["bench"] = "node_soak"
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="30 s instead of --minutes")
    parser.add_argument("--minutes", type=float, default=5.0, help="soak duration (default 5)")
    args = parser.parse_args()
    rows = run(quick=args.quick, minutes=args.minutes)
    print("| metric | value | unit |\n|---|---|---|")
    for row in rows:
        print(f"| {row['metric']} | {row['value']} | {row['unit']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
