"""Result types of the segmentation stage: one :class:`SegmentedObject` per object, one :class:`FrameSegmentation`
per camera frame. All 3D quantities are in the OpenCV camera frame of that frame (see z123_ros.camera)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SegmentedObject:
    """One object found in a camera frame."""

    #: Object id, > 0. Per-frame order from the segmenter; stable across frames after ObjectTracker.update.
    id: int
    #: (H, W) bool image mask of the object's visible pixels.
    mask: np.ndarray
    #: Tight 2D box (x0, y0, x1, y1) in pixels, x1/y1 exclusive (mask[y0:y1, x0:x1] holds every mask pixel).
    box_xyxy: tuple[int, int, int, int]
    #: (3,) mean of the object's visible 3D points, metres, camera frame; None without depth.
    centroid_cam: np.ndarray | None
    #: (3,) axis-aligned size of the visible points in the camera frame, metres; None without depth.
    extent_m: np.ndarray | None
    #: Confidence in 0..1. RGB-D segmentation scores high, RGB-only fallbacks clearly lower.
    score: float
    #: How the mask was made: "rgbd_tabletop", "rgb_grabcut", "rgb_saliency" or a learned segmenter's name.
    method: str
    #: Camera polar angle (deg) over the support plane at this object's centroid; None without a plane.
    camera_polar_deg: float | None = None
    #: (3,) size in the support-plane frame: footprint along the plane's two axes and the height above it, metres.
    #: More useful for grasping than ``extent_m``; None without a plane.
    size_on_plane_m: np.ndarray | None = None
    #: Fraction of the mask's pixels with valid depth (0 without depth).
    depth_coverage: float = 0.0
    #: The mask touches the image border: the object is probably cut by it (its size and centroid are partial).
    truncated: bool = False

    @property
    def area_px(self) -> int:
        return int(np.count_nonzero(self.mask))


@dataclass
class FrameSegmentation:
    """Every object found in one camera frame."""

    objects: list[SegmentedObject]
    #: (4,) support plane ``n . p + d = 0`` in the camera frame, unit ``n`` oriented towards the camera (d > 0);
    #: None when no plane was found or no depth was given.
    plane_cam: np.ndarray | None = None
    #: Camera polar angle (deg) over the plane at the objects (mean of their centroids): 0 = from above, 90 = level.
    camera_polar_deg: float | None = None
    #: (H, W) int32 label image: 0 = background, k = the object with ``id == k``.
    labels: np.ndarray | None = None
    #: Stage name -> seconds, in the order the stages ran.
    timings: dict[str, float] = field(default_factory=dict)
    #: 4x4 camera pose of the frame when known (world +z up); the tracker uses it for a moving camera.
    T_cam_from_world: np.ndarray | None = None

    def object_by_id(self, object_id: int) -> SegmentedObject | None:
        for obj in self.objects:
            if obj.id == object_id:
                return obj
        return None
