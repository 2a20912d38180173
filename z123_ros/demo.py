"""``z123 demo``: the simulated tabletop demo, end to end, on the embedded defaults.

Three processes talk over ROS 2 on loopback, as on a robot:

    z123-sim-camera (own process)  renders a seeded table scene of real YCB scans; publishes colour, depth, camera info
    z123-node       (own process)  segments, dispatches reconstruction to an embedded local Ray, publishes results
    this process                   listens to the node's outputs and scores them against the camera's ground truth

Written to the output folder (built in a temporary folder, moved into place at the end: no partial outputs):
``object_<id>_mesh.ply`` / ``object_<id>_points.ply`` (metres, camera frame, as published), ``overview.png`` (the
camera frame with the segmentation, and each object's mesh beside its ground truth), ``summary.md`` / ``summary.json``
(per object: IoU, Chamfer, F-score, seconds), ``ground_truth/`` and the node's log.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import shutil
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import trimesh

from z123_ros.camera import transform_points
from z123_ros.errors import ConfigError, Z123Error
from z123_ros.io import new_staging, replace_folder
from z123_ros.reconstruction import get_backend, metrics
from z123_ros.reconstruction.mesh import render_mesh_views, write_mesh_ply, write_points_ply
from z123_ros.resources import default_config

logger = logging.getLogger(__name__)

#: The keys of z123_ros.sim.sensor.SENSOR_PRESETS (tests/test_demo.py checks they agree). Not imported from there:
#: importing z123_ros.sim loads trimesh, and `z123 --help` imports this module.
SENSORS = ("structured_light", "active_stereo", "ideal")


@dataclass
class DemoConfig:
    """What the demo runs."""

    out: Path = Path("outputs/demo")
    """Output folder (replaced when it exists)."""
    seed: int = 3
    """Scene seed: which objects, where, and the camera azimuth."""
    num_objects: int = 3
    """Objects on the table (1..8)."""
    backend: str = "depth"
    """Reconstruction backend of the node: depth (no weights), multiview or zero123 (need --model)."""
    model: str = ""
    """Zero-1-to-3 weights folder or hub id for the learned backends."""
    timeout_s: float = 300.0
    """Give up waiting for reconstructions after this long (the summary then lists what is missing)."""
    rate_hz: float = 5.0
    """Frame rate of the simulated camera."""
    extra_params: list[str] = field(default_factory=list)
    """Extra node parameters as ``name:=value`` (e.g. ``reconstruction.depth.voxel_size_m:=0.004``)."""
    sensor: str = "structured_light"
    """Depth sensor model of the simulated camera (z123_ros.sim.sensor presets): structured_light (Kinect v1 /
    Xtion: noise, quantisation, shadow holes), active_stereo (RealSense D435) or ideal (exact depth)."""

    def check(self) -> None:
        if not 1 <= self.num_objects <= 8:
            raise ConfigError(f"--objects must be in 1..8, got {self.num_objects}")
        if get_backend(self.backend).needs_model and not self.model:
            raise ConfigError(f"backend {self.backend!r} needs --model (a Zero-1-to-3 folder or hub id)")
        if self.timeout_s <= 0:
            raise ConfigError("--timeout must be positive")
        if self.sensor not in SENSORS:
            raise ConfigError(f"--sensor must be one of {', '.join(SENSORS)}, got {self.sensor!r}")


@dataclass
class ObjectScore:
    """One reconstructed object scored against its ground truth (world frame, metres)."""

    object_id: int
    """Id the node gave the object."""
    gt_name: str
    """YCB name of the matched ground-truth object ('' when none matched)."""
    iou: float
    chamfer_mm: float
    f_score_5mm: float
    seconds: float
    """From the stamp of the camera frame the object was segmented in to its mesh received: what a robot waits."""
    backend: str
    vertices: int


def _ros_env(log_dir: Path) -> dict[str, str]:
    env = os.environ.copy()
    # Every DDS socket on loopback: the Fast DDS profile allows UDP on 127.0.0.1 (and shared memory) only. With it,
    # discovery range SUBNET stays on loopback too, whereas LOCALHOST makes rmw_fastrtps open sockets of its own
    # on every interface (measured with the kilted wheels, `ss -lunp`; README "Security").
    profile = default_config("fastdds_loopback.xml")
    if profile.is_file() or "FASTDDS_DEFAULT_PROFILES_FILE" in env:
        env.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(profile))
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
    else:  # an install older than the profile: discovery on this machine at least
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    env.setdefault("ROS_DOMAIN_ID", str(random.SystemRandom().randint(1, 100)))
    env["ROS_LOG_DIR"] = str(log_dir)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["HF_HUB_OFFLINE"] = "1"
    env.setdefault("TQDM_DISABLE", "1")
    return env


def _start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    logger.debug("starting %s", " ".join(cmd))
    proc = subprocess.Popen(cmd, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    proc.z123_log = log  # type: ignore[attr-defined]  # for the error message when it dies
    return proc


def _last_line(log: Path) -> str:
    """The last non-empty line of a process log (the exception of a crashed node), for a one-line error."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


