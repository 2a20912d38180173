"""The learned backends with the oracle novel-view model (a test double with a perfect prior): they reconstruct a box
and a cylinder in metres in the camera frame, better than the depth backend alone on the same view (the views add
what one depth image cannot see), and a deliberately wrong convention inside the oracle makes them fail measurably.
Tiny sizes (32^3 field, 16 px renders, 64 px oracle images, 100 fit steps) so that each run takes seconds."""

from __future__ import annotations

import pytest
import torch

from tests._oracle_helpers import oracle_config, oracle_for, render_primitive_view
from tests._reconstruction_helpers import evaluate_in_world
from z123_ros.reconstruction import reconstruct

#: Each wrong convention must cost at least this much IoU. Measured (100 steps, one thread): box 0.912 correct, flipped
#: azimuth 0.837, flipped polar 0.872, radius x 1.3 0.785; cylinder 0.851, 0.825 (polar), 0.717 (radius).
MARGIN = {"flip_azimuth": 0.04, "flip_polar": 0.015, "radius_scale": 0.07}
#: Fit steps of every run here.
FIT_STEPS = 100
WRONG = {"flip_azimuth": True, "flip_polar": True, "radius_scale": 1.3}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """One torch thread for every run here, the module-scoped ones included (the same float order every time)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def views():
    return {kind: render_primitive_view(kind) for kind in ("box", "cylinder")}


@pytest.fixture(scope="module")
def right(_one_thread, views):
    """The multiview result with the correct oracle, per primitive (computed once)."""
    return {kind: _multiview(view) for kind, view in views.items()}


def _multiview(view, **wrong) -> tuple[float, object]:
    oracle = oracle_for(view, 64, **wrong)
    try:
        result = reconstruct(view.inp, "multiview", oracle_config(fit_steps=FIT_STEPS), oracle)
    finally:
        oracle.close()
    return evaluate_in_world(result, view, num_points=3000)["iou"], result


@pytest.mark.parametrize("kind", ["box", "cylinder"])
def test_multiview_with_the_oracle_recovers_the_object_in_metres(right, kind):
    iou, result = right[kind]
    # Watertightness is not asserted here: at 32^3 marching cubes can leave a non-manifold edge (seen once on the
    # cylinder, under another thread count); tests/test_reconstruction_learned.py checks it on its runs.
    assert result.metric and result.frame == "camera"
    assert iou >= 0.8  # measured: box 0.912, cylinder 0.851


@pytest.mark.parametrize("kind", ["box", "cylinder"])
def test_multiview_with_the_oracle_beats_depth_alone(views, right, kind):
    """The depth completion initialises the field: with exact views the fit must improve on it (measured at this size:
    box 0.912 vs depth 0.829, cylinder 0.851 vs 0.804)."""
    view = views[kind]
    depth_iou = evaluate_in_world(reconstruct(view.inp, "depth", oracle_config()), view, num_points=3000)["iou"]
    assert right[kind][0] > depth_iou + 0.02, (right[kind][0], depth_iou)


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("box", "flip_azimuth"),
        ("box", "flip_polar"),
        ("box", "radius_scale"),
        # A cylinder looks the same from +d and -d azimuth: the box checks the azimuth sign.
        pytest.param("cylinder", "flip_polar", marks=pytest.mark.slow),
        pytest.param("cylinder", "radius_scale", marks=pytest.mark.slow),
    ],
)
def test_a_wrong_convention_in_the_oracle_lowers_the_iou(views, right, kind, name):
    wrong, _ = _multiview(views[kind], **{name: WRONG[name]})
    assert wrong < right[kind][0] - MARGIN[name], (right[kind][0], wrong)


@pytest.mark.slow(reason="250 SJC steps with the oracle: minutes on 2 shared CPU cores")
def test_sjc_with_the_oracle_schedule_builds_the_box_from_a_ball(views):
    """Score distillation alone (from a centred ball, not the depth completion) converges with the oracle's exact
    score under the oracle's schedule documented in SJCConfig (score x100, near view and smoothness off, density lr
    2). Measured: IoU 0.385 at the start, 0.783 after 250 steps with jittered rays (0.804 at pixel centres; 128 px
    oracle images, 16 x 16 latents, 16 px renders)."""
    cfg = oracle_config()
    cfg.sjc.steps = 250
    cfg.sjc.init_from_depth = False
    cfg.sjc.score_weight, cfg.sjc.density_lr = 100.0, 2.0
    cfg.sjc.near_view_weight = cfg.sjc.depth_smooth_weight = 0.0
    view = views["box"]
    oracle = oracle_for(view, 128)
    try:
        result = reconstruct(view.inp, "zero123", cfg, oracle)
    finally:
        oracle.close()
    assert evaluate_in_world(result, view, num_points=3000)["iou"] >= 0.75
