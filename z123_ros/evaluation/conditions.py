"""The conditions benchmark: segmentation and reconstruction per viewing condition, beside the baselines.

``run_conditions(ConditionsConfig(spec="all", real="../shared/data/real/ycbv-dev"))`` renders a few seeded scenes
per condition bucket (``z123_ros.sim.conditions.CONDITION_BUCKETS``: sensor presets, textures, clutter, range,
elevation, FoV, resolution, occlusion, hollow objects ...) and reads the real frames, then in the same run:

- segments every frame with the project's segmenter and with the Open3D ``segment_plane`` + ``cluster_dbscan``
  baseline, scored per ground-truth object (:mod:`z123_ros.evaluation.segmentation`);
- reconstructs every ground-truth object from its own ground-truth mask with the ``depth`` backend and the convex
  hull, scored against the ground-truth mesh in the camera frame (volumetric IoU, Chamfer, F@5mm). Simulated frames
  give the backends the camera pose (a robot knows it); real frames do not (the backend must fit the table itself).

Everything is a pure function of the config (seeded scenes, seeded baselines); only the timings vary.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import trimesh
from scipy.spatial import Delaunay

from z123_ros.camera import CameraIntrinsics, transform_points
from z123_ros.errors import ConfigError, Z123Error
from z123_ros.evaluation.baselines import open3d_plane_dbscan
from z123_ros.evaluation.real import RealFrame, load_real_frames, real_frame_folders, visible_fractions
from z123_ros.evaluation.segmentation import MIN_VISIBLE, FrameScore, score_frame
from z123_ros.geometry import fit_plane_ransac
from z123_ros.reconstruction import ReconstructionInput, backend_names, reconstruct
from z123_ros.reconstruction.metrics import (
    chamfer_distance,
    f_score,
    occupancy,
    sample_surface,
    union_grid,
)
from z123_ros.segmentation import METHODS as SEGMENTATION_METHODS
from z123_ros.segmentation import SegmentationConfig, make_segmenter
from z123_ros.sim import RenderedScene
from z123_ros.sim.conditions import CONDITION_BUCKETS, render_condition

logger = logging.getLogger(__name__)

#: Segmentation methods the runner knows: the project's (``segmentation.method``) and the baseline a user would write.
SEGMENTERS = (*SEGMENTATION_METHODS, "open3d")


@dataclass
class ConditionsConfig:
    """What the conditions benchmark runs."""

    spec: str = "all"
    """Buckets: ``all`` (every named bucket but the random sweep), a comma list of names, ``random:N`` (N seeds of
    the seeded sweep over everything), or a mix (``all,random:20``); empty = only the real frames."""
    seeds_per_bucket: int = 2
    """Scenes rendered per named bucket (each a different seed)."""
    seed: int = 0
    """First scene seed; bucket scenes use ``seed, seed + 1, ...``."""
    real: str | None = None
    """Folder of real frames (a set such as ``ycbv-dev`` or one frame); labelled frames become the bucket
    ``real:<set name>``; unlabelled ones are segmented for a look (a picture and object counts), not scored."""
    segmenter: str = "tabletop"
    """The project's segmenter under test."""
    segmentation_baseline: str = "open3d"
    """Segmentation baseline run side by side (``none`` to skip)."""
    backend: str = "depth"
    """Reconstruction backend under test."""
    baseline: str = "hull"
    """Reconstruction baseline run side by side (``none`` to skip)."""
    segmentation: bool = True
    """Run the segmentation part."""
    reconstruction: bool = True
    """Run the reconstruction part."""
    max_objects: int = 3
    """Objects reconstructed per frame at most (the most visible first): reconstruction and its scoring dominate
    the run time."""
    min_pixels: int = 200
    """Objects with fewer visible pixels are not reconstructed (too little evidence for any method)."""
    iou_resolution: int = 32
    """Occupancy grid side of the volumetric IoU (the paper-style report uses 64; 32 keeps a full sweep within
    minutes on 2 cores and moves IoU by about 0.01)."""
    num_points: int = 5000
    """Surface samples per mesh for Chamfer and F-score."""
    f_threshold_m: float = 0.005
    """F-score threshold, metres."""
    min_visible: float = MIN_VISIBLE
    """Objects at least this visible count for found / missed."""

    def check(self) -> None:
        if self.seeds_per_bucket < 1 or self.max_objects < 1 or self.min_pixels < 1:
            raise ConfigError("seeds_per_bucket, max_objects and min_pixels must be >= 1")
        if self.iou_resolution < 8 or self.num_points < 100 or not self.f_threshold_m > 0:
            raise ConfigError("iou_resolution >= 8, num_points >= 100 and f_threshold_m > 0 are required")
        for name in (self.segmenter, self.segmentation_baseline):
            if name not in (*SEGMENTERS, "none"):
                raise ConfigError(f"unknown segmenter {name!r}; choose one of {', '.join(SEGMENTERS)}")
        for name in (self.backend, self.baseline):
            if name not in (*backend_names(), "none"):
                raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(backend_names())}")
        if not self.spec.strip() and not self.real:
            raise ConfigError("nothing to run: give condition buckets (--conditions) or real frames (--real)")
        resolve_spec(self.spec, self.seeds_per_bucket, self.seed)  # raises on unknown bucket names

    def segmenters(self) -> list[str]:
        out = [self.segmenter] if self.segmentation else []
        if self.segmentation and self.segmentation_baseline not in ("none", self.segmenter):
            out.append(self.segmentation_baseline)
        return out

    def backends(self) -> list[str]:
        out = [self.backend] if self.reconstruction and self.backend != "none" else []
        if self.reconstruction and self.baseline not in ("none", self.backend):
            out.append(self.baseline)
        return out


