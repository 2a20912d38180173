"""The depth-sensor model measures what its own specification says (noise, quantisation, shadows, holes)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import ConfigError, InputError
from z123_ros.sim.sensor import (
    SENSOR_PRESETS,
    SensorConfig,
    apply_sensor,
    normals_from_depth,
    occlusion_shadow,
)

K = CameraIntrinsics.from_fov(60.0, 320, 240)
GREY = np.full((240, 320, 3), 128, np.uint8)


def _plane(z: float) -> np.ndarray:
    return np.full((240, 320), z, np.float32)


def _box_before_wall(z_box: float = 0.8, z_wall: float = 1.2) -> np.ndarray:
    depth = _plane(z_wall)
    depth[80:160, 120:200] = z_box
    return depth


def _noise_only(preset: str) -> SensorConfig:
    """The preset's noise knobs alone (no holes, no shifts), to measure sigma on a plane."""
    p = SENSOR_PRESETS[preset]
    return SensorConfig(
        name=f"{preset}-noise",
        axial_sigma_base_m=p.axial_sigma_base_m,
        axial_sigma_quad_m=p.axial_sigma_quad_m,
        axial_sigma_z0_m=p.axial_sigma_z0_m,
        grazing_sigma_m=p.grazing_sigma_m,
        stereo_subpixel_px=p.stereo_subpixel_px,
        stereo_baseline_m=p.stereo_baseline_m,
        disparity_step_at_1m_m=p.disparity_step_at_1m_m,
    )


@pytest.mark.parametrize("preset", ["structured_light", "active_stereo"])
@pytest.mark.parametrize("z", [0.5, 1.0, 1.5])
def test_axial_sigma_on_a_fronto_parallel_plane_matches_the_specification(preset, z):
    config = SENSOR_PRESETS[preset]
    _, depth = apply_sensor(GREY, _plane(z), K, config, seed=11)
    valid = np.isfinite(depth)
    assert valid.mean() > 0.8, f"{preset} at {z} m lost {1 - valid.mean():.0%} of a plain grey plane"
    measured = float(np.std(depth[valid]))
    expected = float(config.axial_sigma_m(z, 0.0, K.fx))
    assert measured == pytest.approx(expected, rel=0.2), (preset, z, measured, expected)
    # Published figures, independently of the code's own formula.
    published = 0.0012 + 0.0019 * (z - 0.4) ** 2 if preset == "structured_light" else z**2 * 0.08 / (K.fx * 0.05)
    assert measured == pytest.approx(published, rel=0.2)


def test_noise_grows_at_grazing_incidence():
    config = _noise_only("structured_light")
    # A plane tilted 75 deg about the vertical axis around z = 1 m: depth varies along the row.
    u = (np.arange(320) - K.cx) / K.fx
    tilt = np.deg2rad(75.0)
    z_row = 1.0 / (1.0 + u * np.tan(tilt))  # plane z = 1 - x tan(tilt) through (0, 0, 1)
    depth = np.broadcast_to(z_row, (240, 320)).astype(np.float32).copy()
    normals = np.broadcast_to(np.array([np.sin(tilt), 0.0, -np.cos(tilt)]), (240, 320, 3)).copy()
    centre = slice(150, 170)
    _, flat = apply_sensor(GREY, _plane(1.0), K, config, seed=3)
    _, tilted = apply_sensor(GREY, depth, K, config, seed=3, normals_cam=normals)
    residual = (tilted - depth)[:, centre]
    assert np.nanstd(residual) > 1.5 * np.nanstd(flat[:, centre] - 1.0)


