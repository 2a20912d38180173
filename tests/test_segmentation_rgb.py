"""RGB-only fallbacks: GrabCut in a box and border-contrast saliency, on a rendered scene and a real photograph."""

from __future__ import annotations

import numpy as np
from _segmentation_helpers import sim_scene

from z123_ros.camera import CameraIntrinsics
from z123_ros.segmentation import METHOD_GRABCUT, METHOD_SALIENCY, TabletopSegmenter, score_masks
from z123_ros.segmentation.tracker import box_iou


def test_grabcut_in_a_box_on_a_rendered_object() -> None:
    scene = sim_scene(0, 4, False, 0.45)
    target = scene.objects[0]  # fully visible, apart from the others
    ys, xs = np.nonzero(scene.mask(target.id))
    roi = (xs.min() - 10, ys.min() - 10, xs.max() + 11, ys.max() + 11)
    result = TabletopSegmenter().segment(scene.rgb, scene.intrinsics, roi=roi)
    assert len(result.objects) == 1
    obj = result.objects[0]
    assert obj.method == METHOD_GRABCUT and obj.score < 0.5
    assert obj.centroid_cam is None and obj.extent_m is None and result.plane_cam is None
    assert score_masks([obj.mask], scene.mask(target.id).astype(int)).ious[0] > 0.8


def test_saliency_on_a_real_photo() -> None:
    import skimage.data

    photo = skimage.data.coffee()  # a cup on a saucer on a wooden table, 600x400
    intr = CameraIntrinsics.from_fov(60.0, photo.shape[1], photo.shape[0])
    result = TabletopSegmenter().segment(photo, intr)
    assert len(result.objects) == 1
    obj = result.objects[0]
    assert obj.method == METHOD_SALIENCY and obj.score < 0.5
    # Hand-labelled box of cup and saucer in this photo.
    assert box_iou(obj.box_xyxy, (75, 20, 482, 380)) > 0.75
    assert 0.2 < obj.area_px / photo[:, :, 0].size < 0.7
    # GrabCut seeded by the same box agrees.
    boxed = TabletopSegmenter().segment(photo, intr, roi=(70, 15, 490, 385)).objects[0]
    assert boxed.method == METHOD_GRABCUT
    assert score_masks([boxed.mask], obj.mask.astype(int)).ious[0] > 0.7


def test_rgb_only_on_a_plain_image_does_not_crash() -> None:
    flat = np.full((120, 160, 3), 128, dtype=np.uint8)
    intr = CameraIntrinsics.from_fov(60.0, 160, 120)
    assert TabletopSegmenter().segment(flat, intr).objects == []
    result = TabletopSegmenter().segment(flat, intr, roi=(40, 30, 120, 90))
    assert all(o.method == METHOD_GRABCUT for o in result.objects)