def _stop(proc: subprocess.Popen, timeout_s: float = 20.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(2)  # SIGINT: the nodes shut down rclpy and the embedded Ray cleanly
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _collect(env: dict[str, str], procs: dict[str, subprocess.Popen], timeout_s: float, expected: int) -> tuple:
    """Listen until every segmented object has a reconstruction: (segmentation, {id: (msg, seconds)}, colour image)."""
    keys = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "FASTDDS_DEFAULT_PROFILES_FILE")
    os.environ.update({k: env[k] for k in keys if k in env})
    import rclpy
    from rclpy.qos import QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from z123_interfaces.msg import ObjectReconstruction, ObjectSegmentation

    segmentation: list = []
    colour: deque = deque(maxlen=1)  # the latest frame, for the overview picture
    reconstructions: dict = {}
    start = time.monotonic()
    rclpy.init()
    node = rclpy.create_node("z123_demo_probe")
    qos = QoSProfile(depth=20, reliability=QoSReliabilityPolicy.RELIABLE)

    def on_rec(msg: ObjectReconstruction) -> None:
        # Latency as a robot sees it: from the camera frame's stamp (wall clock, same machine) to the mesh in hand.
        latency = time.time() - (msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)
        reconstructions[msg.object_id] = (msg, latency)
        logger.info("object %d reconstructed (%s, %d vertices)", msg.object_id, msg.backend, len(msg.mesh.vertices))

    node.create_subscription(ObjectSegmentation, "/z123_node/segmentation", lambda m: segmentation.append(m), qos)
    node.create_subscription(ObjectReconstruction, "/z123_node/reconstruction", on_rec, qos)
    node.create_subscription(Image, "/camera/color/image_raw", lambda m: colour.append(m), qos_profile_sensor_data)
    try:
        while time.monotonic() - start < timeout_s:
            rclpy.spin_once(node, timeout_sec=0.2)
            for name, proc in procs.items():
                if proc.poll() is not None:
                    raise Z123Error(f"{name} exited with code {proc.returncode}: {_last_line(proc.z123_log)}")
            seen = {o.id for o in segmentation[-1].objects} if segmentation else set()
            # Done when every segmented object has its mesh and a colour frame is in hand for the overview.
            if seen and len(seen) >= expected and seen <= set(reconstructions) and colour:
                break
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return (segmentation[-1] if segmentation else None), reconstructions, (colour[0] if colour else None)


def _score(reconstructions: dict, gt: dict, gt_dir: Path) -> list[ObjectScore]:
    from z123_ros.ros.conversions import msg_to_mesh

    T_world_from_cam = np.linalg.inv(np.asarray(gt["T_cam_from_world"], dtype=np.float64))
    gt_meshes = [(o["name"], trimesh.load(gt_dir / f"object_{o['id']}.ply", force="mesh")) for o in gt["objects"]]
    scores = []
    for object_id, (msg, seconds) in sorted(reconstructions.items()):
        vertices, faces = msg_to_mesh(msg.mesh)
        mesh_world = trimesh.Trimesh(transform_points(T_world_from_cam, vertices), faces, process=False)
        # Match by nearest centroid: the node's ids are its own.
        name, gt_mesh = min(gt_meshes, key=lambda nm: np.linalg.norm(nm[1].bounds.mean(0) - mesh_world.bounds.mean(0)))
        m = metrics.evaluate_mesh(mesh_world, gt_mesh, num_points=10000, f_threshold=0.005)
        scores.append(
            ObjectScore(
                object_id, name, m["iou"], 1000 * m["chamfer"], m["f_score"], seconds, msg.backend, len(vertices)
            )
        )
    return scores