def test_shadow_holes_lie_beside_occluding_edges_away_from_the_projector():
    depth = _box_before_wall(0.6, 1.2)
    preset = SENSOR_PRESETS["structured_light"]
    config = dataclasses.replace(preset, registration_offset_m=0.0)  # the projector's shadow alone
    width = K.fx * config.occlusion_baseline_m * (1 / 0.6 - 1 / 1.2)  # the shadow band, pixels
    assert width > 8
    _, measured = apply_sensor(GREY, depth, K, config, seed=5)
    holes = ~np.isfinite(measured[90:150])
    band = int(width) - 3  # leave room for the lateral jitter and misregistration
    left = holes[:, 120 - band - 1 : 120 - 2].mean()  # the projector is at +x: shadows fall to the left (-x)
    right = holes[:, 202 : 202 + band].mean()
    assert left > 0.8 and right < 0.2, (left, right)
    # Mirrored projector: mirrored shadow.
    mirrored = occlusion_shadow(depth, K.fx, -config.occlusion_baseline_m)
    assert mirrored[90:150, 201 : 201 + band].mean() > 0.95 and mirrored[90:150, 110:119].mean() == 0
    # Registered to the colour camera (the IR camera 2.5 cm the other way): a narrower band on the other side too.
    _, registered = apply_sensor(GREY, depth, K, preset, seed=5)
    other = int(K.fx * abs(preset.registration_offset_m) * (1 / 0.6 - 1 / 1.2)) - 2
    assert other >= 3 and (~np.isfinite(registered[90:150, 202 : 202 + other])).mean() > 0.8


def test_exact_shadow_geometry():
    depth = _box_before_wall()
    shadow = occlusion_shadow(depth, K.fx, 0.075)
    width = K.fx * 0.075 * (1 / 0.8 - 1 / 1.2)
    row = shadow[120]
    cols = np.nonzero(row)[0]
    assert cols.max() == 119 and abs(len(cols) - width) <= 1.0, (cols, width)
    assert not shadow[:80].any() and not shadow[160:].any()


def test_quantisation_step_is_the_stated_size_and_grows_with_z_squared():
    config = SensorConfig(name="quantised", disparity_step_at_1m_m=0.0028)
    for z0 in (1.0, 1.5):
        # A slanted ramp 0.9 z0 .. 1.1 z0 along the row: its quantised values are the levels.
        ramp = np.broadcast_to(np.linspace(0.95 * z0, 1.05 * z0, 320), (240, 320)).astype(np.float32)
        _, q = apply_sensor(GREY, ramp, K, config, seed=0)
        levels = np.unique(q[np.isfinite(q)])
        steps = np.diff(levels)
        centre = steps[np.argmin(np.abs(levels[:-1] - z0))]
        assert centre == pytest.approx(0.0028 * z0**2, rel=0.05), (z0, centre)
        assert config.quantisation_step_m(z0) == pytest.approx(0.0028 * z0**2)


def test_range_limits_give_holes():
    _, close = apply_sensor(GREY, _plane(0.3), K, "structured_light", seed=0)
    _, far = apply_sensor(GREY, _plane(4.5), K, "structured_light", seed=0)
    _, stereo_close = apply_sensor(GREY, _plane(0.3), K, "active_stereo", seed=0)
    assert np.isnan(close).all() and np.isnan(far).all()
    assert np.isfinite(stereo_close).mean() > 0.8


def test_dark_and_thin_parts_drop_out():
    dark = GREY.copy()
    dark[:, :160] = 5
    config = SENSOR_PRESETS["structured_light"]
    _, d = apply_sensor(dark, _plane(1.0), K, config, seed=2)
    assert np.isnan(d[:, 5:150]).mean() > 0.5 > np.isnan(d[:, 170:315]).mean() + 0.3
    pole = _plane(1.2)
    pole[:, 100:103] = 0.8  # a 3-pixel-wide pole in front of a wall
    thin = dataclasses.replace(config, thin_dropout_prob=1.0, lateral_edge_noise_px=0.0, misregistration_px=0.0)
    _, d = apply_sensor(GREY, pole, K, thin, seed=2)
    assert np.isnan(d[:, 100:103]).mean() > 0.95


