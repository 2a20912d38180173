"""Stable object ids across frames: a moving camera with known poses, a still camera, and the matching rules."""

from __future__ import annotations

import numpy as np
import pytest
from _segmentation_helpers import sim_scene

from z123_ros.segmentation import (
    FrameSegmentation,
    ObjectTracker,
    SegmentedObject,
    TabletopSegmenter,
    TrackerConfig,
    score_masks,
)


def _gt_to_pred_ids(scene, result, min_visible: float = 0.7) -> dict[str, int]:
    """Object name -> predicted id, for objects at least ``min_visible`` visible that are found (IoU >= 0.5)."""
    out = {}
    for obj in scene.objects:
        if obj.visible_fraction < min_visible:
            continue
        ious = [score_masks([p.mask], scene.mask(obj.id).astype(int)).ious[0] for p in result.objects]
        if ious and max(ious) >= 0.5:
            out[obj.name] = result.objects[int(np.argmax(ious))].id
    return out


def test_ids_stay_stable_from_a_moving_camera() -> None:
    segmenter = TabletopSegmenter()
    tracker = ObjectTracker()
    no_pose = ObjectTracker()
    per_frame, per_frame_no_pose = [], []
    for azimuth in (0.0, 25.0, 50.0):
        scene = sim_scene(0, 4, False, 0.45, azimuth_deg=azimuth)
        result = segmenter.segment(scene.rgb, scene.intrinsics, scene.depth_m, T_cam_from_world=scene.T_cam_from_world)
        per_frame.append(_gt_to_pred_ids(scene, tracker.update(result)))
        # The same frames without their poses: the tracker compares camera-frame centroids.
        without_pose = FrameSegmentation(result.objects, result.plane_cam, labels=result.labels)
        per_frame_no_pose.append(_gt_to_pred_ids(scene, no_pose.update(without_pose)))
    common = set.intersection(*(set(f) for f in per_frame))
    assert len(common) >= 3
    for name in common:
        assert len({f[name] for f in per_frame}) == 1, f"{name} changed id: {[f[name] for f in per_frame]}"
    # Without the poses the camera-frame centroids move by tens of centimetres: ids cannot survive.
    assert any(len({f[n] for f in per_frame_no_pose if n in f}) > 1 for n in common)


def test_ids_stay_stable_for_a_still_camera_with_noisy_depth() -> None:
    scene = sim_scene(1, 3, True, 0.45)
    segmenter, tracker = TabletopSegmenter(), ObjectTracker()
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(3):
        depth = scene.depth_m + rng.normal(0, 0.001, size=scene.depth_m.shape).astype(np.float32)
        frames.append(_gt_to_pred_ids(scene, tracker.update(segmenter.segment(scene.rgb, scene.intrinsics, depth))))
    assert len(frames[0]) == 3
    assert frames[0] == frames[1] == frames[2]


def _obj(oid: int, centroid, size=(0.05, 0.05, 0.1), box=(10, 10, 50, 50)) -> SegmentedObject:
    mask = np.zeros((100, 100), dtype=bool)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = True
    return SegmentedObject(
        id=oid,
        mask=mask,
        box_xyxy=box,
        centroid_cam=None if centroid is None else np.asarray(centroid, dtype=float),
        extent_m=None if centroid is None else np.asarray(size, dtype=float),
        score=0.9,
        method="test",
    )


def _frame(*objects: SegmentedObject) -> FrameSegmentation:
    labels = np.zeros((100, 100), dtype=np.int32)
    for o in objects:
        labels[o.mask] = o.id
    return FrameSegmentation(list(objects), labels=labels)


def test_matching_rules() -> None:
    tracker = ObjectTracker(TrackerConfig(max_missed_frames=1))
    f1 = tracker.update(_frame(_obj(1, (0, 0, 0.5)), _obj(2, (0.2, 0, 0.5), box=(60, 60, 90, 90))))
    assert [o.id for o in f1.objects] == [1, 2]
    # Order swapped, small motion: ids follow the objects; the label image is renumbered too.
    f2 = tracker.update(_frame(_obj(1, (0.21, 0, 0.5), box=(60, 60, 90, 90)), _obj(2, (0.01, 0, 0.5))))
    assert [o.id for o in f2.objects] == [2, 1]
    assert f2.object_by_id(1).box_xyxy == (10, 10, 50, 50) and f2.object_by_id(7) is None
    assert f2.labels[70, 70] == 2 and f2.labels[20, 20] == 1
    # A jump beyond the gate is a new object; a new object never reuses an id.
    f3 = tracker.update(_frame(_obj(1, (0.01, 0, 0.5)), _obj(2, (0.5, 0.3, 0.5), box=(60, 60, 90, 90))))
    assert [o.id for o in f3.objects] == [1, 3]
    # Same place but a very different size is not the same object either.
    f4 = tracker.update(_frame(_obj(1, (0.01, 0, 0.5), size=(0.3, 0.3, 0.3))))
    assert [o.id for o in f4.objects] == [4]
    # Track 1 was missed in f4 and is forgotten after max_missed_frames=1 more miss.
    tracker.update(_frame())
    assert 1 not in {t.id for t in tracker.tracks}
    f6 = tracker.update(_frame(_obj(1, (0.01, 0, 0.5))))
    assert f6.objects[0].id == 5


def test_rgb_only_objects_match_by_box_overlap() -> None:
    tracker = ObjectTracker()
    tracker.update(_frame(_obj(1, None, box=(10, 10, 50, 50))))
    assert tracker.update(_frame(_obj(1, None, box=(12, 11, 52, 50)))).objects[0].id == 1
    assert tracker.update(_frame(_obj(1, None, box=(60, 60, 95, 95)))).objects[0].id == 2


def test_bad_pose_is_rejected() -> None:
    from z123_ros.errors import CameraError

    with pytest.raises(CameraError):
        ObjectTracker().update(_frame(_obj(1, (0, 0, 0.5))), T_cam_from_world=np.ones((4, 4)))
