"""Named condition buckets: the names the benchmarks call, seeded, each bucket inside its stated ranges."""

from __future__ import annotations

import numpy as np
import pytest

from z123_ros.camera import invert
from z123_ros.errors import ConfigError
from z123_ros.sim.conditions import (
    CONDITION_BUCKETS,
    HOLLOW_OBJECTS,
    parse_condition_spec,
    render_condition,
    scene_config_for,
)

CONTRACT = [
    "clean",
    "structured_light",
    "active_stereo",
    "textured",
    "clutter",
    "background",
    "touching",
    "occluding",
    "border_cut",
    "range_close",
    "range_mid",
    "range_far",
    "elev_low",
    "elev_high",
    "fov_wide",
    "res_low",
    "res_hd",
    "hollow",
    "random",
]


def test_every_contract_bucket_exists():
    assert set(CONTRACT) <= set(CONDITION_BUCKETS)


@pytest.mark.parametrize("bucket", CONTRACT)
def test_configs_are_seeded_and_inside_the_bucket_ranges(bucket):
    spec = CONDITION_BUCKETS[bucket]
    configs = [scene_config_for(bucket, seed) for seed in range(6)]
    assert configs[0] == scene_config_for(bucket, 0)
    assert len({c.object_names for c in configs}) > 1 or spec.object_pool is not None
    for c in configs:
        assert spec.range_m[0] <= c.camera_range_m <= spec.range_m[1]
        assert spec.elevation_deg[0] <= c.camera_elevation_deg <= spec.elevation_deg[1]
        assert spec.fov_deg[0] <= c.fov_deg <= spec.fov_deg[1]
        assert (c.width, c.height) in spec.resolutions
        for key, value in spec.overrides.items():
            assert getattr(c, key) == value


def test_named_ranges_match_the_contract():
    assert CONDITION_BUCKETS["range_close"].range_m == (0.15, 0.35)
    assert CONDITION_BUCKETS["range_mid"].range_m == (0.35, 0.9)
    assert CONDITION_BUCKETS["range_far"].range_m == (0.9, 1.5)
    assert CONDITION_BUCKETS["elev_low"].elevation_deg == (10.0, 30.0)
    assert CONDITION_BUCKETS["elev_high"].elevation_deg == (55.0, 80.0)
    assert CONDITION_BUCKETS["fov_wide"].fov_deg == (75.0, 90.0)
    assert scene_config_for("res_hd", 0).width == 1280 and scene_config_for("res_low", 0).height == 240
    assert all(set(scene_config_for("hollow", s).object_names) <= set(HOLLOW_OBJECTS) for s in range(5))
    assert {scene_config_for("textured", s).texture for s in range(10)} == {"procedural", "photo"}


def test_random_bucket_sweeps_the_switches():
    configs = [scene_config_for("random", seed) for seed in range(30)]
    assert {c.sensor for c in configs} == {"ideal", "structured_light", "active_stereo"}
    assert {c.texture for c in configs} == {"flat", "procedural", "photo"}
    assert {c.clutter for c in configs} == {True, False}
    assert len({(c.width, c.height) for c in configs}) >= 3


def test_render_condition_renders_the_configured_camera():
    scene = render_condition("res_low", 1, compute_visible_fraction=False)
    config = scene.config
    assert scene.rgb.shape == (240, 320, 3)
    eye = invert(scene.T_cam_from_world)[:3, 3]
    assert np.linalg.norm(eye - [0, 0, config.target_height_m]) == pytest.approx(config.camera_range_m)
    assert len(scene.objects) == len(config.object_names) and (scene.instance_ids > 0).any()


def test_close_range_scenes_see_their_objects():
    for seed in range(2):
        scene = render_condition("range_close", seed, width=320, height=240, compute_visible_fraction=False)
        assert (scene.instance_ids > 0).mean() > 0.05, seed


def test_bad_bucket_and_spec_are_one_clear_error():
    with pytest.raises(ConfigError, match="unknown condition bucket 'foggy'"):
        scene_config_for("foggy", 0)
    with pytest.raises(ConfigError, match="integer"):
        parse_condition_spec("clean:x")
    with pytest.raises(ConfigError, match="empty"):
        parse_condition_spec(" , ")


def test_parse_condition_spec():
    assert parse_condition_spec("clean:2,range_far") == [("clean", 0), ("clean", 1)] + [
        ("range_far", s) for s in range(3)
    ]
    assert len(parse_condition_spec("all:1")) == len(CONDITION_BUCKETS)
