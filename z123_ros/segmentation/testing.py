"""Test helpers: a tiny random-weight SAM saved in the transformers folder layout (plumbing tests only)."""

from __future__ import annotations

import os
from pathlib import Path


def save_tiny_sam(folder: str | os.PathLike, seed: int = 0) -> Path:
    """Write a ~0.1 M-parameter random SamModel + SamProcessor (64 px inputs) to ``folder``; returns the folder."""
    import torch
    from transformers import SamConfig, SamModel, SamProcessor
    from transformers.models.sam.configuration_sam import (
        SamMaskDecoderConfig,
        SamPromptEncoderConfig,
        SamVisionConfig,
    )
    from transformers.models.sam.image_processing_pil_sam import SamImageProcessorPil

    vision = SamVisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        mlp_dim=64,
        image_size=64,
        patch_size=16,
        output_channels=32,
        global_attn_indexes=[1],
        window_size=2,
        num_pos_feats=16,
    )
    prompt = SamPromptEncoderConfig(hidden_size=32, image_size=64, patch_size=16, mask_input_channels=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_dim=64, iou_head_hidden_dim=32
    )
    config = SamConfig(
        vision_config=vision.to_dict(), prompt_encoder_config=prompt.to_dict(), mask_decoder_config=decoder.to_dict()
    )
    torch.manual_seed(seed)
    model = SamModel(config).eval()
    image_processor = SamImageProcessorPil(
        size={"longest_edge": 64},
        pad_size={"height": 64, "width": 64},
        mask_size={"longest_edge": 16},
        mask_pad_size={"height": 16, "width": 16},
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    SamProcessor(image_processor=image_processor).save_pretrained(folder)
    return folder
