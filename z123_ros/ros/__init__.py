"""The ROS 2 edge of the project: message conversions, approximate-time sync, parameters derived from the config
dataclasses, the ``z123_node`` lifecycle node and the simulated camera node.

Only this subpackage imports rclpy. Import the modules directly (``from z123_ros.ros.conversions import ...``):
this package file imports nothing so that, e.g., :mod:`z123_ros.ros.sync` works without ROS installed. The names
below load their module on first use: the node refers to them as ``ros.Pipeline`` etc., so that its process starts
the dispatch process before it imports the segmentation stack (scipy; 0.4 s of its 0.7 s import), and that start
overlaps the rest of the node's start-up.
"""

from __future__ import annotations

from z123_ros._lazy import lazy_exports

_EXPORTS = {
    "NodeConfig": "z123_ros.ros.config",
    "validate_node_config": "z123_ros.ros.config",
    "RawFrame": "z123_ros.ros.frames",
    "check_message": "z123_ros.ros.frames",
    "Pipeline": "z123_ros.ros.pipeline",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
