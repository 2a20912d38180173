"""Training data for Zero-1-to-3: the rendered dataset folders read back, and a torch Dataset of view pairs.

Rendering (:func:`render_dataset`, :class:`RenderConfig`, the folder format) lives in :mod:`z123_ros.training.render`
and is re-exported here.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import torch

from z123_ros.camera import CameraIntrinsics, relative_view, zero123_pose_vector
from z123_ros.errors import InputError
from z123_ros.training.render import (
    DATASET_FORMAT,
    ObjectSource,
    RenderConfig,
    RenderDatasetResult,
    RenderedObject,
    load_source_mesh,
    normalise_mesh,
    render_dataset,
    render_object,
    resolve_objects,
    sample_cameras,
)

__all__ = [
    "ObjectRecord",
    "ObjectSource",
    "RenderConfig",
    "RenderDatasetResult",
    "RenderedObject",
    "ViewPairDataset",
    "list_objects",
    "load_source_mesh",
    "normalise_mesh",
    "read_object",
    "render_dataset",
    "render_object",
    "resolve_objects",
    "rgba_to_tensor",
    "sample_cameras",
]

logger = logging.getLogger(__name__)


@dataclass
class ObjectRecord:
    """One object's views as read from ``cameras.json``."""

    id: str
    folder: Path
    intrinsics: CameraIntrinsics
    T_world_from_cam: np.ndarray
    """(N, 4, 4) camera poses, OpenCV camera, world = normalised object frame (+z up, centre at the origin)."""
    polar_deg: np.ndarray
    """(N,) absolute polar angle of each camera (0 = from above)."""
    images: list[str]
    depths: list[str | None]
    depth_scale: float | None

    def load_rgba(self, view: int) -> np.ndarray:
        """(S, S, 4) uint8 RGBA of a view."""
        with PIL.Image.open(self.folder / self.images[view]) as im:
            return np.asarray(im.convert("RGBA"))

    def load_depth(self, view: int) -> np.ndarray:
        """(S, S) float32 z-depth in normalised units, NaN where nothing was hit."""
        name = self.depths[view]
        if name is None or self.depth_scale is None:
            raise InputError(f"object {self.id} was rendered without depth (RenderConfig.save_depth=False)")
        with PIL.Image.open(self.folder / name) as im:
            counts = np.asarray(im, dtype=np.float64)
        return np.where(counts > 0, counts * self.depth_scale, np.nan).astype(np.float32)


def read_object(folder: str | os.PathLike) -> ObjectRecord:
    """Read one object's ``cameras.json``; InputError names the file and the problem."""
    folder = Path(folder)
    path = folder / "cameras.json"
    try:
        meta = json.loads(path.read_text())
        intr = meta["intrinsics"]
        views = meta["views"]
        fx, fy, cx, cy = (float(intr[k]) for k in ("fx", "fy", "cx", "cy"))
        intrinsics = CameraIntrinsics(fx, fy, cx, cy, int(intr["width"]), int(intr["height"]))
        poses = np.array([v["T_world_from_cam"] for v in views], dtype=np.float64).reshape(-1, 4, 4)
        polar = np.array([float(v["polar_deg"]) for v in views])
        images = [str(v["image"]) for v in views]
        depths = [v.get("depth") for v in views]
    except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path} is missing or malformed ({type(exc).__name__}: {exc})") from exc
    return ObjectRecord(
        id=str(meta.get("object", folder.name)),
        folder=folder,
        intrinsics=intrinsics,
        T_world_from_cam=poses,
        polar_deg=polar,
        images=images,
        depths=depths,
        depth_scale=meta.get("depth_scale"),
    )


