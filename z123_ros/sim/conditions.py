"""Named condition buckets: seeded families of simulated scenes, each stressing one thing a robot meets.

A bucket is a :class:`ConditionSpec`: fixed SceneConfig overrides plus ranges that each seed draws from (camera range,
elevation, field of view, number of objects, the object pool). ``scene_config_for(bucket, seed)`` is a pure function,
so a bucket's scenes are the same on every machine. Every bucket except ``clean`` and ``random`` keeps the other
conditions at today's defaults so a drop can be pinned on the condition; ``random`` sweeps everything at once.

Buckets (see ``CONDITION_BUCKETS``): clean, structured_light, active_stereo, textured, clutter, background, touching,
occluding, border_cut, range_close (0.15-0.35 m), range_mid (0.35-0.9 m), range_far (0.9-1.5 m), elev_low (10-30 deg),
elev_high (55-80 deg), fov_wide (75-90 deg), res_low (320x240), res_hd (1280x720), hollow (bowls, mugs, cups), random.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from z123_ros.errors import ConfigError
from z123_ros.sim.objects import OBJECT_NAMES
from z123_ros.sim.scene import RenderedScene, SceneConfig, render_tabletop_scene

logger = logging.getLogger(__name__)

_LAYOUT_ATTEMPTS = 5

#: Objects with a cavity or opening: the hollow bucket draws from these.
HOLLOW_OBJECTS = ("024_bowl", "025_mug", "065-a_cups", "019_pitcher_base")

#: Objects no taller than ~12 cm, for the close-range bucket (a 0.15 m camera would sit inside a pitcher).
SMALL_OBJECTS = (
    "005_tomato_soup_can",
    "007_tuna_fish_can",
    "008_pudding_box",
    "009_gelatin_box",
    "010_potted_meat_can",
    "011_banana",
    "013_apple",
    "014_lemon",
    "015_peach",
    "017_orange",
    "018_plum",
    "025_mug",
    "026_sponge",
    "038_padlock",
    "056_tennis_ball",
    "061_foam_brick",
    "077_rubiks_cube",
)


@dataclass(frozen=True)
class ConditionSpec:
    """One bucket: what every scene of it has, and what each seed draws."""

    description: str
    """One line for reports."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """SceneConfig fields set for every scene of the bucket."""
    range_m: tuple[float, float] = (0.55, 0.85)
    """Camera range (distance to the look-at point) drawn uniformly, metres (today's scenes: ~0.7 m)."""
    elevation_deg: tuple[float, float] = (35.0, 55.0)
    """Camera elevation drawn uniformly, degrees."""
    fov_deg: tuple[float, float] = (60.0, 60.0)
    """Horizontal field of view drawn uniformly, degrees."""
    num_objects: tuple[int, int] = (2, 4)
    """Number of objects drawn uniformly from this inclusive range."""
    object_pool: tuple[str, ...] | None = None
    """Objects drawn from this pool (None = the whole catalogue)."""
    resolutions: tuple[tuple[int, int], ...] = ((640, 480),)
    """(width, height) drawn from these."""


def _spec(description: str, **kwargs: Any) -> ConditionSpec:
    """A ConditionSpec from its own fields (ranges, pool) and SceneConfig overrides given side by side."""
    own = {f.name for f in dataclasses.fields(ConditionSpec)}
    overrides = {k: kwargs.pop(k) for k in list(kwargs) if k not in own}
    return ConditionSpec(description, overrides, **kwargs)


CONDITION_BUCKETS: dict[str, ConditionSpec] = {
    "clean": _spec("today's scenes: flat colours, exact depth, 0.55-0.85 m, 35-55 deg"),
    "structured_light": _spec("Kinect v1 / Xtion depth model", sensor="structured_light"),
    "active_stereo": _spec("RealSense D435 depth model", sensor="active_stereo"),
    "textured": _spec("procedural packaging or photo labels on the objects (half each)"),
    "clutter": _spec("paper, cables, keyboard and mouse on the table (background)", clutter=True),
    "background": _spec("floor, walls and furniture beyond the table", background=True),
    "touching": _spec("objects in contact", touching=True, num_objects=(2, 4)),
    "occluding": _spec(
        "objects behind each other as seen from the camera (camera 15-35 deg up, so that they hide each other)",
        occluding=True,
        num_objects=(2, 3),
        elevation_deg=(15.0, 35.0),
    ),  # fmt: skip
    "border_cut": _spec("one object on the image border", border_cut=True),
    "range_close": _spec(
        "camera 0.15-0.35 m away",
        range_m=(0.15, 0.35),
        num_objects=(1, 2),
        object_pool=SMALL_OBJECTS,
        placement_radius_m=0.05,
    ),  # fmt: skip
    "range_mid": _spec("camera 0.35-0.9 m away", range_m=(0.35, 0.9)),
    "range_far": _spec("camera 0.9-1.5 m away", range_m=(0.9, 1.5)),
    "elev_low": _spec("camera 10-30 deg above the table plane", elevation_deg=(10.0, 30.0)),
    "elev_high": _spec("camera 55-80 deg above the table plane", elevation_deg=(55.0, 80.0)),
    "fov_wide": _spec("horizontal field of view 75-90 deg", fov_deg=(75.0, 90.0)),
    "res_low": _spec("320x240 images", resolutions=((320, 240),)),
    "res_hd": _spec("1280x720 images", resolutions=((1280, 720),)),
    "hollow": _spec("bowls, mugs, cups, pitchers", object_pool=HOLLOW_OBJECTS, num_objects=(1, 3)),
    "random": _spec(
        "seeded sweep over every condition at once",
        range_m=(0.25, 1.5),
        elevation_deg=(10.0, 80.0),
        fov_deg=(40.0, 90.0),
        num_objects=(1, 5),
        resolutions=((320, 240), (640, 480), (848, 480), (1280, 720)),
    ),  # fmt: skip
}


def _random_overrides(rng: np.random.Generator) -> dict[str, Any]:
    """The random bucket's per-seed draw of every switch."""
    return {
        "sensor": str(rng.choice(["ideal", "structured_light", "active_stereo", "structured_light", "active_stereo"])),
        "texture": str(rng.choice(["flat", "procedural", "photo"])),
        "clutter": bool(rng.uniform() < 0.5),
        "background": bool(rng.uniform() < 0.5),
        "touching": bool(rng.uniform() < 0.3),
        "border_cut": bool(rng.uniform() < 0.2),
    }


def scene_config_for(bucket: str, seed: int, attempt: int = 0, **overrides: Any) -> SceneConfig:
    """The SceneConfig of scene ``seed`` of ``bucket`` (pure: same bucket and seed, same scene).

    ``attempt`` > 0 gives alternative layouts of the same seed (see :func:`render_condition`); ``overrides`` are
    SceneConfig fields applied last (e.g. ``compute_visible_fraction=False``).
    """
    if bucket not in CONDITION_BUCKETS:
        raise ConfigError(f"unknown condition bucket {bucket!r}; buckets are {', '.join(CONDITION_BUCKETS)}")
    spec = CONDITION_BUCKETS[bucket]
    rng = np.random.default_rng([int(seed), 0x5EED, sum(map(ord, bucket)), int(attempt)])
    width, height = spec.resolutions[int(rng.integers(len(spec.resolutions)))]
    n = int(rng.integers(spec.num_objects[0], spec.num_objects[1] + 1))
    pool = spec.object_pool or OBJECT_NAMES
    names = tuple(str(name) for name in rng.choice(pool, size=min(n, len(pool)), replace=False))
    values: dict[str, Any] = {
        "seed": int(seed) + 1_000_003 * int(attempt),
        "object_names": names,
        "width": width,
        "height": height,
        "fov_deg": float(rng.uniform(*spec.fov_deg)),
        "camera_range_m": float(rng.uniform(*spec.range_m)),
        "camera_elevation_deg": float(rng.uniform(*spec.elevation_deg)),
        "camera_azimuth_deg": float(rng.uniform(0.0, 360.0)),
    }
    if bucket == "random":
        values.update(_random_overrides(rng))
    values.update(spec.overrides)
    if bucket == "textured":  # half packaging, half photographs
        values["texture"] = str(rng.choice(["procedural", "photo"]))
    values.update(overrides)
    config = SceneConfig(**values)
    config.check()
    return config


def render_condition(bucket: str, seed: int, min_pixels: int = 100, **overrides: Any) -> RenderedScene:
    """Render scene ``seed`` of ``bucket`` (see :func:`scene_config_for`).

    A layout where some object shows fewer than ``min_pixels`` pixels (wholly hidden behind another, or off-screen)
    measures nothing about that object: the next of up to 5 seeded layouts is tried (still deterministic). The last
    one is returned as it is.
    """
    for attempt in range(_LAYOUT_ATTEMPTS):
        config = scene_config_for(bucket, seed, attempt=attempt, **overrides)
        scene = render_tabletop_scene(config)
        if min(o.pixel_count for o in scene.objects) >= min_pixels:
            break
        logger.debug("condition %s seed %d attempt %d: an object is hidden; next layout", bucket, seed, attempt)
    return scene


def parse_condition_spec(spec: str) -> list[tuple[str, int]]:
    """``"clean,range_far:5,random:20"`` -> [(bucket, seed), ...]; a bucket without a count gets 3 seeds; ``all``
    expands to every bucket. ConfigError naming a bad entry."""
    pairs: list[tuple[str, int]] = []
    for entry in filter(None, (e.strip() for e in spec.split(","))):
        name, _, count_text = entry.partition(":")
        try:
            count = int(count_text) if count_text else 3
        except ValueError:
            raise ConfigError(f"condition entry {entry!r}: the count after ':' must be an integer") from None
        if count < 1:
            raise ConfigError(f"condition entry {entry!r}: the count must be >= 1")
        names = list(CONDITION_BUCKETS) if name == "all" else [name]
        for bucket in names:
            if bucket not in CONDITION_BUCKETS:
                raise ConfigError(f"unknown condition bucket {bucket!r}; buckets are {', '.join(CONDITION_BUCKETS)}")
            pairs.extend((bucket, seed) for seed in range(count))
    if not pairs:
        raise ConfigError("empty condition spec; give e.g. 'clean,structured_light:5' or 'all'")
    return pairs
