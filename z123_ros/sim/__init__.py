"""Simulated RGB-D tabletop camera: real YCB scans rendered on the CPU by pybullet's TinyRenderer.

``render_tabletop_scene(SceneConfig(...))`` gives a robot-like RGB-D frame with ground truth (meshes in the world frame,
instance ids, visible fractions, truncation, clutter ids, the exact depth beside the sensor's); ``SceneConfig.sensor``
picks a depth-sensor model (``sensor.py``: ideal, structured_light, active_stereo), ``texture`` / ``clutter`` /
``background`` / ``occluding`` / ``border_cut`` and the camera's range, elevation, field of view and resolution vary
the scene. ``conditions.py`` names seeded families of such scenes for benchmarks (``render_condition(bucket, seed)``).
``render_object_views`` renders one object alone on white from spherical viewpoints (the paper's held-out views).
No rclpy, no Ray.
"""

from z123_ros.sim.objects import OBJECT_COLOURS, OBJECT_NAMES, load_object_mesh, object_colour
from z123_ros.sim.renderer import LightConfig, RenderBuffers, TinyRenderer
from z123_ros.sim.scene import RenderedScene, SceneConfig, SceneObject, camera_pose, render_tabletop_scene
from z123_ros.sim.sensor import SENSOR_PRESETS, SensorConfig, apply_sensor
from z123_ros.sim.views import ObjectViews, render_object_views

__all__ = [
    "OBJECT_COLOURS",
    "OBJECT_NAMES",
    "LightConfig",
    "ObjectViews",
    "RenderBuffers",
    "SENSOR_PRESETS",
    "RenderedScene",
    "SceneConfig",
    "SceneObject",
    "SensorConfig",
    "apply_sensor",
    "TinyRenderer",
    "camera_pose",
    "load_object_mesh",
    "object_colour",
    "render_object_views",
    "render_tabletop_scene",
]
