"""Run reconstruction backends over the evaluation set and score them.

Two 3D protocols, both reported:

1. **Metric, world frame** (what a robot needs): the reconstruction (metres, camera frame) is moved to the world
   (table) frame with ``T_cam_from_world`` and compared with the scan as it stands on the table. Volumetric IoU on a
   64^3 grid over the union of both bounding boxes, Chamfer distance in millimetres (mean of both nearest-neighbour
   directions), F-score at ``f_threshold_m``. Errors of scale and placement count.
2. **Unit box** (the paper's protocol as SyncDreamer reproduces it): each mesh is normalised to its own bounding box
   (centred, longest side 1) first; Chamfer in unit-box units, F-score at ``f_threshold_unit``. Scale and placement
   errors are forgiven, shape errors remain.

Plus the silhouette IoU of the reconstruction rendered at the 12 held-out viewpoints, and, when a Zero-1-to-3 model
is given, PSNR / SSIM of its generated views against the held-out renders.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import trimesh

from z123_ros.camera import invert, relative_view, transform_points
from z123_ros.errors import ConfigError, Z123Error
from z123_ros.evaluation.dataset import EvalObject, EvalSetConfig, iter_eval_set
from z123_ros.evaluation.image_metrics import mask_iou, psnr, ssim
from z123_ros.novel_views.preprocess import preprocess_for_zero123
from z123_ros.reconstruction import ReconstructionConfig, ReconstructionInput, get_backend, reconstruct
from z123_ros.reconstruction.metrics import evaluate_mesh
from z123_ros.sim import render_object_views

if TYPE_CHECKING:
    from z123_ros.novel_views import Zero123Pipeline

logger = logging.getLogger(__name__)


@dataclass
class EvalConfig:
    """What to evaluate and how to score it."""

    backend: str = "depth"
    """Reconstruction backend under test (``depth``, ``multiview``, ``zero123`` or ``hull``)."""
    baseline: str | None = "hull"
    """Backend run side by side as the baseline; None = none."""
    preset: str = "default"
    """``ReconstructionConfig`` preset (``default`` = the paper's settings, ``quick`` = CPU smoke runs)."""
    model: str | None = None
    """Zero-1-to-3 model folder or hub id; needed by the learned backends, enables the novel-view metrics."""
    steps: int | None = None
    """Override of the optimisation steps of the learned backends (SJC steps, multiview fit steps)."""
    device: str = "cpu"
    """Torch device of the learned backends and the novel-view pipeline."""
    num_points: int = 20000
    """Surface samples per mesh for Chamfer and F-score."""
    f_threshold_m: float = 0.005
    """F-score distance threshold of the metric protocol, metres."""
    f_threshold_unit: float = 0.05
    """F-score distance threshold of the unit-box protocol, unit-box units."""
    iou_resolution: int = 64
    """Occupancy grid side for volumetric IoU (the protocol: 64)."""
    silhouettes: bool = True
    """Render each reconstruction at the held-out viewpoints and score its silhouette IoU."""
    novel_view_steps: int = 50
    """DDIM steps of the novel-view metrics (the paper's demo: 50)."""
    novel_view_guidance: float = 3.0
    """Classifier-free guidance of the novel-view metrics (the paper's demo: 3.0)."""
    seed: int = 0
    """Seed of the novel-view sampling noise."""

    def backends(self) -> list[str]:
        out = [self.backend]
        if self.baseline and self.baseline != self.backend:
            out.append(self.baseline)
        return out

    def check(self) -> None:
        if any(get_backend(name).needs_model for name in self.backends()) and not self.model:
            raise ConfigError(f"the {self.backend} backend needs a Zero-1-to-3 model: pass --model PATH_OR_ID")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.f_threshold_m <= 0 or self.f_threshold_unit <= 0 or self.iou_resolution < 8 or self.num_points < 100:
            raise ConfigError("f-score thresholds must be > 0, iou_resolution >= 8, num_points >= 100")


@dataclass
class BackendScore:
    """One backend on one object."""

    backend: str
    ok: bool
    """False when the backend raised (see ``error``); the metrics are then NaN."""
    error: str | None = None
    seconds: float = math.nan
    """Wall time of ``reconstruct()``."""
    iou: float = math.nan
    """Volumetric IoU, metric world frame."""
    chamfer_mm: float = math.nan
    """Chamfer distance, millimetres, metric world frame."""
    f_score: float = math.nan
    """F-score at ``f_threshold_m``, metric world frame."""
    iou_unit: float = math.nan
    """Volumetric IoU after unit-box normalisation of both meshes."""
    chamfer_unit: float = math.nan
    """Chamfer distance after unit-box normalisation (unit-box units)."""
    f_score_unit: float = math.nan
    """F-score at ``f_threshold_unit`` after unit-box normalisation."""
    silhouette_iou: float = math.nan
    """Mean mask IoU of the reconstruction rendered at the held-out viewpoints."""
    extent_error_mm: float = math.nan
    """Largest error of the bounding-box size along x, y, z, millimetres (world frame)."""
    timings: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class NovelViewScore:
    """The Zero-1-to-3 model's generated held-out views against the renders."""

    psnr: float
    ssim: float
    seconds: float
    num_views: int


@dataclass
class ObjectEvaluation:
    """All scores of one object."""

    index: int
    name: str
    size_m: float
    """Longest side of the ground-truth bounding box."""
    visible_fraction: float
    input_polar_deg: float
    scores: dict[str, BackendScore]
    novel_views: NovelViewScore | None = None


SUMMARY_FIELDS = (
    "iou",
    "chamfer_mm",
    "f_score",
    "iou_unit",
    "chamfer_unit",
    "f_score_unit",
    "silhouette_iou",
    "extent_error_mm",
    "seconds",
)


@dataclass
class EvalResult:
    """The evaluation of one or two backends over a set."""

    set_config: EvalSetConfig
    config: EvalConfig
    objects: list[ObjectEvaluation]
    seconds_total: float = 0.0

    def summary(self) -> dict[str, dict[str, float]]:
        """backend -> {metric_mean, metric_median, ..., n_ok, n_failed}; novel views under ``"novel_views"``."""
        out: dict[str, dict[str, float]] = {}
        for backend in self.config.backends():
            scores = [o.scores[backend] for o in self.objects if backend in o.scores]
            ok = [s for s in scores if s.ok]
            row: dict[str, float] = {"n_ok": len(ok), "n_failed": len(scores) - len(ok)}
            for name in SUMMARY_FIELDS:
                values = np.array([getattr(s, name) for s in ok], dtype=np.float64)
                values = values[np.isfinite(values)]
                row[f"{name}_mean"] = float(values.mean()) if len(values) else math.nan
                row[f"{name}_median"] = float(np.median(values)) if len(values) else math.nan
                row[f"{name}_std"] = float(values.std()) if len(values) else math.nan
            out[backend] = row
        baseline = self.config.baseline
        if baseline and baseline != self.config.backend:
            pairs = [
                (o.scores[self.config.backend], o.scores[baseline])
                for o in self.objects
                if o.scores[self.config.backend].ok and o.scores[baseline].ok
            ]
            out[self.config.backend]["iou_win_rate"] = (
                float(np.mean([a.iou > b.iou for a, b in pairs])) if pairs else math.nan
            )
            out[self.config.backend]["chamfer_win_rate"] = (
                float(np.mean([a.chamfer_mm < b.chamfer_mm for a, b in pairs])) if pairs else math.nan
            )
        nv = [o.novel_views for o in self.objects if o.novel_views is not None]
        if nv:
            out["novel_views"] = {
                "psnr_mean": float(np.mean([n.psnr for n in nv])),
                "ssim_mean": float(np.mean([n.ssim for n in nv])),
                "seconds_mean": float(np.mean([n.seconds for n in nv])),
                "n_objects": len(nv),
            }
        return out

    def to_json(self) -> dict:
        return {
            "set_config": _jsonable(asdict(self.set_config)),
            "config": _jsonable(asdict(self.config)),
            "summary": _jsonable(self.summary()),
            "objects": [_jsonable(asdict(o)) for o in self.objects],
            "seconds_total": self.seconds_total,
        }


def _jsonable(value: Any) -> Any:
    """Plain JSON types; NaN/inf -> None (JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def _reconstruction_config(config: EvalConfig):
    rc = ReconstructionConfig.preset(config.preset)
    rc.device = config.device
    if config.steps is not None:
        rc.sjc.steps = config.steps
        rc.multiview.fit_steps = config.steps
    return rc


def _mesh_in_world(result, obj: EvalObject) -> trimesh.Trimesh | None:
    """The reconstruction in the world frame (metres), or None when it is not metric (object-normalised frame)."""
    if not result.metric or result.frame != "camera":
        return None
    T_world_from_cam = invert(obj.input.T_cam_from_world)
    vertices = transform_points(T_world_from_cam, np.asarray(result.vertices, dtype=np.float64))
    return trimesh.Trimesh(vertices, np.asarray(result.faces, dtype=np.int64), process=False)


def score_backend(
    obj: EvalObject, backend: str, config: EvalConfig, reconstruction_config=None, pipeline=None
) -> BackendScore:
    """Reconstruct ``obj`` from its input view with ``backend`` and score it (failures become a failed score)."""
    inp = ReconstructionInput(
        rgb=obj.input.rgb,
        mask=obj.input.mask,
        intrinsics=obj.input.intrinsics,
        depth_m=obj.input.depth_m,
        T_cam_from_world=obj.input.T_cam_from_world,
    )
    t0 = time.perf_counter()
    try:
        result = reconstruct(inp, backend, reconstruction_config, pipeline)
    except Z123Error as exc:
        logger.warning("%s on %s failed: %s", backend, obj.name, exc)
        return BackendScore(backend=backend, ok=False, error=f"{type(exc).__name__}: {exc}")
    seconds = time.perf_counter() - t0
    score = BackendScore(
        backend=backend, ok=True, seconds=seconds, timings=dict(result.timings), info=dict(result.info)
    )
    gt = obj.mesh_world
    pred_world = _mesh_in_world(result, obj)
    pred_any = pred_world if pred_world is not None else trimesh.Trimesh(result.vertices, result.faces, process=False)
    unit = evaluate_mesh(
        pred_any,
        gt,
        num_points=config.num_points,
        f_threshold=config.f_threshold_unit,
        normalize=True,
        resolution=config.iou_resolution,
    )
    score.iou_unit, score.chamfer_unit, score.f_score_unit = unit["iou"], unit["chamfer"], unit["f_score"]
    if pred_world is not None:
        metric = evaluate_mesh(
            pred_world,
            gt,
            num_points=config.num_points,
            f_threshold=config.f_threshold_m,
            normalize=False,
            resolution=config.iou_resolution,
        )
        score.iou, score.chamfer_mm, score.f_score = metric["iou"], 1000.0 * metric["chamfer"], metric["f_score"]
        score.extent_error_mm = 1000.0 * float(np.abs(pred_world.extents - gt.extents).max())
        if config.silhouettes:
            views = render_object_views(
                pred_world,
                [tuple(v) for v in obj.held_out.views],
                size=obj.held_out.intrinsics.width,
                fov_deg=_fov_deg(obj),
                target=obj.held_out.target,
            )
            score.silhouette_iou = float(
                np.mean([mask_iou(p, g) for p, g in zip(views.masks, obj.held_out.masks, strict=True)])
            )
    return score


def _fov_deg(obj: EvalObject) -> float:
    intr = obj.held_out.intrinsics
    return float(np.degrees(2.0 * np.arctan(0.5 * intr.width / intr.fx)))


def score_novel_views(obj: EvalObject, pipeline: Zero123Pipeline, config: EvalConfig) -> NovelViewScore:
    """Generate the held-out views from the input view and compare them with the renders.

    The model's outputs follow its training framing (object centred, longer side 200/256 of the frame), so the
    held-out renders are re-framed the same way (``preprocess_for_zero123`` on their own masks) before comparison;
    d_radius is 0 since the input crop removes the robot camera's distance.
    """
    import torch

    prepared = preprocess_for_zero123(
        obj.input.rgb,
        obj.input.mask,
        intrinsics=obj.input.intrinsics,
        depth_m=obj.input.depth_m,
        T_cam_from_world=obj.input.T_cam_from_world,
    )
    T_world_from_input = invert(obj.input.T_cam_from_world)
    centre = obj.held_out.target
    views = []
    for T_cam_from_world in obj.held_out.T_cam_from_world:
        d_polar, d_azimuth, _ = relative_view(T_world_from_input, invert(T_cam_from_world), centre)
        views.append((d_polar, d_azimuth, 0.0))
    generator = torch.Generator().manual_seed(config.seed + obj.index)
    out = pipeline(
        prepared.image,
        views=views,
        input_polar_deg=prepared.input_polar_deg,
        num_inference_steps=config.novel_view_steps,
        guidance_scale=config.novel_view_guidance,
        generator=generator,
        output_type="np",
    )
    images = np.asarray(out.images)
    size = images.shape[1]
    object_size = max(1, round(size * 200 / 256))
    psnrs, ssims = [], []
    for generated, rgba in zip(images, obj.held_out.rgba, strict=True):
        target = preprocess_for_zero123(rgba[..., :3], rgba[..., 3] > 0, size=size, object_size=object_size).image
        psnrs.append(psnr(generated, target))
        ssims.append(ssim(generated, target))
    return NovelViewScore(
        psnr=float(np.mean(psnrs)), ssim=float(np.mean(ssims)), seconds=out.seconds, num_views=len(views)
    )


def evaluate(
    set_config: EvalSetConfig,
    config: EvalConfig,
    pipeline: Zero123Pipeline | None = None,
    objects: Iterable[EvalObject] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> EvalResult:
    """Build (or take) the evaluation set and score ``config.backend`` and ``config.baseline`` on every object.

    ``pipeline``: a loaded Zero-1-to-3 pipeline; loaded from ``config.model`` when None and a model is named.
    ``progress(done, total, name)`` is called after each object.
    """
    config.check()
    set_config.check()
    start = time.perf_counter()
    if pipeline is None and config.model:
        from z123_ros.novel_views import load_zero123

        pipeline = load_zero123(config.model, device=config.device, progress_bar=False)
    reconstruction_config = _reconstruction_config(config)
    total = len(set_config.resolved_object_names())
    results = []
    for done, obj in enumerate(objects if objects is not None else iter_eval_set(set_config), start=1):
        scores = {
            backend: score_backend(obj, backend, config, reconstruction_config, pipeline)
            for backend in config.backends()
        }
        novel = score_novel_views(obj, pipeline, config) if pipeline is not None else None
        results.append(
            ObjectEvaluation(
                index=obj.index,
                name=obj.name,
                size_m=obj.size_m,
                visible_fraction=obj.input.visible_fraction,
                input_polar_deg=obj.input.polar_deg,
                scores=scores,
                novel_views=novel,
            )
        )
        logger.info(
            "[%d/%d] %s: %s",
            done,
            total,
            obj.name,
            ", ".join(f"{b} IoU {s.iou:.3f} CD {s.chamfer_mm:.1f} mm {s.seconds:.2f} s" for b, s in scores.items()),
        )
        if progress is not None:
            progress(done, total, obj.name)
    return EvalResult(set_config, config, results, seconds_total=time.perf_counter() - start)
