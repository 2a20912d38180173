"""Publishes one sample of every z123_interfaces message, repeatedly, until killed (for test_interfaces.py).

Run as its own process: python tests/_interfaces_publisher.py TOPIC_PREFIX
"""

import sys
import time

import rclpy
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from _interfaces_samples import SAMPLES  # noqa: E402


def main() -> None:
    prefix = sys.argv[1]
    rclpy.init()
    node = rclpy.create_node("interfaces_publisher")
    qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
    pubs = [(node.create_publisher(type(msg), f"{prefix}/{name}", qos), msg) for name, msg in SAMPLES().items()]
    for pub, msg in pubs:
        pub.publish(msg)
    try:
        while rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.2)
            for pub, msg in pubs:
                pub.publish(msg)
            time.sleep(0.2)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