# ----------------------------------------------------------------------------------------------------------------
# Scene sources: the simulator's named condition buckets.


def bucket_names() -> list[str]:
    """The simulator's named buckets (``CONDITION_BUCKETS``), ``random`` included."""
    return list(CONDITION_BUCKETS)


def resolve_spec(spec: str, seeds_per_bucket: int, seed: int = 0) -> list[tuple[str, int]]:
    """``(bucket, scene seed)`` pairs of a spec such as ``all``, ``clean,range_far`` or ``all,random:20``."""
    names = bucket_names()
    out: list[tuple[str, int]] = []
    for token in (t.strip() for t in spec.split(",")):
        if not token:
            continue
        if token == "all":
            out += [(b, seed + i) for b in names if b != "random" for i in range(seeds_per_bucket)]
        elif token.startswith("random:"):
            try:
                count = int(token.split(":", 1)[1])
            except ValueError as exc:
                raise ConfigError(f"bad condition spec {token!r}: random:N needs a number") from exc
            out += [("random", seed + i) for i in range(count)]
        elif token in names:
            out += [(token, seed + i) for i in range(seeds_per_bucket)]
        else:
            raise ConfigError(f"unknown condition bucket {token!r}; choose from {', '.join(names)}, all, random:N")
    return list(dict.fromkeys(out))


# ----------------------------------------------------------------------------------------------------------------
# One frame with ground truth, whatever its source.


@dataclass
class CaseObject:
    """A ground-truth object of a frame."""

    id: int
    """Its value in ``Case.gt_ids``."""
    name: str
    """YCB name."""
    mesh_cam: trimesh.Trimesh
    """Ground-truth mesh in the camera frame, metres."""
    visible_fraction: float
    """Visible pixels / pixels when alone in the image (NaN unknown)."""
    pixels: int
    """Visible pixels."""
    range_m: float
    """Distance from the camera to the centre of its bounding box."""
    elevation_deg: float
    """Elevation of the camera seen from the object over the support plane (90 = from straight above)."""


@dataclass
class Case:
    """One frame of the benchmark."""

    bucket: str
    name: str
    rgb: np.ndarray
    depth_m: np.ndarray
    intrinsics: CameraIntrinsics
    gt_ids: np.ndarray | None
    """(H, W) int32 instance ids, 0 = background (table, clutter, walls); None for an unlabelled real frame."""
    objects: list[CaseObject]
    sensor: str
    """Sensor preset of a simulated frame; ``real`` for real frames."""
    T_cam_from_world: np.ndarray | None = None
    """Camera pose given to the reconstruction backends (simulated frames only)."""


def _place(mesh: trimesh.Trimesh, plane_cam: np.ndarray | None) -> tuple[float, float]:
    centre = np.asarray(mesh.bounds, dtype=np.float64).mean(axis=0)
    distance = float(np.linalg.norm(centre))
    if plane_cam is None or distance == 0:
        return distance, math.nan
    # The camera is at the origin: the object-to-camera direction is -centre; the plane normal points to the camera.
    sin_elev = float(np.clip(-(plane_cam[:3] @ centre) / distance, -1.0, 1.0))
    return distance, math.degrees(math.asin(sin_elev))