def list_objects(root: str | os.PathLike) -> list[str]:
    """Ids of the complete objects of a dataset folder (from dataset.json, else every folder with cameras.json)."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder {root} does not exist")
    index = root / "dataset.json"
    if index.is_file():
        try:
            data = json.loads(index.read_text())
        except json.JSONDecodeError as exc:
            raise InputError(f"{index} is not valid JSON: {exc}") from exc
        if data.get("format") != DATASET_FORMAT:
            raise InputError(f"{index} is not a {DATASET_FORMAT} dataset index (format={data.get('format')!r})")
        ids = [e["id"] for e in data.get("objects", []) if (root / e["id"] / "cameras.json").is_file()]
    else:
        ids = sorted(p.parent.name for p in root.glob("*/cameras.json"))
    if not ids:
        raise InputError(f"dataset folder {root} holds no rendered objects (render one with `z123 render-dataset`)")
    return ids


def rgba_to_tensor(rgba: np.ndarray, size: int) -> torch.Tensor:
    """(S, S, 4) uint8 RGBA -> (3, size, size) float32 in [-1, 1], composited on white (as the paper's loader)."""
    image = PIL.Image.fromarray(rgba, mode="RGBA")
    if image.size != (size, size):
        image = image.resize((size, size), PIL.Image.Resampling.BICUBIC)
    x = np.asarray(image, dtype=np.float32) / 255.0
    rgb = x[..., :3] * x[..., 3:] + (1.0 - x[..., 3:])
    return torch.from_numpy(rgb * 2.0 - 1.0).permute(2, 0, 1).contiguous()


class ViewPairDataset(torch.utils.data.Dataset):
    """Every ordered pair (condition view, target view) of every object, with the relative pose.

    Item ``k`` is a dict: ``cond`` and ``target`` (3, S, S) float32 in [-1, 1] on white, ``pose`` (4,) float32
    ``[d_polar rad, sin d_az, cos d_az, d_radius]`` from the condition camera to the target camera
    (:func:`z123_ros.camera.relative_view`, the pipeline's convention), ``cond_polar_rad`` (the condition camera's
    absolute polar angle, which Stable Zero123 puts in the 4th pose entry), and the indices ``object``, ``cond_view``,
    ``target_view``.

    Args:
        root: dataset folder written by :func:`render_dataset`.
        image_size: side the images are resized to (the model's image size).
        objects: ids to use (default: all).
        views: view indices to use (default: all), e.g. ``range(10)`` to hold out views 10 and 11.
        cache: keep decoded images in memory (small datasets).
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_size: int = 256,
        objects: Sequence[str] | None = None,
        views: Sequence[int] | None = None,
        cache: bool = False,
    ):
        self.root = Path(root)
        self.image_size = int(image_size)
        ids = list(objects) if objects is not None else list_objects(self.root)
        self.records = [read_object(self.root / i) for i in ids]
        self.pairs: list[tuple[int, int, int]] = []
        for o, rec in enumerate(self.records):
            available = range(len(rec.images)) if views is None else [v for v in views if 0 <= v < len(rec.images)]
            self.pairs.extend((o, i, j) for i in available for j in available if i != j)
        if not self.pairs:
            raise InputError(f"dataset {self.root}: no view pairs for objects={objects} views={views}")
        self._cache: dict[tuple[int, int], torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.pairs)

    def image(self, obj: int, view: int) -> torch.Tensor:
        """(3, S, S) image of a view in [-1, 1] on white."""
        key = (obj, view)
        if self._cache is not None and key in self._cache:
            return self._cache[key]
        x = rgba_to_tensor(self.records[obj].load_rgba(view), self.image_size)
        if self._cache is not None:
            self._cache[key] = x
        return x

    def relative_pose(self, obj: int, cond: int, target: int) -> np.ndarray:
        """(4,) Zero-1-to-3 pose vector from view ``cond`` to view ``target`` of object ``obj``."""
        rec = self.records[obj]
        d_polar, d_az, d_radius = relative_view(rec.T_world_from_cam[cond], rec.T_world_from_cam[target], np.zeros(3))
        return zero123_pose_vector(d_polar, d_az, d_radius)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int]:
        obj, i, j = self.pairs[index]
        return {
            "cond": self.image(obj, i),
            "target": self.image(obj, j),
            "pose": torch.from_numpy(self.relative_pose(obj, i, j).astype(np.float32)),
            "cond_polar_rad": torch.tensor(np.deg2rad(self.records[obj].polar_deg[i]), dtype=torch.float32),
            "object": obj,
            "cond_view": i,
            "target_view": j,
        }
