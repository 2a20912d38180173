"""Latency and soak benchmark of z123_node: RGB-D frames at 15 Hz, a new 3-object scene every 10 s, depth backend.

One run measures, side by side: startup (process start -> active, with its breakdown), the first mesh after the
first frame, frame -> mesh latency (camera stamp to the mesh at a subscriber) with the per-stage breakdown the node
puts in every ObjectReconstruction (pipeline.* timings) plus delivery, the in-process floor (segmentation of the
same frames in this process and their objects reconstructed in parallel on a process pool with one worker per core:
no ROS, no Ray) and the node/floor ratio, a static phase (one
unchanging scene with a new sample of active stereo sensor noise in every frame: reconstructions submitted, frames
segmented, node CPU), node and Ray memory (MB/min during and
after warm-up), queue depths, drops; then the same changing scenes with a CPU hog on core 0 ("loaded").

    python bench/bench_node.py --quick                    # 45 s changing + 20 s static + 45 s loaded
    python bench/bench_node.py --minutes 10 --no-loaded   # the soak

The node runs as its own process with config/z123_node.yaml (embedded local Ray), exactly as a user starts it.
Frames come from z123_ros.sim (real YCB scans rendered on a table), published reliably (best-effort megabyte
images over loopback lose fragments when the CPU is busy). The machine's load average is in the table: on a shared
machine the ratios measured in one run are the meaningful figures.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from _proc import compile_package, cpu_s, descendants  # bench/ is sys.path[0] when a bench script runs

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", str(np.random.default_rng().integers(101, 200)))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("ROS_LOG_DIR", tempfile.mkdtemp(prefix="z123_bench_log_"))

RATE_HZ = 15.0
SCENE_PERIOD_S = 10.0
STATIC_SETTLE_S = 5.0
#: Memory (smaps_rollup of the node and of every Ray process) is sampled this often, queues every second: reading
#: the smaps of ~10 processes once a second took 0.05 of a core in this process, on the cores the actors work on.
MEMORY_SAMPLE_S = 5


class MemorySample(NamedTuple):
    """One memory sample of the soak: RSS in MB, smaps_rollup fields in MB (:func:`_smaps_mb`; the Ray processes'
    summed), and the Ray processes' private memory by process name."""

    t: float
    node_rss: float
    ray_rss: float
    node_smaps: dict[str, float]
    ray_smaps: dict[str, float]
    ray_private_by_name: dict[str, float]


def _rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


#: Fields of /proc/PID/smaps_rollup the soak samples (kB there, MB here). RSS counts a page shared by N processes N
#: times (Ray's object store in shared memory, mapped by every worker that touched an object); PSS divides it among
#: them, so a sum over processes counts each page once. Private = pages mapped by this process alone (USS).
SMAPS_FIELDS = ("Rss", "Pss", "Pss_Anon", "Pss_Shmem", "Private_Clean", "Private_Dirty")


def _smaps_mb(pid: int) -> dict[str, float]:
    """The SMAPS_FIELDS of one process in MB, plus "Private" (clean + dirty); zeros when it is gone."""
    out = dict.fromkeys(SMAPS_FIELDS, 0.0)
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in out:
                out[name] = int(rest.split()[0]) / 1024.0
    except (OSError, IndexError, ValueError):
        pass
    out["Private"] = out["Private_Clean"] + out["Private_Dirty"]
    return out