def _sensor_name(config: Any) -> str:
    sensor = getattr(config, "sensor", "ideal")
    return str(getattr(sensor, "name", sensor))


def case_from_scene(bucket: str, seed: int, scene: RenderedScene) -> Case:
    """A simulated frame as a benchmark case (ground truth moved into the camera frame)."""
    plane = scene.support_plane_cam
    objects = []
    for obj in scene.objects:
        mesh = trimesh.Trimesh(
            transform_points(scene.T_cam_from_world, np.asarray(obj.mesh_world.vertices)), obj.mesh_world.faces
        )
        objects.append(CaseObject(obj.id, obj.name, mesh, obj.visible_fraction, obj.pixel_count, *_place(mesh, plane)))
    return Case(
        bucket=bucket,
        name=f"{bucket}/{seed}",
        rgb=scene.rgb,
        depth_m=scene.depth_m,
        intrinsics=scene.intrinsics,
        gt_ids=scene.instance_ids,
        objects=objects,
        sensor=_sensor_name(scene.config),
        T_cam_from_world=scene.T_cam_from_world,
    )


def case_from_real(bucket: str, frame: RealFrame) -> Case:
    """A labelled real frame as a benchmark case (no camera pose: the table is fitted here only for the plots)."""
    points, _ = frame.intrinsics.backproject(frame.depth_m, frame.labels == 0)
    fit = fit_plane_ransac(points[::7], 0.01, seed=0) if len(points) >= 3 else None
    plane = fit.plane if fit is not None else None
    fractions = visible_fractions(frame)
    objects = [
        CaseObject(
            o.instance_id, o.name, o.mesh_cam, fractions[o.instance_id], int(o.mask.sum()), *_place(o.mesh_cam, plane)
        )
        for o in frame.objects
    ]
    name = f"{bucket}/{frame.name}"
    return Case(bucket, name, frame.rgb, frame.depth_m, frame.intrinsics, frame.labels, objects, "real")


def count_cases(config: ConditionsConfig) -> int:
    """Frames :func:`iter_cases` yields at most (simulated scenes plus real frame folders)."""
    real = len(real_frame_folders(config.real)) if config.real else 0
    return len(resolve_spec(config.spec, config.seeds_per_bucket, config.seed)) + real


def iter_cases(config: ConditionsConfig) -> Iterator[Case]:
    """The simulated scenes of ``config.spec`` in order, then the labelled real frames."""
    for bucket, seed in resolve_spec(config.spec, config.seeds_per_bucket, config.seed):
        try:
            scene = render_condition(bucket, seed)
        except ConfigError as exc:  # e.g. the sim cannot place this many touching objects for this seed
            logger.warning("bucket %s seed %d: no scene (%s)", bucket, seed, exc)
            continue
        yield case_from_scene(bucket, seed, scene)
    if config.real:
        for frame in load_real_frames(config.real):
            parent = Path(frame.folder).resolve().parent.name if frame.folder else "real"
            if frame.labelled and frame.objects:
                yield case_from_real(f"real:{parent}", frame)
            elif config.segmentation:  # no ground truth: segmented for a look, not scored
                yield Case(
                    f"unlabelled:{parent}", f"unlabelled:{parent}/{frame.name}", frame.rgb, frame.depth_m,
                    frame.intrinsics, None, [], "real",
                )  # fmt: skip


# ----------------------------------------------------------------------------------------------------------------
# Running the methods on a case.


@dataclass
class SegmentationRecord:
    """One segmenter on one frame."""

    bucket: str
    case: str
    method: str
    sensor: str
    score: FrameScore
    range_m: float
    """Median range of the frame's ground-truth objects."""
    elevation_deg: float
    """Median camera elevation over the frame's ground-truth objects."""
    error: str | None = None
    """Why the segmenter failed on this frame (then every object counts as missed)."""
    object_range_m: dict[int, float] = field(default_factory=dict)
    """Ground-truth id -> range of that object (for per-object plots)."""
    object_elevation_deg: dict[int, float] = field(default_factory=dict)
    """Ground-truth id -> camera elevation over that object."""


