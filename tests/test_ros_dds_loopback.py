"""The shipped Fast DDS profile (config/fastdds_loopback.xml) keeps every DDS socket of a ROS process on loopback.

Two processes talk over a topic with the profile; the subscriber lists its own UDP sockets: each one is bound to
127.0.0.1 or to the discovery multicast group, none to 0.0.0.0 or another interface's address. (Without the profile
the same processes bind 0.0.0.0 and the machine's address; with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST rmw_fastrtps
adds sockets on every interface, which is why the profile goes with the default range SUBNET.)
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from z123_ros.resources import default_config  # noqa: E402

pytestmark = pytest.mark.ros

PROFILE = default_config("fastdds_loopback.xml")

PROBE = """
import ipaddress, json, sys, time
import psutil, rclpy
from std_msgs.msg import String
role, seconds = sys.argv[1], float(sys.argv[2])
rclpy.init()
node = rclpy.create_node("z123_dds_" + role)
got = []
if role == "pub":
    pub = node.create_publisher(String, "z123_dds_loopback_check", 10)
else:
    node.create_subscription(String, "z123_dds_loopback_check", lambda m: got.append(m.data), 10)
end = time.monotonic() + seconds
while time.monotonic() < end and not got:
    if role == "pub":
        pub.publish(String(data="over loopback"))
    rclpy.spin_once(node, timeout_sec=0.1)
addresses = sorted({c.laddr.ip for c in psutil.Process().net_connections(kind="udp")})
print(json.dumps({"received": got[:1], "addresses": addresses}), flush=True)
rclpy.shutdown()
"""


def test_profile_keeps_dds_sockets_on_loopback(tmp_path: Path) -> None:
    assert PROFILE.is_file()
    env = {
        **os.environ,
        "FASTDDS_DEFAULT_PROFILES_FILE": str(PROFILE),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET",
        "ROS_DOMAIN_ID": str(random.SystemRandom().randint(101, 200)),
        "ROS_LOG_DIR": str(tmp_path),
    }
    pub = subprocess.Popen([sys.executable, "-c", PROBE, "pub", "90"], env=env, stdout=subprocess.DEVNULL)
    try:
        sub = subprocess.run(
            [sys.executable, "-c", PROBE, "sub", "60"], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        pub.kill()
        pub.wait()
    assert sub.returncode == 0, sub.stderr[-2000:]
    report = json.loads(sub.stdout.strip().splitlines()[-1])
    assert report["received"] == ["over loopback"]
    for address in report["addresses"]:
        ip = ipaddress.ip_address(address)
        assert ip.is_loopback or ip.is_multicast, f"a DDS socket is bound to {address}: {report['addresses']}"
