"""One place that turns ``segmentation.method`` into a segmenter: the CLI, the benchmark and the node call
:func:`make_segmenter`, and every segmenter satisfies the :class:`Segmenter` protocol.

Methods:

- ``tabletop`` (default): the geometric RGB-D segmenter (:class:`TabletopSegmenter`), RGB-only fallbacks without depth.
- ``sam``: the same, with Segment Anything (a local safetensors folder, ``segmentation.sam_model_dir``) instead of
  GrabCut for RGB-only frames with a region of interest.
- ``learned``: a depth-only network trained on the simulator (:class:`LearnedSegmenter`, ``z123 train-segmenter``),
  weights from ``segmentation.learned_weights`` or the packaged ones; missing or bad weights are one ModelLoadError
  line, never a silent fallback.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import ConfigError
from z123_ros.segmentation.config import SegmentationConfig
from z123_ros.segmentation.learned import SamSegmenter
from z123_ros.segmentation.learned_segmenter import LearnedSegmenter
from z123_ros.segmentation.tabletop import TabletopSegmenter
from z123_ros.segmentation.types import FrameSegmentation

#: Names ``segmentation.method`` accepts.
METHODS = ("tabletop", "learned", "sam")


@runtime_checkable
class Segmenter(Protocol):
    """Finds the objects of one camera frame."""

    config: SegmentationConfig

    def segment(
        self,
        rgb: np.ndarray,
        intrinsics: CameraIntrinsics,
        depth_m: np.ndarray | None = None,
        roi: tuple[int, int, int, int] | None = None,
        T_cam_from_world: np.ndarray | None = None,
    ) -> FrameSegmentation:
        """Segment one frame (see :meth:`TabletopSegmenter.segment` for the arguments and errors)."""
        ...


def make_segmenter(config: SegmentationConfig | None = None) -> Segmenter:
    """The segmenter ``config.method`` names, configured by ``config``.

    Raises:
        ConfigError: an unknown method, invalid settings, or ``sam`` without a model folder.
        ModelLoadError: the SAM folder or the learned segmenter's weights cannot be loaded.
    """
    config = config or SegmentationConfig()
    config.validate()
    if config.method == "tabletop":
        return TabletopSegmenter(config)
    if config.method == "sam":
        if not config.sam_model_dir:
            raise ConfigError("segmentation.method 'sam' needs segmentation.sam_model_dir (a local SAM folder)")
        return TabletopSegmenter(config, promptable=SamSegmenter.from_pretrained(config.sam_model_dir))
    return LearnedSegmenter(config)