@dataclass
class ReconstructionRecord:
    """One reconstruction backend on one object."""

    bucket: str
    case: str
    object: str
    backend: str
    sensor: str
    range_m: float
    elevation_deg: float
    visible_fraction: float
    ok: bool
    error: str | None = None
    iou: float = math.nan
    chamfer_mm: float = math.nan
    f_score: float = math.nan
    seconds: float = math.nan
    components: int = 0
    """Connected components of the mesh (a grasp planner needs 1)."""
    confidence: float = math.nan
    """The confidence the backend reported."""


class _Segmenters:
    """The segmenters of a run, built once (``make_segmenter`` raises ConfigError for one that cannot be built)."""

    def __init__(self, methods: list[str]) -> None:
        self._made = {m: make_segmenter(SegmentationConfig(method=m)) for m in methods if m != "open3d"}

    def __call__(self, method: str, case: Case) -> list[np.ndarray]:
        if method == "open3d":
            labels = open3d_plane_dbscan(case.rgb, case.depth_m, case.intrinsics)
            return [labels == k for k in range(1, int(labels.max()) + 1)]
        # No camera pose, like bench_segmentation: the segmenter fits the table itself.
        return [o.mask for o in self._made[method].segment(case.rgb, case.intrinsics, case.depth_m).objects]


def segment_case(case: Case, methods: list[str], segmenters: Callable[[str, Case], list[np.ndarray]]):
    """One :class:`SegmentationRecord` per method."""
    visible = {o.id: o.visible_fraction for o in case.objects}
    ranges = [o.range_m for o in case.objects]
    elevations = [o.elevation_deg for o in case.objects]
    where = {
        "range_m": float(np.nanmedian(ranges)) if ranges else math.nan,
        "elevation_deg": float(np.nanmedian(elevations)) if elevations and np.isfinite(elevations).any() else math.nan,
        "object_range_m": {o.id: o.range_m for o in case.objects},
        "object_elevation_deg": {o.id: o.elevation_deg for o in case.objects},
    }
    records = []
    for method in methods:
        t0 = time.perf_counter()
        error = None
        try:
            masks = segmenters(method, case)
        except Z123Error as exc:
            logger.warning("%s on %s failed: %s", method, case.name, exc)
            masks, error = [], f"{type(exc).__name__}: {exc}"
        score = score_frame(masks, case.gt_ids, visible, seconds=time.perf_counter() - t0)
        records.append(SegmentationRecord(case.bucket, case.name, method, case.sensor, score, error=error, **where))
    return records