def _frame_panel(rgb: np.ndarray | None, segmentation, gt_dir: Path) -> tuple[np.ndarray, str]:
    """The overview's camera picture: the colour frame with the segmentation, or (no colour frame received before the
    demo ended) the camera's ground-truth instance image, saying so."""
    import matplotlib.pyplot as plt

    from z123_ros.ros.conversions import image_to_numpy

    if rgb is None:
        ids = cv2.imread(str(gt_dir / "instance_ids.png"), cv2.IMREAD_UNCHANGED)
        if ids is None:
            raise Z123Error("no colour frame and no ground-truth instance image: nothing to draw the overview from")
        palette = (np.array([plt.cm.tab10(k % 10)[:3] for k in range(int(ids.max()) + 1)]) * 255).astype(np.uint8)
        palette[0] = 40
        return palette[ids.astype(np.int64)], "no colour frame received: ground-truth instances shown"
    overlay = rgb.astype(np.float32)
    if segmentation is not None:
        for obj in segmentation.objects:
            crop = image_to_numpy(obj.mask) > 0
            x, y = obj.box.x_offset, obj.box.y_offset
            colour = np.array(plt.cm.tab10(obj.id % 10)[:3]) * 255
            region = overlay[y : y + crop.shape[0], x : x + crop.shape[1]]
            region[crop] = 0.45 * region[crop] + 0.55 * colour
    n_seg = len(segmentation.objects) if segmentation is not None else 0
    return overlay.astype(np.uint8), f"camera frame, {n_seg} objects segmented"


