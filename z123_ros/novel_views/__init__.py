"""Novel-view synthesis with Zero-1-to-3 (Liu et al., ICCV 2023): one image of an object -> views from other poses.

Core library code: imports neither rclpy nor Ray.

    from z123_ros.novel_views import load_zero123, preprocess_for_zero123

    pipe = load_zero123("path/to/zero123-xl-diffusers", device="cuda", dtype="fp16")
    inp = preprocess_for_zero123(rgb, mask, intrinsics=K, plane_cam=plane)
    out = pipe(inp, views=[(0.0, 90.0, 0.0), (20.0, 180.0, 0.0)])  # out.images: (2, 256, 256, 3) in [0, 1]
"""

from __future__ import annotations

from z123_ros._lazy import lazy_exports

_EXPORTS = {
    "ModelLayout": "z123_ros.novel_views.loading",
    "detect_layout": "z123_ros.novel_views.loading",
    "load_zero123": "z123_ros.novel_views.pipeline",
    "NovelViewOutput": "z123_ros.novel_views.pipeline",
    "View": "z123_ros.novel_views.pipeline",
    "Zero123Condition": "z123_ros.novel_views.pipeline",
    "Zero123Pipeline": "z123_ros.novel_views.pipeline",
    "Zero123Input": "z123_ros.novel_views.preprocess",
    "input_polar_deg": "z123_ros.novel_views.preprocess",
    "preprocess_for_zero123": "z123_ros.novel_views.preprocess",
}

__all__ = sorted(_EXPORTS)
# Lazy: `z123 --help` and the metrics must not import torch and diffusers.
__getattr__ = lazy_exports(__name__, _EXPORTS)
