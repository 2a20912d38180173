"""The seam for learned promptable segmenters (image + box prompts -> masks), and a SAM adapter.

Any object with a ``name`` and ``segment_boxes(rgb, boxes_xyxy) -> (masks, scores)`` plugs into
:class:`~z123_ros.segmentation.TabletopSegmenter` (``promptable=``): it then replaces GrabCut for RGB-only frames with
an roi. :class:`SamSegmenter` wraps Segment Anything through transformers (``SamModel`` + ``SamProcessor``), loaded from
a LOCAL folder in the Hugging Face layout (config.json, model.safetensors, processor_config.json or
preprocessor_config.json). Only safetensors weights are accepted: a pickle checkpoint can run code when loaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from z123_ros.errors import InputError, ModelLoadError

logger = logging.getLogger(__name__)

#: A box prompt (x0, y0, x1, y1) in pixels.
Box = tuple[int, int, int, int]


@runtime_checkable
class PromptableSegmenter(Protocol):
    """A segmenter prompted by boxes."""

    #: Written to ``SegmentedObject.method`` for the masks it makes.
    name: str

    def segment_boxes(
        self, rgb: np.ndarray, boxes_xyxy: list[tuple[int, int, int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the objects in ``boxes_xyxy`` of an (H, W, 3) uint8 RGB image.

        Returns ``(masks (N, H, W) bool, scores (N,) float in 0..1)``, one per box, in order.
        """
        ...


class SamSegmenter:
    """Segment Anything (transformers ``SamModel``) as a :class:`PromptableSegmenter`.

    Args:
        model: a loaded ``transformers.SamModel``.
        processor: the matching ``transformers.SamProcessor``.
        device: torch device string the model runs on.
        name: the ``method`` label of its masks.
    """

    def __init__(self, model, processor, device: str = "cpu", name: str = "sam") -> None:
        self.model = model
        self.processor = processor
        self.device = device
        self.name = name

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu", dtype=None) -> SamSegmenter:
        """Load from a local folder (never from a hub: this code must work offline)."""
        import torch
        from transformers import SamModel, SamProcessor

        folder = Path(folder)
        if not folder.is_dir():
            raise ModelLoadError(f"SAM model folder not found: {folder}")
        missing = [n for n in ("config.json",) if not (folder / n).is_file()]
        if not any(folder.glob("*.safetensors")):
            missing.append("model.safetensors (pickle .bin checkpoints are refused)")
        if not ((folder / "processor_config.json").is_file() or (folder / "preprocessor_config.json").is_file()):
            missing.append("processor_config.json or preprocessor_config.json")
        if missing:
            raise ModelLoadError(f"SAM model folder {folder} lacks {', '.join(missing)}")
        try:
            model = SamModel.from_pretrained(
                folder, use_safetensors=True, local_files_only=True, dtype=dtype or torch.float32
            )
            processor = SamProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"cannot load SAM from {folder}: {exc}") from exc
        model.to(device).eval()
        logger.info("loaded SAM from %s (%d parameters)", folder, sum(p.numel() for p in model.parameters()))
        return cls(model, processor, device=device)

    def segment_boxes(
        self, rgb: np.ndarray, boxes_xyxy: list[tuple[int, int, int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        import torch

        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise InputError(f"RGB must be (H, W, 3) uint8, got {rgb.dtype} {rgb.shape}")
        H, W = rgb.shape[:2]
        if len(boxes_xyxy) == 0:
            return np.zeros((0, H, W), dtype=bool), np.zeros(0, dtype=np.float32)
        boxes = [[float(v) for v in box] for box in boxes_xyxy]
        inputs = self.processor(images=rgb, input_boxes=[boxes], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
        with torch.no_grad():
            out = self.model(
                pixel_values=pixel_values, input_boxes=inputs["input_boxes"].to(self.device), multimask_output=False
            )
        masks = self.processor.image_processor.post_process_masks(
            out.pred_masks.float().cpu(), inputs["original_sizes"], inputs["reshaped_input_sizes"]
        )[0]  # (N, 1, H, W) bool
        scores = out.iou_scores.float().cpu().numpy().reshape(len(boxes), -1)[:, 0]
        return masks[:, 0].numpy().astype(bool), np.clip(scores, 0.0, 1.0).astype(np.float32)
