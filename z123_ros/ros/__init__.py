"""The ROS 2 edge of the project: message conversions, approximate-time sync, parameters derived from the config
dataclasses, the ``z123_node`` lifecycle node and the simulated camera node.

Only this subpackage imports rclpy. Import the modules directly (``from z123_ros.ros.conversions import ...``):
this package file imports nothing so that, e.g., :mod:`z123_ros.ros.sync` works without ROS installed.
"""
