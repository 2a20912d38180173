"""/tf and /tf_static for a node: tf2_ros where it is installed (a full ROS 2 install), else our TransformBuffer.

The pip wheels of ROS 2 have no tf2 / tf2_ros; tf2_msgs/TFMessage is then built by scripts/build_interfaces.py so
the wire format is the standard one either way: a bag or a robot publishing /tf works with both back ends.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from geometry_msgs.msg import TransformStamped
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from rclpy.time import Time
from tf2_msgs.msg import TFMessage

from z123_ros.ros.tf import TransformBuffer, TransformError, make_transform, matrix_to_quaternion

try:  # a full ROS 2 install: use the real tf2 (same topics, same semantics)
    import tf2_ros
except ImportError:
    tf2_ros = None

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
#: As tf2_ros' publishers and listeners: reliable; /tf_static latched so late joiners get every static frame.
TF_QOS = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
TF_STATIC_QOS = QoSProfile(
    depth=100, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
)


def stamp_to_ns(stamp: Any) -> int:
    """builtin_interfaces/Time -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def transform_stamped(parent: str, child: str, T_parent_from_child: np.ndarray, stamp: Any) -> TransformStamped:
    """A geometry_msgs/TransformStamped parent <- child at ``stamp`` (builtin_interfaces/Time)."""
    msg = TransformStamped()
    msg.header.stamp = stamp
    msg.header.frame_id = parent
    msg.child_frame_id = child
    T = np.asarray(T_parent_from_child, dtype=np.float64)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (float(v) for v in T[:3, 3])
    q = matrix_to_quaternion(T[:3, :3])
    r = msg.transform.rotation
    r.x, r.y, r.z, r.w = (float(v) for v in q)
    return msg


def transform_to_matrix(msg: Any) -> np.ndarray:
    """geometry_msgs/Transform -> 4x4 T_parent_from_child."""
    t, r = msg.translation, msg.rotation
    return make_transform((t.x, t.y, t.z), (r.x, r.y, r.z, r.w))


def add_tf_message(buffer: TransformBuffer, msg: Any, static: bool) -> int:
    """Add every transform of a tf2_msgs/TFMessage to ``buffer``; returns how many were rejected as malformed."""
    rejected = 0
    for tf in msg.transforms:
        t, r = tf.transform.translation, tf.transform.rotation
        try:
            buffer.set_transform(
                tf.header.frame_id,
                tf.child_frame_id,
                stamp_to_ns(tf.header.stamp),
                (t.x, t.y, t.z),
                (r.x, r.y, r.z, r.w),
                static=static,
            )
        except TransformError:
            rejected += 1
    return rejected


class TfListener:
    """Answers ``lookup(target, source, stamp_ns, timeout_s) -> T_target_from_source`` from the node's /tf.

    Call ``lookup`` from a worker thread, never from an executor callback: it waits for the transform, and the
    transforms arrive through the node's executor.
    """

    def __init__(self, node: Node, cache_time_s: float = 10.0, prefer_tf2_ros: bool = True) -> None:
        self.backend = "tf2_ros" if (tf2_ros is not None and prefer_tf2_ros) else "z123"
        self.rejected = 0
        self._node = node
        self._subs: list[Any] = []
        if self.backend == "tf2_ros":
            self._tf2_buffer = tf2_ros.Buffer(cache_time=Duration(seconds=cache_time_s))
            self._tf2_listener = tf2_ros.TransformListener(self._tf2_buffer, node, spin_thread=False)
            return
        self.buffer = TransformBuffer(cache_time_s=cache_time_s)
        self._subs = [
            node.create_subscription(TFMessage, TF_TOPIC, lambda m: self._on_tf(m, False), TF_QOS),
            node.create_subscription(TFMessage, TF_STATIC_TOPIC, lambda m: self._on_tf(m, True), TF_STATIC_QOS),
        ]

    def _on_tf(self, msg: TFMessage, static: bool) -> None:
        self.rejected += add_tf_message(self.buffer, msg, static)

    def lookup(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        """T_target_from_source at ``stamp_ns`` (0 = latest), waiting up to ``timeout_s``; raises TransformError."""
        if self.backend == "z123":
            return self.buffer.wait_for(target, source, stamp_ns, timeout_s)
        try:
            tf = self._tf2_buffer.lookup_transform(
                target, source, Time(nanoseconds=stamp_ns), timeout=Duration(seconds=timeout_s)
            )
        except tf2_ros.TransformException as exc:
            raise TransformError(str(exc)) from exc
        return transform_to_matrix(tf.transform)

    def clear(self) -> None:
        """Forget every transform (time jumped back, e.g. a bag restarted)."""
        if self.backend == "z123":
            self.buffer.clear()
        else:
            self._tf2_buffer.clear()

    def destroy(self) -> None:
        """Drop the subscriptions (the node stays)."""
        for sub in self._subs:
            self._node.destroy_subscription(sub)
        self._subs = []
        if self.backend == "tf2_ros":
            self._tf2_listener.unregister()