def test_flying_pixels_take_depths_between_foreground_and_background():
    config = SensorConfig(name="flying", flying_pixel_prob=1.0)
    _, d = apply_sensor(GREY, _box_before_wall(), K, config, seed=4)
    between = (d > 0.82) & (d < 1.18)
    assert between.sum() > 50
    rows, cols = np.nonzero(between)
    # Only along the box's silhouette.
    near_edge = (np.abs(cols - 119.5) < 4) | (np.abs(cols - 199.5) < 4) | (np.abs(rows - 79.5) < 4)
    near_edge |= np.abs(rows - 159.5) < 4
    assert near_edge.all()


def test_deterministic_per_seed():
    depth = _box_before_wall()
    a = apply_sensor(GREY, depth, K, "structured_light", seed=7)
    b = apply_sensor(GREY, depth, K, "structured_light", seed=7)
    c = apply_sensor(GREY, depth, K, "structured_light", seed=8)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
    assert not np.array_equal(a[1], c[1], equal_nan=True)


def test_ideal_preset_is_the_identity():
    depth = _box_before_wall()
    depth[0, 0] = np.nan
    rgb = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    out_rgb, out_depth = apply_sensor(rgb, depth, K, "ideal", seed=1)
    assert np.array_equal(out_rgb, rgb) and np.array_equal(out_depth, depth, equal_nan=True)
    assert out_depth is not depth


def test_colour_effects_change_the_image_but_keep_it_plausible():
    rgb, _ = apply_sensor(GREY, _plane(1.0), K, "structured_light", seed=9)
    assert rgb.dtype == np.uint8 and rgb.shape == GREY.shape
    assert 2.0 < np.std(rgb.astype(float) - rgb.mean(axis=(0, 1))) < 20.0  # noise, not garbage
    assert abs(rgb.mean() - 128) < 60


def test_bad_input_is_one_clear_error():
    with pytest.raises(ConfigError, match="unknown sensor"):
        apply_sensor(GREY, _plane(1.0), K, "kinect9", seed=0)
    with pytest.raises(InputError, match="must be"):
        apply_sensor(GREY[:, :, 0], _plane(1.0), K, "ideal", seed=0)
    with pytest.raises(ConfigError, match="probability"):
        apply_sensor(GREY, _plane(1.0), K, SensorConfig(flying_pixel_prob=2.0), seed=0)


def test_normals_from_depth_face_the_camera():
    n = normals_from_depth(_plane(1.0), K)
    assert np.allclose(n[100:140, 100:200], [0, 0, -1], atol=1e-4)


def test_lateral_edge_noise_moves_edges_by_about_the_stated_pixels():
    config = SensorConfig(name="lateral", lateral_edge_noise_px=0.9)
    depth = _plane(1.2)
    depth[:, 160:] = 0.8  # one vertical occluding edge between columns 159 and 160
    shifts = []
    for seed in range(4):
        _, measured = apply_sensor(GREY, depth, K, config, seed=seed)
        near = measured[:, 150:170] < 1.0
        shifts.append(150 + np.argmax(near, axis=1) - 160)  # first near column per row, relative to the true edge
    shifts = np.concatenate(shifts)
    assert np.abs(shifts).max() <= 3  # edges wander, they do not jump
    assert 0.6 < np.std(shifts) < 1.3, np.std(shifts)


@pytest.mark.parametrize("preset", ["structured_light", "active_stereo"])
def test_no_outliers_beyond_the_scene_depths(preset):
    """Edge effects (jitter, flying pixels, grazing normals at silhouettes) stay between the surfaces around them."""
    depth = _box_before_wall(0.8, 1.2)
    for seed in range(3):
        _, measured = apply_sensor(GREY, depth, K, preset, seed=seed)
        finite = measured[np.isfinite(measured)]
        assert finite.min() > 0.8 - 0.03 and finite.max() < 1.2 + 0.05, (seed, finite.min(), finite.max())
