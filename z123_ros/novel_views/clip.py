"""OpenAI CLIP image preprocessing, in torch, as Zero-1-to-3 was trained with it.

The reference code (cvlab-columbia/zero123 ``FrozenCLIPImageEmbedder.preprocess``, kept by the diffusers port's
``CLIP_preprocess``) takes an image in [-1, 1], resizes it to 224x224 with bicubic interpolation
(``align_corners=True``, no antialiasing), maps it to [0, 1] and normalises with CLIP's mean and std. The Hugging Face
image processor (resize shortest edge with PIL, centre crop) gives slightly different pixels, so it is not used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 (the universal torch idiom)

#: OpenAI CLIP normalisation constants (RGB).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def clip_preprocess(images: torch.Tensor, size: int = 224) -> torch.Tensor:
    """(B, 3, H, W) images in [-1, 1] -> (B, 3, size, size) CLIP pixel values, computed in float32."""
    x = images.to(torch.float32)
    x = F.interpolate(x, size=(size, size), mode="bicubic", align_corners=True, antialias=False)
    x = (x + 1.0) / 2.0
    mean = torch.tensor(CLIP_MEAN, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x - mean) / std