def _inside_convex(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """Exact inside test for a convex mesh (what its winding number > 0.5 says, at a fraction of the cost)."""
    return Delaunay(np.asarray(mesh.vertices)).find_simplex(points) >= 0


def mesh_metrics(pred: trimesh.Trimesh, gt: trimesh.Trimesh, config: ConditionsConfig) -> dict[str, float]:
    """``evaluate_mesh``'s protocol (metric, no normalisation): IoU on a grid over both boxes, Chamfer, F-score.

    Composed from z123_ros.reconstruction.metrics so that a convex prediction (the hull baseline) takes the exact
    convex inside test instead of winding numbers: the baseline's scoring otherwise dominates a sweep's run time.
    """
    grid = union_grid(pred.bounds, gt.bounds, config.iou_resolution)
    inside_pred = _inside_convex(pred, grid) if pred.is_convex else occupancy(pred, grid)
    inside_gt = occupancy(gt, grid)
    union = np.count_nonzero(inside_pred | inside_gt)
    p_pts, g_pts = sample_surface(pred, config.num_points, seed=0), sample_surface(gt, config.num_points, seed=1)
    return {
        "iou": float(np.count_nonzero(inside_pred & inside_gt) / union) if union else 0.0,
        "chamfer": chamfer_distance(p_pts, g_pts),
        "f_score": f_score(p_pts, g_pts, config.f_threshold_m),
    }


def _score_mesh(result, gt: trimesh.Trimesh, config: ConditionsConfig, record: ReconstructionRecord) -> None:
    if not result.metric or result.frame != "camera":
        record.ok, record.error = False, f"not a metric camera-frame result (frame {result.frame!r})"
        return
    pred = trimesh.Trimesh(np.asarray(result.vertices, np.float64), np.asarray(result.faces, np.int64), process=False)
    metric = mesh_metrics(pred, gt, config)
    record.iou, record.f_score = metric["iou"], metric["f_score"]
    record.chamfer_mm = 1e3 * metric["chamfer"]
    record.components = len(trimesh.graph.connected_components(pred.face_adjacency, nodes=np.arange(len(pred.faces))))
    record.confidence = float(result.confidence)


def case_inputs(case: Case, config: ConditionsConfig) -> list[tuple[CaseObject, ReconstructionInput]]:
    """The objects of a case the benchmark reconstructs (the most visible first) and their inputs, from their
    ground-truth masks."""
    chosen = sorted((o for o in case.objects if o.pixels >= config.min_pixels), key=lambda o: -o.pixels)
    out = []
    for obj in chosen[: config.max_objects]:
        inp = ReconstructionInput(
            rgb=case.rgb,
            mask=case.gt_ids == obj.id,
            intrinsics=case.intrinsics,
            depth_m=case.depth_m,
            T_cam_from_world=case.T_cam_from_world,
            labels=case.gt_ids,  # what the node passes too: space behind the other objects is unknown
        )
        out.append((obj, inp))
    return out


def reconstruct_case(case: Case, config: ConditionsConfig) -> list[ReconstructionRecord]:
    """Reconstruct the most visible objects of a case from their ground-truth masks with every backend."""
    records = []
    for obj, inp in case_inputs(case, config):
        for backend in config.backends():
            record = ReconstructionRecord(
                case.bucket, case.name, obj.name, backend, case.sensor, obj.range_m, obj.elevation_deg,
                obj.visible_fraction, ok=True,
            )  # fmt: skip
            t0 = time.perf_counter()
            try:
                result = reconstruct(inp, backend)
                record.seconds = time.perf_counter() - t0
                _score_mesh(result, obj.mesh_cam, config, record)
            except Z123Error as exc:
                logger.warning("%s on %s %s failed: %s", backend, case.name, obj.name, exc)
                record.ok, record.error = False, f"{type(exc).__name__}: {exc}"
            records.append(record)
    return records


@dataclass
class UnlabelledRecord:
    """The segmenters on a real frame without ground truth (for a look: objects found, nothing of the carpet?)."""

    case: str
    rgb: np.ndarray
    """(H, W, 3) uint8 frame."""
    labels: dict[str, np.ndarray]
    """method -> (H, W) int32 labels (k = its k-th mask)."""
    seconds: dict[str, float]
    """method -> wall time."""

    def objects(self, method: str) -> int:
        return int(self.labels[method].max())


def segment_unlabelled(case: Case, methods: list[str], segmenters: Callable[[str, Case], list[np.ndarray]]):
    """Run every segmenter on a frame without ground truth; failures give an empty label image."""
    labels, seconds = {}, {}
    for method in methods:
        t0 = time.perf_counter()
        try:
            masks = segmenters(method, case)
        except Z123Error as exc:
            logger.warning("%s on %s failed: %s", method, case.name, exc)
            masks = []
        seconds[method] = time.perf_counter() - t0
        image = np.zeros(case.depth_m.shape, dtype=np.int32)
        for k, mask in enumerate(masks, start=1):
            image[mask] = k
        labels[method] = image
    return UnlabelledRecord(case.name, case.rgb, labels, seconds)


@dataclass
class ConditionsResult:
    """Every record of one conditions run."""

    config: ConditionsConfig
    segmentation: list[SegmentationRecord] = field(default_factory=list)
    reconstruction: list[ReconstructionRecord] = field(default_factory=list)
    cases: list[str] = field(default_factory=list)
    """Names of the scored cases in run order."""
    seconds_total: float = 0.0
    unlabelled: list[UnlabelledRecord] = field(default_factory=list)
    """Real frames without ground truth, segmented but not scored."""


def run_conditions(
    config: ConditionsConfig, progress: Callable[[int, int, str], None] | None = None
) -> ConditionsResult:
    """Run the benchmark; ``progress(done, total, case name)`` after each case."""
    config.check()
    start = time.perf_counter()
    total = count_cases(config)
    segmenters = _Segmenters(config.segmenters()) if config.segmentation else None
    result = ConditionsResult(config)
    for done, case in enumerate(iter_cases(config), start=1):
        if case.gt_ids is None:
            result.unlabelled.append(segment_unlabelled(case, config.segmenters(), segmenters))
        else:
            if segmenters is not None:
                result.segmentation += segment_case(case, config.segmenters(), segmenters)
            if config.reconstruction:
                result.reconstruction += reconstruct_case(case, config)
            result.cases.append(case.name)
        logger.info("[%d/%d] %s done", done, total, case.name)
        if progress is not None:
            progress(done, total, case.name)
    result.seconds_total = time.perf_counter() - start
    return result
