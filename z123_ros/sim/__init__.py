"""Simulated RGB-D tabletop camera: real YCB scans rendered on the CPU by pybullet's TinyRenderer.

``render_tabletop_scene(SceneConfig(...))`` gives a robot-like RGB-D frame with ground truth (meshes in the world frame,
instance ids, visible fractions); ``render_object_views`` renders one object alone on white from spherical viewpoints
(the paper's held-out views). No rclpy, no Ray.
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
