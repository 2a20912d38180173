"""The real-frame loader (z123_ros.evaluation.real) on ../shared/data/real: files, ground truth, bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from z123_ros.errors import InputError
from z123_ros.evaluation.real import (
    DEFAULT_REAL_ROOT,
    load_real_frame,
    load_real_frames,
    render_ground_truth_labels,
    visible_fractions,
)

DEV = DEFAULT_REAL_ROOT / "ycbv-dev"
UNLABELLED = DEFAULT_REAL_ROOT / "unlabelled-ycbv-style"
needs_real = pytest.mark.skipif(
    not DEV.is_dir(), reason=f"the real dev frames are not here ({DEV}: ../shared/data/real is absent)"
)


@pytest.fixture(scope="module")
def dev_frames():
    return load_real_frames(DEV)


@needs_real
def test_dev_frames_load_sorted_with_labels_and_posed_meshes(dev_frames):
    assert [f.name for f in dev_frames] == sorted(f.name for f in dev_frames)
    assert len(dev_frames) == 5
    for frame in dev_frames:
        h, w = frame.labels.shape
        assert frame.rgb.shape == (h, w, 3) and frame.rgb.dtype == np.uint8
        assert frame.depth_m.shape == (h, w) and frame.depth_m.dtype == np.float32
        assert not (frame.depth_m <= 0).any()  # no-depth is NaN, never 0
        assert {o.name for o in frame.objects} == {"009_gelatin_box", "025_mug", "061_foam_brick"}
        for obj in frame.objects:
            assert obj.mask.sum() == obj.visible_pixels
            # Objects about 0.5-1.5 m in front of the camera, metres not millimetres.
            assert 0.3 < obj.mesh_cam.centroid[2] < 2.0
            assert 0.03 < obj.mesh_cam.extents.max() < 0.3


@needs_real
def test_posed_meshes_rendered_into_the_image_overlap_the_labels(dev_frames):
    for frame in dev_frames:
        rendered = render_ground_truth_labels(frame)
        for obj in frame.objects:
            pred = rendered == obj.instance_id
            iou = (pred & obj.mask).sum() / (pred | obj.mask).sum()
            assert iou >= 0.8, f"{frame.name} {obj.name}: IoU {iou:.3f}"


@needs_real
def test_measured_depth_lies_on_the_posed_meshes(dev_frames):
    frame = dev_frames[0]
    from z123_ros.sim.renderer import TinyRenderer

    for obj in frame.objects:
        with TinyRenderer() as renderer:
            renderer.add_mesh(obj.mesh_cam.vertices, obj.mesh_cam.faces, (0.5, 0.5, 0.5))
            mesh_depth = renderer.render(frame.intrinsics, np.eye(4), 0.05, 10.0).depth_m
        both = obj.mask & np.isfinite(frame.depth_m) & np.isfinite(mesh_depth)
        error_mm = 1e3 * np.median(np.abs(frame.depth_m[both] - mesh_depth[both]))
        assert both.sum() > 0.5 * obj.mask.sum()
        assert error_mm < 10.0, f"{obj.name}: median depth error {error_mm:.1f} mm"


@needs_real
def test_visible_fractions_are_fractions(dev_frames):
    fractions = visible_fractions(dev_frames[0])
    assert sorted(fractions) == sorted(o.instance_id for o in dev_frames[0].objects)
    assert all(0.2 < v <= 1.0 for v in fractions.values()), fractions


@pytest.mark.skipif(not UNLABELLED.is_dir(), reason=f"{UNLABELLED} is absent (../shared/data/real)")
def test_unlabelled_frames_load_without_ground_truth():
    frames = load_real_frames(UNLABELLED)
    assert len(frames) == 5
    for frame in frames:
        assert frame.labels is None and frame.objects == [] and not frame.labelled
        assert 0.0 < np.isnan(frame.depth_m).mean() < 0.5


@needs_real
def test_bad_frame_folders_get_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="missing depth.npy"):
        shutil.copy(DEV / "0000_000001" / "rgb.png", tmp_path / "rgb.png")
        (tmp_path / "camera.json").write_text((DEV / "0000_000001" / "camera.json").read_text())
        load_real_frame(tmp_path)
    np.save(tmp_path / "depth.npy", np.ones((10, 10), np.float32))
    with pytest.raises(InputError, match="differ from camera.json"):
        load_real_frame(tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        load_real_frames(tmp_path / "nowhere")
    frame_dir = tmp_path / "frame"
    shutil.copytree(DEV / "0000_000001", frame_dir)
    objects = json.loads((frame_dir / "objects.json").read_text())
    objects[0]["name"] = "999_not_a_ycb_object"
    (frame_dir / "objects.json").write_text(json.dumps(objects))
    with pytest.raises(InputError, match="999_not_a_ycb_object"):
        load_real_frame(frame_dir)
