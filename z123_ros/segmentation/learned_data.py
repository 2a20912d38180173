"""Training data of the learned segmenter: simulated tabletop scenes, domain-randomised over what a depth camera
shows, rendered once into a cache folder (one small ``.npz`` per scene, written atomically, reused by later runs).

Every scene is subsampled to the network's resolution the way a real frame is at inference (``subsample_frame``
of z123_ros.segmentation.learned_net), and stored as depth, the camera of the subsampled grid, instance ids and each
object's 3D centre (the mean of its visible points in exact depth): the network learns to point every object pixel
at it.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import InputError
from z123_ros.segmentation.learned_config import TrainSegmenterConfig
from z123_ros.segmentation.learned_net import plane_height, subsample_frame, xyz_image
from z123_ros.sim.conditions import SMALL_OBJECTS
from z123_ros.sim.objects import OBJECT_NAMES
from z123_ros.sim.scene import SceneConfig, render_tabletop_scene

logger = logging.getLogger(__name__)

#: Bump when the scene draw or the stored layout changes: cached scenes of another version are rendered again.
DATA_VERSION = 1
#: Scene seeds start here (training) and at ``+ 5_000_000`` (validation): far from the benchmark's seeds 0..99 and
#: from conditions' alternative layouts (seed + 1_000_003 * attempt).
_SEED_BASE = 70_000_000


@dataclass
class SceneSample:
    """One stored scene at the network's resolution."""

    depth_m: np.ndarray
    """(h, w) float32 measured depth, NaN = no measurement."""
    intrinsics: CameraIntrinsics
    """Camera of the subsampled grid."""
    ids: np.ndarray
    """(h, w) uint8 instance ids, 0 = not an object (table, clutter, room)."""
    centres: np.ndarray
    """(K + 1, 3) float32 camera-frame centre of object k (row 0 unused), metres."""
    height: np.ndarray | None = None
    """(h, w) float32 height above the dominant plane (:func:`plane_height`), once computed."""


def draw_scene_config(index: int, split: str, seed: int, vga_fraction: float) -> SceneConfig:
    """The SceneConfig of training (``split='train'``) or validation scene ``index``: a pure function."""
    base = _SEED_BASE + (5_000_000 if split == "val" else 0) + 100_000 * int(seed)
    rng = np.random.default_rng([base + int(index), DATA_VERSION])
    close = rng.uniform() < 0.08  # the close-range bucket's kind of scene: small objects 0.2-0.35 m away
    n = int(rng.integers(1, 3 if close else 8))
    pool = SMALL_OBJECTS if close else OBJECT_NAMES
    names = tuple(str(x) for x in rng.choice(pool, size=min(n, len(pool)), replace=False))
    layout = rng.choice(["free", "touching", "occluding"], p=[0.5, 0.3, 0.2])
    vga = rng.uniform() < vga_fraction
    config = SceneConfig(
        seed=base + int(index),
        object_names=names,
        width=640 if vga else 320,
        height=480 if vga else 240,
        fov_deg=float(rng.uniform(40.0, 90.0)),
        camera_range_m=float(rng.uniform(0.2, 0.35) if close else rng.uniform(0.35, 1.5)),
        camera_elevation_deg=float(rng.uniform(10.0, 80.0)),
        camera_azimuth_deg=float(rng.uniform(0.0, 360.0)),
        placement_radius_m=0.05 if close else float(rng.uniform(0.1, 0.25)),
        sensor=str(rng.choice(["ideal", "structured_light", "active_stereo"], p=[0.2, 0.45, 0.35])),
        texture="flat",
        clutter=bool(rng.uniform() < 0.5),
        background=bool(rng.uniform() < 0.5),
        touching=layout == "touching",
        occluding=layout == "occluding",
        border_cut=bool(rng.uniform() < 0.15),
        compute_visible_fraction=False,
    )
    config.check()
    return config


def render_sample(config: SceneConfig, long_side: int) -> SceneSample:
    """Render one scene and subsample it to the network's resolution."""
    scene = render_tabletop_scene(config)
    depth, intr, s = subsample_frame(scene.depth_m, scene.intrinsics, long_side)
    off = s // 2
    ids = scene.instance_ids[off::s, off::s].astype(np.uint8)
    true_xyz = xyz_image(np.ascontiguousarray(scene.depth_true_m[off::s, off::s]), intr)
    centres = np.zeros((len(scene.objects) + 1, 3), np.float32)
    for obj in scene.objects:
        pixels = (ids == obj.id) & (true_xyz[2] > 0)
        if pixels.any():
            centres[obj.id] = true_xyz[:, pixels].mean(axis=1)
    return SceneSample(depth, intr, ids, centres)


def to_long_side(sample: SceneSample, long_side: int) -> SceneSample:
    """A stored scene subsampled again, as :func:`subsample_frame` subsamples a frame, for the network's input."""
    depth, intr, s = subsample_frame(sample.depth_m, sample.intrinsics, long_side)
    height = plane_height(xyz_image(depth, intr))[0]
    return SceneSample(depth, intr, np.ascontiguousarray(sample.ids[s // 2 :: s, s // 2 :: s]), sample.centres, height)


def _scene_path(folder: Path, split: str, seed: int, index: int, long_side: int) -> Path:
    return folder / f"v{DATA_VERSION}-n{long_side}" / f"{split}-s{seed}-{index:06d}.npz"


def save_sample(path: Path, sample: SceneSample) -> None:
    """Write one scene (temporary file, then one rename: a killed run never leaves half a scene)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    i = sample.intrinsics
    np.savez_compressed(
        tmp, depth=sample.depth_m, ids=sample.ids, centres=sample.centres,
        camera=np.array([i.fx, i.fy, i.cx, i.cy], np.float64),
    )  # fmt: skip
    os.replace(tmp, path)


def load_sample(path: Path) -> SceneSample:
    try:
        with np.load(path, allow_pickle=False) as data:
            depth, ids, centres, cam = data["depth"], data["ids"], data["centres"], data["camera"]
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(f"cannot read cached training scene {path}: {exc} (delete it to render it again)") from exc
    h, w = depth.shape
    intr = CameraIntrinsics(fx=cam[0], fy=cam[1], cx=cam[2], cy=cam[3], width=w, height=h)
    return SceneSample(depth, intr, ids, centres)


def build_split(config: TrainSegmenterConfig, split: str) -> list[SceneSample]:
    """Every scene of ``split`` ('train' or 'val'), rendering only the ones not in the cache yet."""
    count = config.train_scenes if split == "train" else config.val_scenes
    folder = config.data_folder()
    samples: list[SceneSample] = []
    t0, rendered = time.perf_counter(), 0
    for index in range(count):
        path = _scene_path(folder, split, config.seed, index, config.data_long_side)
        if not path.is_file():
            scene_config = draw_scene_config(index, split, config.seed, config.render_vga_fraction)
            save_sample(path, render_sample(scene_config, config.data_long_side))
            rendered += 1
            if rendered % 20 == 0:
                logger.info("%s scenes: %d/%d (%.1f s per scene)", split, index + 1, count,
                            (time.perf_counter() - t0) / rendered)  # fmt: skip
        samples.append(to_long_side(load_sample(path), config.net.input_long_side))
    logger.info("%s: %d scenes (%d rendered now) in %s", split, count, rendered, path.parent if count else folder)
    return samples