def _overview(path: Path, rgb, segmentation, reconstructions: dict, gt_dir: Path, gt: dict, scores) -> None:
    """overview.png: the camera frame (+ segmentation) and each object's mesh beside its ground truth. Always written:
    without reconstructions it shows the frame alone, titled with why."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from z123_ros.ros.conversions import msg_to_mesh

    frame, frame_title = _frame_panel(rgb, segmentation, gt_dir)
    n = max(1, len(scores))
    fig, axes = plt.subplots(n, 3, figsize=(12, 3.6 * n), squeeze=False)
    fig.suptitle("z123 demo: camera frame + segmentation | reconstruction (world frame) | ground truth")
    axes[0, 0].imshow(frame)
    axes[0, 0].set_title(frame_title if scores else f"{frame_title}; no object reconstructed", fontsize=9)
    if rgb is not None and segmentation is not None:
        for obj in segmentation.objects:
            axes[0, 0].text(obj.box.x_offset, obj.box.y_offset - 4, f"id {obj.id}", color="yellow", fontsize=9)
    for ax in axes.ravel():
        ax.set_axis_off()
    T_world_from_cam = np.linalg.inv(np.asarray(gt["T_cam_from_world"], dtype=np.float64))
    by_name = {o["name"]: o["id"] for o in gt["objects"]}
    for row, score in enumerate(scores):
        if row > 0:
            axes[row, 0].imshow(rgb if rgb is not None else frame)
        msg, _ = reconstructions[score.object_id]
        vertices, faces = msg_to_mesh(msg.mesh)
        mesh_world = trimesh.Trimesh(transform_points(T_world_from_cam, vertices), faces, process=False)
        gt_mesh = trimesh.load(gt_dir / f"object_{by_name[score.gt_name]}.ply", force="mesh")
        for col, (mesh, title) in enumerate(
            [
                (mesh_world, f"id {score.object_id}: IoU {score.iou:.2f}, CD {score.chamfer_mm:.1f} mm"),
                (gt_mesh, score.gt_name),
            ],
            start=1,
        ):
            axes[row, col].imshow(np.concatenate(render_mesh_views(mesh, 200, (30.0, 210.0), up=(0, 0, 1)), axis=1))
            axes[row, col].set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def summary_markdown(scores: list[ObjectScore], missing: list[int], config: DemoConfig, wall_s: float) -> str:
    lines = [
        f"z123 demo: seed {config.seed}, {config.num_objects} objects, sensor {config.sensor},"
        f" backend {config.backend},"
        f" {wall_s:.0f} s wall",
        "",
        "| object | ground truth | IoU | Chamfer (mm) | F@5mm | seconds | vertices |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in scores:
        lines.append(
            f"| {s.object_id} | {s.gt_name} | {s.iou:.3f} | {s.chamfer_mm:.2f} | {s.f_score_5mm:.3f} "
            f"| {s.seconds:.1f} | {s.vertices} |"
        )
    if scores:
        lines.append(
            f"| mean | | {np.mean([s.iou for s in scores]):.3f} | {np.mean([s.chamfer_mm for s in scores]):.2f} "
            f"| {np.mean([s.f_score_5mm for s in scores]):.3f} | {np.mean([s.seconds for s in scores]):.1f} | |"
        )
    if missing:
        lines.append(f"\nNot reconstructed before the timeout: objects {missing}")
    return "\n".join(lines)


def _commands(config: DemoConfig, gt_dir: Path) -> tuple[list[str], list[str]]:
    """Command lines of the simulated camera and of the node."""
    python = [sys.executable, "-m"]
    camera_cmd = [
        *python,
        "z123_ros.ros.sim_camera_node",
        "--ros-args",
        "--params-file",
        str(default_config("sim_camera.yaml")),
        "-p",
        f"scene.seed:={config.seed}",
        "-p",
        f"scene.num_objects:={config.num_objects}",
        "-p",
        f"rate_hz:={config.rate_hz}",
        "-p",
        f"ground_truth_dir:={gt_dir}",
        "-p",
        f"scene.sensor:={config.sensor}",
    ]
    node_cmd = [
        *python,
        "z123_ros.ros.node",
        "--ros-args",
        "--params-file",
        str(default_config("z123_node.yaml")),
        "-p",
        f"backend:={config.backend}",
    ]
    if config.model:
        node_cmd += ["-p", f"model_path:={config.model}"]
    for p in config.extra_params:
        node_cmd += ["-p", p]
    return camera_cmd, node_cmd


def run_demo(config: DemoConfig) -> tuple[list[ObjectScore], list[int]]:
    """Run the demo; returns the per-object scores and the ids segmented but not reconstructed in time."""
    from z123_ros.ros.conversions import image_to_rgb, msg_to_mesh, pointcloud2_to_points

    config.check()
    t0 = time.monotonic()
    out = Path(config.out)
    work = new_staging(out)  # swapped in as a whole at the end: a killed demo leaves the previous output whole
    try:
        gt_dir = work / "ground_truth"
        env = _ros_env(work / "ros_log")
        camera_cmd, node_cmd = _commands(config, gt_dir)
        procs = {
            "z123-node": _start(node_cmd, env, work / "node.log"),
            "z123-sim-camera": _start(camera_cmd, env, work / "sim_camera.log"),
        }
        try:
            segmentation, reconstructions, colour = _collect(env, procs, config.timeout_s, config.num_objects)
        finally:
            for proc in procs.values():
                _stop(proc)
        if not (gt_dir / "scene.json").is_file():
            raise Z123Error(f"the simulated camera wrote no ground truth; see {work / 'sim_camera.log'}")
        gt = json.loads((gt_dir / "scene.json").read_text())
        for object_id, (msg, _) in reconstructions.items():
            write_mesh_ply(work / f"object_{object_id}_mesh.ply", *msg_to_mesh(msg.mesh))
            write_points_ply(work / f"object_{object_id}_points.ply", pointcloud2_to_points(msg.cloud).xyz)
        scores = _score(reconstructions, gt, gt_dir)
        seen = [o.id for o in segmentation.objects] if segmentation is not None else []
        missing = sorted(set(seen) - set(reconstructions))
        rgb = image_to_rgb(colour) if colour is not None else None
        _overview(work / "overview.png", rgb, segmentation, reconstructions, gt_dir, gt, scores)
        wall = time.monotonic() - t0
        (work / "summary.md").write_text(summary_markdown(scores, missing, config, wall) + "\n")
        (work / "summary.json").write_text(
            json.dumps(
                {
                    "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
                    "objects": [asdict(s) for s in scores],
                    "missing": missing,
                    "segmented_ids": seen,
                    "wall_s": wall,
                },
                indent=2,
            )
        )
        replace_folder(work, out)
        return scores, missing
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _main(args: argparse.Namespace) -> int:
    config = DemoConfig(
        out=Path(args.out),
        seed=args.seed,
        num_objects=args.objects,
        backend=args.backend,
        model=args.model or "",
        timeout_s=args.timeout,
        extra_params=args.param or [],
        sensor=args.sensor,
    )
    try:
        scores, missing = run_demo(config)
    except Z123Error as exc:
        sys.stderr.write(f"z123 demo: {exc}\n")
        return 2
    sys.stdout.write((Path(config.out) / "summary.md").read_text())
    sys.stdout.write(f"\noutputs in {config.out}/ (overview.png, summary.md, object_<id>_mesh.ply, ...)\n")
    if not scores:
        sys.stderr.write("z123 demo: no object was reconstructed; see node.log in the output folder\n")
        return 1
    return 1 if missing else 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="the simulated tabletop demo, end to end (camera -> node -> Ray -> meshes)")
    d = DemoConfig()
    p.add_argument("--out", default=str(d.out), help=f"output folder (default {d.out})")
    p.add_argument("--seed", type=int, default=d.seed, help="scene seed")
    p.add_argument("--objects", type=int, default=d.num_objects, help="objects on the table (1..8)")
    p.add_argument("--backend", default=d.backend, help="a registered reconstruction backend (depth, hull, ...)")
    p.add_argument("--model", help="Zero-1-to-3 folder or hub id (multiview / zero123 backends)")
    p.add_argument("--timeout", type=float, default=d.timeout_s, help="seconds to wait for reconstructions")
    p.add_argument("--param", action="append", metavar="NAME:=VALUE", help="extra node parameter (repeatable)")
    p.add_argument(
        "--sensor",
        default=d.sensor,
        choices=SENSORS,
        help=f"depth sensor model of the simulated camera (default {d.sensor}; ideal = exact depth)",
    )
    p.set_defaults(func=_main)
