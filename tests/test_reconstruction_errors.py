"""Bad inputs raise the right Z123Error subclass with a message naming the problem."""

from __future__ import annotations

import numpy as np
import pytest

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import CameraError, ConfigError, InputError, ModelLoadError, ReconstructionError
from z123_ros.reconstruction import ReconstructionInput, reconstruct


def make_input(h: int = 60, w: int = 80) -> ReconstructionInput:
    intr = CameraIntrinsics(70.0, 70.0, (w - 1) / 2, (h - 1) / 2, w, h)
    mask = np.zeros((h, w), bool)
    mask[20:40, 30:50] = True
    depth = np.full((h, w), 0.6, np.float32)
    depth[mask] = 0.55
    return ReconstructionInput(np.zeros((h, w, 3), np.uint8), mask, intr, depth_m=depth)


def test_a_synthetic_box_reconstructs():
    r = reconstruct(make_input(), "depth")
    assert r.watertight and r.metric


def test_empty_mask():
    inp = make_input()
    inp.mask = np.zeros_like(inp.mask)
    with pytest.raises(InputError, match="mask is empty"):
        reconstruct(inp, "depth")


def test_all_nan_depth():
    inp = make_input()
    inp.depth_m = np.full_like(inp.depth_m, np.nan)
    with pytest.raises(InputError, match="no valid"):
        reconstruct(inp, "depth")


def test_depth_invalid_only_inside_the_mask():
    inp = make_input()
    inp.depth_m[inp.mask] = 0.0
    with pytest.raises(InputError, match="inside the object mask"):
        reconstruct(inp, "hull")


def test_mask_depth_size_mismatch():
    inp = make_input()
    inp.depth_m = np.ones((30, 40), np.float32)
    with pytest.raises(InputError, match="depth is 40x30"):
        reconstruct(inp, "depth")


def test_mask_outside_the_image():
    inp = make_input()
    inp.mask = np.ones((120, 160), bool)
    with pytest.raises(InputError, match="mask is 160x120"):
        reconstruct(inp, "depth")


def test_multichannel_mask():
    inp = make_input()
    inp.mask = np.stack([inp.mask] * 3, axis=-1)
    with pytest.raises(InputError, match="single-channel"):
        reconstruct(inp, "depth")


def test_unknown_backend():
    with pytest.raises(ConfigError, match="unknown backend 'nerf'"):
        reconstruct(make_input(), "nerf")


def test_learned_backend_without_pipeline():
    with pytest.raises(ConfigError, match="needs a Zero-1-to-3 pipeline"):
        reconstruct(make_input(), "multiview")


def test_depth_backend_without_depth():
    inp = make_input()
    inp.depth_m = None
    with pytest.raises(InputError, match="needs metric depth"):
        reconstruct(inp, "depth")


def test_non_rigid_pose():
    inp = make_input()
    inp.T_cam_from_world = np.diag([2.0, 1.0, 1.0, 1.0])
    with pytest.raises(CameraError):
        reconstruct(inp, "depth")


def test_bad_support_plane():
    inp = make_input()
    inp.support_plane_cam = np.array([0.0, 0.0, 0.0, 1.0])
    with pytest.raises(InputError, match="non-zero normal"):
        reconstruct(inp, "depth")


def test_singular_intrinsics():
    with pytest.raises(CameraError):
        CameraIntrinsics(0.0, 70.0, 40.0, 30.0, 80, 60)


def test_flat_points_cannot_make_a_hull():
    inp = make_input()
    inp.mask = np.zeros_like(inp.mask)
    inp.mask[30, 30:50] = True  # one row of pixels at one depth: a line, no volume
    with pytest.raises(ReconstructionError):
        reconstruct(inp, "hull")


def test_missing_model_folder(tmp_path):
    from z123_ros.novel_views import load_zero123

    with pytest.raises(ModelLoadError, match="does not exist"):
        load_zero123(tmp_path / "nope")


@pytest.mark.parametrize("backend", ["depth", "hull"])
def test_a_mask_over_the_whole_image_is_refused(backend):
    # Before: exit 0 and a 1 m "object" at confidence 0.87 (with the hull too).
    inp = make_input()
    inp.mask = np.ones_like(inp.mask)
    inp.mask[0, 0] = False
    with pytest.raises(InputError, match="covers 100% of the image"):
        reconstruct(inp, backend)


@pytest.mark.parametrize("backend", ["depth", "hull"])
def test_a_mask_on_the_table_is_refused(backend):
    from tests._reconstruction_helpers import render_object_view

    view = render_object_view("005_tomato_soup_can", width=160, height=120)
    table = np.isfinite(view.inp.depth_m) & ~view.inp.mask
    table[:, :40] = False  # less than the whole image: only the plane test can tell
    inp = ReconstructionInput(
        view.inp.rgb, table, view.inp.intrinsics, depth_m=view.inp.depth_m, T_cam_from_world=view.T_cam_from_world
    )
    with pytest.raises(InputError, match="lies on the support plane: the mask is the table"):
        reconstruct(inp, backend)
    # Without a pose: one flat surface over half the image.
    inp.T_cam_from_world = None
    with pytest.raises(InputError, match="one flat surface"):
        reconstruct(inp, backend)


def test_label_image_of_the_wrong_shape():
    inp = make_input()
    inp.labels = np.zeros((3, 3), np.int32)
    with pytest.raises(InputError, match="labels shape"):
        reconstruct(inp, "depth")
