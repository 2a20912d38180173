"""segmentation.method: one factory for the CLI, the benchmark and the node; every segmenter is a Segmenter."""

from __future__ import annotations

import pytest

from z123_ros.errors import ConfigError, ModelLoadError
from z123_ros.segmentation import METHODS, SegmentationConfig, Segmenter, TabletopSegmenter, make_segmenter


def test_default_method_is_the_geometric_segmenter() -> None:
    segmenter = make_segmenter()
    assert isinstance(segmenter, TabletopSegmenter) and isinstance(segmenter, Segmenter)
    assert SegmentationConfig().method == "tabletop" and set(METHODS) == {"tabletop", "learned", "sam"}


def test_unavailable_or_unknown_methods_are_refused_with_one_line() -> None:
    with pytest.raises(ModelLoadError, match="learned segmenter weights not found"):
        make_segmenter(SegmentationConfig(method="learned", learned_weights="/nonexistent/learned.safetensors"))
    with pytest.raises(ConfigError, match="needs segmentation.sam_model_dir"):
        make_segmenter(SegmentationConfig(method="sam"))
    with pytest.raises(ConfigError, match="must be tabletop, learned or sam"):
        make_segmenter(SegmentationConfig(method="maskrcnn"))


def test_sam_method_loads_the_local_model(tmp_path) -> None:
    pytest.importorskip("transformers")
    from z123_ros.segmentation.testing import save_tiny_sam

    folder = save_tiny_sam(tmp_path / "sam")
    segmenter = make_segmenter(SegmentationConfig(method="sam", sam_model_dir=str(folder)))
    assert isinstance(segmenter, Segmenter) and segmenter.promptable.name == "sam"
