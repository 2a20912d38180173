"""Object segmentation of robot camera frames: find the objects and cut each one out for the rest of the pipeline.

``TabletopSegmenter(SegmentationConfig()).segment(rgb, intrinsics, depth_m=None, roi=None) -> FrameSegmentation``
(RGB-D support plane + clustering by default, RGB-only fallbacks without depth) and ``ObjectTracker().update(frame)``
for ids that stay stable across frames. Core code: no rclpy, no Ray.
"""

from z123_ros.segmentation.config import SegmentationConfig
from z123_ros.segmentation.evaluation import SegmentationScore, score_masks
from z123_ros.segmentation.factory import METHODS, Segmenter, make_segmenter
from z123_ros.segmentation.learned import PromptableSegmenter, SamSegmenter
from z123_ros.segmentation.rgb import METHOD_GRABCUT, METHOD_SALIENCY, grabcut_box, saliency_mask
from z123_ros.segmentation.tabletop import METHOD_RGBD, TabletopSegmenter
from z123_ros.segmentation.tracker import ObjectTracker, Track, TrackerConfig
from z123_ros.segmentation.types import FrameSegmentation, SegmentedObject

__all__ = [
    "METHODS",
    "Segmenter",
    "make_segmenter",
    "METHOD_GRABCUT",
    "METHOD_RGBD",
    "METHOD_SALIENCY",
    "FrameSegmentation",
    "ObjectTracker",
    "PromptableSegmenter",
    "SamSegmenter",
    "SegmentationConfig",
    "SegmentationScore",
    "SegmentedObject",
    "TabletopSegmenter",
    "Track",
    "TrackerConfig",
    "grabcut_box",
    "saliency_mask",
    "score_masks",
]
