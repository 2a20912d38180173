"""Novel-view synthesis with Zero-1-to-3 (Liu et al., ICCV 2023): one image of an object -> views from other poses.

Core library code: imports neither rclpy nor Ray.

    from z123_ros.novel_views import load_zero123, preprocess_for_zero123

    pipe = load_zero123("path/to/zero123-xl-diffusers", device="cuda", dtype="fp16")
    inp = preprocess_for_zero123(rgb, mask, intrinsics=K, plane_cam=plane)
    out = pipe(inp, views=[(0.0, 90.0, 0.0), (20.0, 180.0, 0.0)])  # out.images: (2, 256, 256, 3) in [0, 1]
"""

from z123_ros.novel_views.loading import ModelLayout, detect_layout, load_zero123
from z123_ros.novel_views.pipeline import NovelViewOutput, View, Zero123Condition, Zero123Pipeline
from z123_ros.novel_views.preprocess import Zero123Input, input_polar_deg, preprocess_for_zero123

__all__ = [
    "ModelLayout",
    "NovelViewOutput",
    "View",
    "Zero123Condition",
    "Zero123Input",
    "Zero123Pipeline",
    "detect_layout",
    "input_polar_deg",
    "load_zero123",
    "preprocess_for_zero123",
]