def _sum_smaps(smaps: dict[int, dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for fields in smaps.values():
        for name, value in fields.items():
            total[name] = total.get(name, 0.0) + value
    return total


def _process_name(pid: int) -> str:
    """A short name for a Ray process: its comm (raylet, gcs_server, ray::<Actor>), or for a Python helper the
    script it runs (dashboard agent, log monitor)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
        if not comm.startswith("python"):
            return comm
        args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    scripts = [Path(a.decode(errors="replace")).name for a in args if a.endswith(b".py")]
    return scripts[0] if scripts else comm


def _private_by_name(smaps: dict[int, dict[str, float]]) -> dict[str, float]:
    """Private memory (USS, MB) summed by process name, from each process's :func:`_smaps_mb`."""
    out: dict[str, float] = {}
    for pid, fields in smaps.items():
        name = _process_name(pid)
        out[name] = out.get(name, 0.0) + fields["Private"]
    return out


def _slope_per_min(t: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(t / 60.0, y, 1)[0]) if len(t) > 2 else float("nan")


def _threads(pid: int) -> list[tuple[int, str]]:
    """(thread id, name) of every thread of a process."""
    out = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                out.append((int(task.name), (task / "comm").read_text().strip()))
    return out


def _cpu_by_process(node_pid: int) -> dict[str, float]:
    """CPU seconds so far (and the monotonic time) of this bench process (the simulated camera and the probe), the
    node, and the node's descendants by name (Ray's processes, the dispatch process, the actors)."""
    out = {"_t": time.monotonic(), "bench (camera + probe)": time.process_time(), "node": cpu_s(node_pid)}
    for tid, name in _threads(node_pid):
        out[f"node thread {name}#{tid}"] = cpu_s(node_pid, tid)
    for pid in descendants(node_pid):
        name = _process_name(pid)
        name = "dispatch process" if name.startswith("python") else name
        out[f"{name}#{pid}"] = cpu_s(pid)
    return out


def _cpu_cores(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Cores each kind of process used between two :func:`_cpu_by_process` readings (a process that started or
    ended in between counts from 0 / to its last reading)."""
    wall = after["_t"] - before["_t"]
    out: dict[str, float] = {}
    for key, value in after.items():
        if key == "_t" or value != value:
            continue
        name = key.split("#")[0]
        start = before.get(key, 0.0)
        out[name] = out.get(name, 0.0) + (value - (start if start == start else 0.0)) / wall
    return out


def _scenes(quick: bool) -> list:
    from z123_ros.sim import SceneConfig, render_tabletop_scene

    return [render_tabletop_scene(SceneConfig(seed=s, num_objects=3)) for s in range(3 if quick else 5)]


def _sensor_views(scene, count: int = 8) -> list:
    """``scene`` as an active stereo camera measures it (the project's sensor model: noise, holes, flying pixels),
    ``count`` independent samples: a static scene whose frames still differ, as a real camera's do."""
    from z123_ros.sim.sensor import apply_sensor

    out = []
    for seed in range(count):
        rgb, depth = apply_sensor(scene.rgb, scene.depth_m, scene.intrinsics, "active_stereo", seed=seed)
        out.append(dataclasses.replace(scene, rgb=rgb, depth_m=depth))
    return out


def _publish_loop(
    probe, proc, frames, duration: float, on_sample, period_s: float = SCENE_PERIOD_S
) -> tuple[int, list[float]]:
    """Publish ``frames`` at RATE_HZ (the next one every ``period_s``) for ``duration`` s, sampling once a second.
    Returns (frames published, monotonic time of each frame's first publication)."""
    published, scene_starts, scene = 0, [], -1
    t0 = time.monotonic()
    next_frame = next_sample = t0
    while time.monotonic() - t0 < duration and proc.alive():
        now = time.monotonic()
        if now >= next_frame:
            index = int((now - t0) // period_s)
            if index != scene:
                scene = index
                scene_starts.append(now)
            probe.publish_frame(*frames[index % len(frames)])
            published += 1
            next_frame += 1.0 / RATE_HZ
        if now >= next_sample:
            on_sample(now - t0)
            next_sample += 1.0
        time.sleep(max(0.0, min(next_frame, next_sample) - time.monotonic()))
    return published, scene_starts


def _soak(frames, duration: float, static_s: float, static_frames=None) -> dict:
    """One node process: startup, ``duration`` s of changing scenes, then ``static_s`` s of one unchanging scene
    (``static_frames``: that scene as a sensor measures it, a new noise sample each frame; default frames[0]).
    Returns raw measurements (latencies, stages, memory and queue samples, counts)."""
    from _ros_helpers import NodeProcess, Probe, dispatcher_warm, wait_for, write_params

    tmp = Path(tempfile.mkdtemp(prefix="z123_bench_node_"))
    params = write_params(tmp / "params.yaml", {"input_qos": "reliable", "diagnostics_period_s": 0.5})
    t_start = time.monotonic()
    proc = NodeProcess(params, tmp / "node.log")
    # The heavy outputs arrive as bytes: their arrival time is delivery, not this probe's Python deserialisation.
    probe = Probe(node_name="z123_bench_probe", raw=("reconstruction", "segmentation", "cloud", "markers"))
    out: dict = {"samples": []}
    try:
        # Activation does not wait for Ray (it starts in the background): startup ends with every actor warm.
        if not wait_for(lambda: dispatcher_warm(probe.diagnostics()) or not proc.alive(), timeout=180):
            raise RuntimeError(f"node did not start:\n{proc.log()[-2000:]}")
        out["startup_s"] = time.monotonic() - t_start
        out["startup"] = {k: v for k, v in probe.diagnostics().items() if k.startswith("startup.")}
        pid = proc.proc.pid

        out["sample_cpu_s"], out["queues"] = 0.0, []

        def sample(t: float) -> None:
            t0 = time.thread_time()
            out["queues"].append((t, probe.diagnostics()))
            # Between scene changes (every 10 s), not at one: the first frames of a scene meet no sampling here.
            if round(t) % MEMORY_SAMPLE_S == MEMORY_SAMPLE_S // 2:
                ray = descendants(pid)
                ray_rss = sum(_rss_mb(p) for p in ray)
                ray_smaps = {p: _smaps_mb(p) for p in ray}
                out["samples"].append(
                    MemorySample(
                        t, _rss_mb(pid), ray_rss, _smaps_mb(pid), _sum_smaps(ray_smaps), _private_by_name(ray_smaps)
                    )
                )
            out["sample_cpu_s"] += time.thread_time() - t0

        t_first = time.monotonic()
        cpu_before = _cpu_by_process(pid)
        out["published"], out["scene_starts"] = _publish_loop(probe, proc, frames, duration, sample)
        out["cpu_cores"] = _cpu_cores(cpu_before, _cpu_by_process(pid))
        time.sleep(2.0)  # let the last meshes arrive
        recs = probe.records("reconstruction")
        with probe.lock:
            raw = [m for _, m in probe.received["reconstruction"]]
        out["deserialise_s"] = _deserialise_times(raw)
        out["first_mesh_s"] = recs[0][0] - t_first if recs else float("nan")
        out["recs"] = recs
        # The switch to the static scene is a change (its objects are new or moved): let it be segmented first.
        static_frames = static_frames or frames[:1]
        _publish_loop(probe, proc, static_frames, STATIC_SETTLE_S, lambda t: None, 1.0 / RATE_HZ)
        before = probe.diagnostics()
        cpu0, t0 = cpu_s(pid), time.monotonic()
        _publish_loop(probe, proc, static_frames, static_s, lambda t: None, 1.0 / RATE_HZ)
        out["static_cpu_cores"] = (cpu_s(pid) - cpu0) / (time.monotonic() - t0)
        after = probe.diagnostics()
        # Every reconstruction submitted while the scene is static is a repeat (its objects were all done).
        key = "count.jobs_submitted"
        out["static_repeats"] = int(after.get(key, 0)) - int(before.get(key, 0))
        out["static_segmented"] = int(after.get("count.frames_segmented", 0)) - int(
            before.get("count.frames_segmented", 0)
        )
        out["static_s"] = static_s
        out["last"] = after
        out["alive"] = proc.alive()
    finally:
        probe.close()
        proc.stop()
    return out


def _deserialise_times(raw: list[bytes]) -> np.ndarray:
    """Seconds this Python process takes to deserialise each received ObjectReconstruction (the subscriber's own
    cost, after delivery; a C++ subscriber's is about a millisecond)."""
    from rclpy.serialization import deserialize_message
    from z123_interfaces.msg import ObjectReconstruction

    times = []
    for data in raw:
        t0 = time.perf_counter()
        deserialize_message(data, ObjectReconstruction)
        times.append(time.perf_counter() - t0)
    return np.array(times)


def _latencies(recs) -> np.ndarray:
    """Camera stamp -> mesh received by the subscriber (same machine, same clock), seconds."""
    now_wall, now_mono = time.time(), time.monotonic()
    return np.array([now_wall - (now_mono - t) - (m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec) for t, m in recs])


def _stage_table(recs, latencies: np.ndarray) -> dict[str, tuple[float, float]]:
    """Stage -> (p50, p90) seconds from the messages' pipeline.* timings; "delivery" is what is left of the
    end-to-end latency: the serialised mesh from the node's publish call to the subscriber's callback (DDS and
    both executors)."""
    per_stage: dict[str, list[float]] = {}
    accounted = np.zeros(len(recs))
    for i, (_, msg) in enumerate(recs):
        for st in msg.timings:
            if st.stage.startswith("pipeline."):
                per_stage.setdefault(st.stage[len("pipeline.") :], []).append(st.seconds)
                accounted[i] += st.seconds
    per_stage["delivery"] = list(np.maximum(0.0, latencies - accounted))
    return {k: (float(np.percentile(v, 50)), float(np.percentile(v, 90))) for k, v in per_stage.items() if v}


def _floor(scenes) -> np.ndarray:
    """The in-process floor, as a user would write it without ROS or Ray: segment and track each frame in this
    process, then reconstruct its objects (with the other objects as occluders, like the node) in parallel on a
    pool of worker processes, one per core. Per object: frame start -> its mesh back in this process. The pool runs
    every frame once before the measured pass (warm, as the node's actors are)."""
    from z123_ros.reconstruction import reconstruct
    from z123_ros.segmentation import ObjectTracker, SegmentationConfig, TabletopSegmenter, TrackerConfig

    config = _node_reconstruction_config()
    segmenter, out = TabletopSegmenter(SegmentationConfig()), []
    context = multiprocessing.get_context("spawn")  # not a fork of this process, which holds ROS and DDS threads
    with concurrent.futures.ProcessPoolExecutor(max_workers=os.cpu_count(), mp_context=context) as pool:
        for _ in range(2):
            out, tracker = [], ObjectTracker(TrackerConfig())
            for sc in scenes:
                t0 = time.perf_counter()
                futures = [
                    pool.submit(reconstruct, inp, "depth", config) for inp in object_inputs(sc, segmenter, tracker)
                ]
                for future in concurrent.futures.as_completed(futures):
                    future.result()
                    out.append(time.perf_counter() - t0)
    return np.array(out)


def object_inputs(scene, segmenter, tracker) -> list:
    """The reconstruction inputs of ``scene``'s objects as the node makes them: segmented and tracked, the other
    objects' masks as occluders."""
    from z123_ros.reconstruction import ReconstructionInput

    seg = tracker.update(segmenter.segment(scene.rgb, scene.intrinsics, depth_m=scene.depth_m))
    out = []
    for obj in seg.objects:
        others = [o.mask for o in seg.objects if o.id != obj.id]
        out.append(
            ReconstructionInput(
                rgb=scene.rgb,
                mask=obj.mask,
                intrinsics=scene.intrinsics,
                depth_m=scene.depth_m,
                support_plane_cam=seg.plane_cam,
                occluder_mask=np.any(others, axis=0) if others else None,
            )
        )
    return out


def _node_reconstruction_config():
    """The reconstruction settings the node runs with (config/z123_node.yaml, read as the node reads its
    parameters): the floor does the same work."""
    from _ros_helpers import read_params

    from z123_ros.ros.config import NodeConfig
    from z123_ros.ros.params import build_config, parameter_specs

    config = NodeConfig()
    return build_config(config, parameter_specs(config), read_params()).reconstruction


def _hog() -> subprocess.Popen:
    """A CPU hog on core 0 (busy loop), the "one core loaded" condition."""
    cmd = [sys.executable, "-c", "while True: pass"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    return subprocess.Popen(cmd)


def _pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if len(values) else float("nan")


def _memory_rows(soak: dict, label: str) -> list[dict]:
    samples = soak["samples"]
    t = np.array([s.t for s in samples])
    warm = t >= min(60.0, t[-1] / 3)  # the first minute (or third) is warm-up: caches, Ray's object store, numpy
    rows = []
    for name, col in (("node", "node_rss"), ("Ray processes", "ray_rss")):
        y = np.array([getattr(s, col) for s in samples])
        rows += [
            {"metric": f"{label}{name} RSS start / end", "value": f"{y[0]:.0f} / {y[-1]:.0f}", "unit": "MB"},
            {
                "metric": f"{label}{name} RSS growth: warm-up / after warm-up",
                "value": f"{_slope_per_min(t[~warm], y[~warm]):.1f} / {_slope_per_min(t[warm], y[warm]):.1f}",
                "unit": "MB/min",
            },
        ]
    # Where the growth is: private (this process's own pages: heap, a leak would be here) vs PSS by kind (anonymous
    # memory, and shared memory: Ray's object store) vs RSS (which counts each shared page once per process).
    for name, col in (("node", "node_smaps"), ("Ray processes", "ray_smaps")):
        for field, what in (("Private", "private (USS)"), ("Pss_Anon", "PSS anonymous"), ("Pss_Shmem", "PSS shmem")):
            y = np.array([getattr(s, col).get(field, 0.0) for s in samples])
            rows.append(
                {
                    "metric": f"{label}{name} {what}: start / end; growth warm-up / after",
                    "value": f"{y[0]:.0f} / {y[-1]:.0f}; "
                    f"{_slope_per_min(t[~warm], y[~warm]):.1f} / {_slope_per_min(t[warm], y[warm]):.1f}",
                    "unit": "MB; MB/min",
                }
            )
    # The same slope over the second half only: a high-water mark still being reached after the first minute (the C
    # heap's arenas) shows here as a smaller slope, a leak as the same one.
    late = t >= t[-1] / 2
    halves = [
        _slope_per_min(t[late], np.array([getattr(s, col)["Private"] for s in samples])[late])
        for col in ("node_smaps", "ray_smaps")
    ]
    rows.append(
        {
            "metric": f"{label}node / Ray processes private (USS) growth over the second half of the run",
            "value": f"{halves[0]:.1f} / {halves[1]:.1f}",
            "unit": "MB/min",
        }
    )
    names = sorted({name for s in samples for name in s.ray_private_by_name})
    growth = {
        n: _slope_per_min(t[warm], np.array([s.ray_private_by_name.get(n, 0.0) for s in samples])[warm]) for n in names
    }
    rows.append(
        {
            "metric": f"{label}Ray processes private (USS) growth after warm-up, by process",
            "value": ", ".join(f"{n}={g:+.1f}" for n, g in sorted(growth.items(), key=lambda kv: -abs(kv[1]))[:6]),
            "unit": "MB/min",
        }
    )
    for key in ("queue.pending_frame", "queue.results", "jobs_in_flight", "dispatch.queued"):
        series = np.array([float(diag.get(key, 0)) for _, diag in soak["queues"]])
        rows.append(
            {
                "metric": f"{label}{key} max / mean / last",
                "unit": "",
                "value": f"{series.max():.0f} / {series.mean():.2f} / {series[-1]:.0f}",
            }
        )
    return rows


def run(
    quick: bool = False,
    minutes: float | None = None,
    loaded: bool = True,
    static_s: float | None = None,
    dds: str = "profile",
) -> list[dict]:
    _choose_dds(dds)
    from std_msgs.msg import Header

    from z123_ros.ros.sim_camera_node import scene_messages

    duration = 45.0 if quick else 60.0 * (minutes or 5.0)
    static_s = static_s if static_s is not None else (20.0 if quick else 180.0)
    scenes = _scenes(quick)
    header = Header(frame_id="camera_color_optical_frame")
    frames = [scene_messages(sc, header) for sc in scenes]
    static_frames = [scene_messages(noisy, header) for noisy in _sensor_views(scenes[0])]
    load_before = os.getloadavg()[0]
    quiet = _soak(frames, duration, static_s, static_frames)
    floor = _floor(scenes)
    runs = [("", quiet)]
    if loaded:
        hog = _hog()
        try:
            runs.append(("loaded: ", _soak(frames, min(duration, 60.0), 0.0)))
        finally:
            hog.kill()
            hog.wait()
    rows = _result_rows(runs, floor, duration, load_before)
    for row in rows:
        row["bench"] = "node"
    return rows


def _result_rows(runs, floor: np.ndarray, duration: float, load_before: float) -> list[dict]:
    quiet = runs[0][1]
    lat = _latencies(quiet["recs"])
    rows = [
        {
            "metric": "machine load average (1 min) before / after",
            "value": f"{load_before:.2f} / {os.getloadavg()[0]:.2f}",
            "unit": f"{os.cpu_count()} cores",
        },
        {
            "metric": "DDS transports (--dds)",
            "value": Path(os.environ["FASTDDS_DEFAULT_PROFILES_FILE"]).name
            if os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE")
            else "Fast DDS built-in",
            "unit": "",
        },
        {
            "metric": "duration (changing scenes)",
            "value": round(duration, 1),
            "unit": f"s, new scene every {SCENE_PERIOD_S:g} s",
        },
        {
            "metric": "startup (process start -> active, Ray up, actors warm)",
            "value": round(quiet["startup_s"], 2),
            "unit": "s",
        },
        {
            "metric": "startup breakdown (s since process start)",
            "value": ", ".join(f"{k[8:]}={v}" for k, v in quiet["startup"].items()),
            "unit": "",
        },
        {"metric": "first mesh after the first frame", "value": round(quiet["first_mesh_s"], 2), "unit": "s"},
        {
            "metric": "first mesh: its own frame -> mesh",
            "value": round(float(lat[0]), 2) if len(lat) else float("nan"),
            "unit": "s (the rest: frames before it that the node did not get or use)",
        },
        {
            "metric": "frames published / segmented",
            "value": f"{quiet['published']} / {quiet['last'].get('count.frames_segmented', 0)}",
            "unit": f"at {RATE_HZ:g} Hz",
        },
        {"metric": "reconstructions received", "value": len(quiet["recs"]), "unit": ""},
    ]
    for label, soak in runs:
        lat_run = _latencies(soak["recs"])
        rows.append(
            {
                "metric": f"{label}frame -> mesh p50 / p90 / max",
                "value": f"{_pct(lat_run, 50)} / {_pct(lat_run, 90)} / {_pct(lat_run, 100)}",
                "unit": "s",
            }
        )
    rows.append(
        {
            "metric": "in-process floor (no ROS, no Ray) p50 / p90",
            "value": f"{_pct(floor, 50)} / {_pct(floor, 90)}",
            "unit": "s",
        }
    )
    rows.append(
        {
            "metric": "node / in-process p50 ratio",
            "value": round(float(np.median(lat) / np.median(floor)), 2),
            "unit": "",
        }
    )
    deser = quiet["deserialise_s"]
    rows.append(
        {
            "metric": "subscriber: Python deserialisation of a mesh message p50 / p90 (after delivery)",
            "value": f"{_pct(deser * 1000, 50)} / {_pct(deser * 1000, 90)}",
            "unit": "ms",
        }
    )
    for stage, (p50, p90) in _stage_table(quiet["recs"], lat).items():
        rows.append(
            {"metric": f"stage {stage} p50 / p90", "value": f"{p50 * 1000:.1f} / {p90 * 1000:.1f}", "unit": "ms"}
        )
    cpu = dict(quiet.get("cpu_cores", {}))
    cpu["of which the bench's sampling"] = quiet["sample_cpu_s"] / duration
    rows.append(
        {
            "metric": "CPU while the scenes change, by process (node threads: Python's all share one name)",
            "value": ", ".join(f"{k}={v:.3f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]) if v >= 0.001),
            "unit": "cores",
        }
    )
    rows += [
        {
            "metric": f"static scene (active stereo sensor noise): reconstructions in {quiet['static_s']:.0f} s",
            "value": quiet["static_repeats"],
            "unit": "",
        },
        {
            "metric": "static scene: frames segmented",
            "value": quiet["static_segmented"],
            "unit": f"of {int(quiet['static_s'] * RATE_HZ)}",
        },
        {"metric": "static scene: node CPU", "value": round(quiet["static_cpu_cores"], 2), "unit": "cores"},
    ]
    rows += _memory_rows(quiet, "")
    last = quiet["last"]
    trim_ms = [1000 * float(last.get(f"latency_s.heap_trim.{q}", "nan")) for q in ("p50", "max")]
    rows.append(
        {
            "metric": "node heap trims (heap_trim_period_s): count; duration p50 / max of the last 200",
            "value": f"{last.get('count.heap_trims', 0)}; {trim_ms[0]:.1f} / {trim_ms[1]:.1f}",
            "unit": "ms",
        }
    )
    drops = {k[5:]: v for k, v in quiet["last"].items() if k.startswith("drop.")}
    rows.append(
        {"metric": "drops by reason", "value": ", ".join(f"{k}={v}" for k, v in drops.items()) or "none", "unit": ""}
    )
    rows.append({"metric": "node alive at the end", "value": quiet["alive"], "unit": ""})
    return rows


def _choose_dds(mode: str) -> None:
    """Set before any DDS participant exists (this process's and the node's, which inherits the environment)."""
    if mode == "builtin":
        os.environ.pop("FASTDDS_DEFAULT_PROFILES_FILE", None)
        return
    from z123_ros.resources import default_config

    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(default_config("fastdds_loopback.xml"))
    # As the demo: with the profile the range SUBNET stays on loopback; LOCALHOST adds sockets on every interface.
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="45 s (and 20 s static) instead of --minutes")
    parser.add_argument("--minutes", type=float, default=5.0, help="soak duration (default 5)")
    parser.add_argument("--static-s", type=float, default=None, help="static-scene phase, s (default 180; quick 20)")
    parser.add_argument("--no-loaded", action="store_true", help="skip the run with a CPU hog on core 0")
    parser.add_argument(
        "--dds",
        choices=("profile", "builtin"),
        default="profile",
        help="profile: every process with config/fastdds_loopback.xml, as the demo and the README's single-machine "
        "setup (default); builtin: Fast DDS's built-in transports (a 512 KiB shared-memory segment: images go as UDP "
        "fragments)",
    )
    parser.add_argument(
        "--cold-bytecode",
        action="store_true",
        help="leave the checkout's bytecode as it is (by default it is written first: the startup goal is for a warm "
        "cache, see _proc.compile_package)",
    )
    args = parser.parse_args()
    if not args.cold_bytecode:
        compile_package(REPO)
    rows = run(quick=args.quick, minutes=args.minutes, loaded=not args.no_loaded, static_s=args.static_s, dds=args.dds)
    print("| metric | value | unit |\n|---|---|---|")
    for row in rows:
        print(f"| {row['metric']} | {row['value']} | {row['unit']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
