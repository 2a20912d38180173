"""rosbag2 record and play without a ROS 2 install (``ros2 bag`` has no pip wheel): rclpy + the ``rosbags`` library.

Messages travel as the serialized CDR bytes DDS delivers (``raw=True`` subscriptions, ``publish(bytes)``), which is
exactly what rosbag2 stores, so nothing is decoded on the way. Bags are rosbag2 version 8 (Iron, Jazzy, Kilted read
it) in sqlite3 (``.db3``, the default) or MCAP storage; message definitions and type hashes come from rosbags'
standard typestore for this ROS release, so ``ros2 bag play`` / ``ros2 bag info`` on a full ROS 2 install read them.

- :func:`record`: subscribes to the given topics (each as soon as a publisher shows its type, with the publisher's
  reliability/durability) and writes every message with its receive time; ``sim=True`` also runs the simulated
  camera in this process, subscribed before its first frame.
- :func:`play`: publishes a bag's messages with their original spacing divided by ``rate`` (optionally looping) and
  the bag time on /clock, so nodes with ``use_sim_time`` follow the bag.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Reader, ReaderError, StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore
from rosgraph_msgs.msg import Clock

from z123_ros.errors import ConfigError, InputError

logger = logging.getLogger(__name__)

#: The camera topics z123_node and the simulated camera use (raw and image_transport names), tf, ground truth.
DEFAULT_TOPICS = (
    "/camera/color/image_raw",
    "/camera/color/image_raw/compressed",
    "/camera/aligned_depth_to_color/image_raw",
    "/camera/aligned_depth_to_color/image_raw/compressedDepth",
    "/camera/color/camera_info",
    "/tf",
    "/tf_static",
    "/sim_camera/ground_truth",
)
#: rosbag2 storage format version written (8: read by Iron and later; rosbags writes 8 or 9).
BAG_VERSION = 8
STORAGES = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}
TYPESTORE = get_typestore(Stores.ROS2_KILTED)


def message_class(msgtype: str) -> type:
    """``sensor_msgs/msg/Image`` -> the rclpy message class; InputError when its package is not installed."""
    package, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{package}.msg"), name)
    except (ImportError, AttributeError) as exc:
        raise InputError(f"message type {msgtype} is not installed ({exc})") from exc


def _rosbags_qos(profile: QoSProfile) -> Qos:
    """An rclpy QoS profile as rosbag2 metadata stores it (offered_qos_profiles)."""
    zero = QosTime(sec=0, nsec=0)
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=int(profile.depth),
        reliability=QosReliability(int(profile.reliability)),
        durability=QosDurability(int(profile.durability)),
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


def _latched(connection: Any) -> bool:
    profiles = getattr(connection.ext, "offered_qos_profiles", []) or []
    return any(getattr(p, "durability", None) == QosDurability.TRANSIENT_LOCAL for p in profiles)


def _subscription_qos(infos: list[Any]) -> QoSProfile:
    """What ``ros2 bag record`` does: reliable/latched only when every publisher offers it (so all of them match)."""
    reliable = all(i.qos_profile.reliability == QoSReliabilityPolicy.RELIABLE for i in infos)
    latched = all(i.qos_profile.durability == QoSDurabilityPolicy.TRANSIENT_LOCAL for i in infos)
    return QoSProfile(
        depth=100,
        reliability=QoSReliabilityPolicy.RELIABLE if reliable else QoSReliabilityPolicy.BEST_EFFORT,
        durability=QoSDurabilityPolicy.TRANSIENT_LOCAL if latched else QoSDurabilityPolicy.VOLATILE,
    )


@dataclass
class RecordConfig:
    """What ``z123 bag record`` records and when it stops."""

    out: Path
    """The bag folder to create (must not exist; written as OUT.partial and renamed when complete)."""
    topics: tuple[str, ...] = DEFAULT_TOPICS
    """Topics to record (absolute names); each is subscribed once a publisher announces its type."""
    storage: str = "sqlite3"
    """rosbag2 storage: sqlite3 (.db3) or mcap."""
    frames: int = 0
    """Stop after this many messages on ``topics[0]`` (the colour image); 0 = no limit."""
    duration_s: float = 0.0
    """Stop after this many seconds; 0 = no limit (Ctrl-C stops and closes the bag cleanly)."""
    sim: bool = False
    """Also run the simulated camera in this process (its topics are subscribed before its first frame)."""
    sim_parameters: dict[str, Any] = field(default_factory=dict)
    """Parameters of the simulated camera (name -> value), e.g. {"trajectory": "orbit"}."""


@dataclass
class BagSummary:
    """What was recorded or played."""

    path: Path
    """The bag folder."""
    counts: dict[str, int]
    """Messages per topic."""
    duration_s: float
    """Bag time covered (last minus first message), seconds."""


class BagRecorder:
    """Writes every message of the wanted topics into an open rosbags Writer, from the node's executor thread."""

    def __init__(self, node: Node, writer: Writer, topics: tuple[str, ...]) -> None:
        self.node, self.writer = node, writer
        self.wanted = list(topics)
        #: The topic whose message count ``RecordConfig.frames`` limits (the colour image).
        self.count_topic = topics[0] if topics else ""
        self.counts: dict[str, int] = {}
        self._connections: dict[str, Any] = {}
        self._subs: list[Any] = []
        self._timer = node.create_timer(0.2, self.discover)

    def add_topic(self, topic: str, msgtype: str, qos: QoSProfile) -> None:
        """Subscribe ``topic`` now (known type); the bag records ``qos`` as the offered profile."""
        if topic in self._connections:
            return
        self._connections[topic] = self.writer.add_connection(
            topic, msgtype, typestore=TYPESTORE, offered_qos_profiles=[_rosbags_qos(qos)]
        )
        self.counts[topic] = 0
        self._subs.append(
            self.node.create_subscription(message_class(msgtype), topic, self._writer_for(topic), qos, raw=True)
        )

    def discover(self) -> None:
        """Subscribe every wanted topic that has a publisher by now."""
        for topic in self.wanted:
            if topic in self._connections:
                continue
            infos = self.node.get_publishers_info_by_topic(topic)
            if infos:
                msgtype = infos[0].topic_type
                try:
                    self.add_topic(topic, msgtype, _subscription_qos(infos))
                except (InputError, KeyError) as exc:
                    logger.error("not recording %s (%s): %s", topic, msgtype, exc)
                    self.wanted.remove(topic)
                    continue
                logger.info("recording %s (%s)", topic, msgtype)

    def _writer_for(self, topic: str) -> Any:
        connection = self._connections[topic]

        def write(data: bytes) -> None:
            self.writer.write(connection, self.node.get_clock().now().nanoseconds, data)
            self.counts[topic] += 1

        return write

    def close(self) -> None:
        self._timer.cancel()
        for sub in self._subs:
            self.node.destroy_subscription(sub)


def _sim_node(config: RecordConfig, recorder: BagRecorder, context: Any) -> Node:
    """The simulated camera, created after the recorder subscribed to its topics (no first frame lost)."""
    from z123_ros.ros.sim_camera_node import SimCameraConfig, SimCameraNode

    params = {"qos": "reliable", **config.sim_parameters}
    if config.frames and "max_frames" not in params:
        params["max_frames"] = config.frames
    defaults = SimCameraConfig()
    colour = params.get("colour_topic", defaults.colour_topic)
    depth = params.get("depth_topic", defaults.depth_topic)
    compressed_colour = params.get("colour_transport", "raw") == "compressed"
    compressed_depth = params.get("depth_transport", "raw") == "compressed"
    reliable = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)
    if params["qos"] != "reliable":
        reliable = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.BEST_EFFORT)
    latched = QoSProfile(
        depth=100, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
    )
    image, compressed = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
    topics = [
        (f"/{colour}/compressed", compressed, reliable) if compressed_colour else (f"/{colour}", image, reliable),
        (f"/{params.get('camera_info_topic', defaults.camera_info_topic)}", "sensor_msgs/msg/CameraInfo", reliable),
        ("/tf", "tf2_msgs/msg/TFMessage", QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE)),
        ("/tf_static", "tf2_msgs/msg/TFMessage", latched),
        ("/sim_camera/ground_truth", "std_msgs/msg/String", latched),
    ]
    if depth:
        topics.append(
            (f"/{depth}/compressedDepth", compressed, reliable) if compressed_depth else (f"/{depth}", image, reliable)
        )
    for topic, msgtype, qos in topics:
        recorder.add_topic(topic, msgtype, qos)
    recorder.count_topic = topics[0][0]
    overrides = [Parameter(name, value=value) for name, value in params.items()]
    return SimCameraNode(context=context, parameter_overrides=overrides)


def _recording_done(config: RecordConfig, recorder: BagRecorder, t0: float) -> bool:
    if config.duration_s and time.monotonic() - t0 >= config.duration_s:
        return True
    return bool(config.frames and recorder.counts.get(recorder.count_topic, 0) >= config.frames)


def _drain(executor: SingleThreadedExecutor, recorder: BagRecorder, quiet_s: float = 0.5, max_s: float = 10.0) -> None:
    """Keep recording until no message arrived for ``quiet_s``: the depth and camera info of the last colour frame
    are usually still in flight when the colour count reaches its limit."""
    deadline = time.monotonic() + max_s
    last_total, last_change = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - last_change < quiet_s:
        executor.spin_once(timeout_sec=0.05)
        total = sum(recorder.counts.values())
        if total != last_total:
            last_total, last_change = total, time.monotonic()


def _spin_recording(config: RecordConfig, writer: Writer, context: Any, stop: threading.Event) -> dict[str, int]:
    nodes: list[Node] = []
    try:
        node = rclpy.create_node("z123_bag_recorder", context=context)
        nodes.append(node)
        recorder = BagRecorder(node, writer, tuple(config.topics))
        if config.sim:
            nodes.append(_sim_node(config, recorder, context))
        executor = SingleThreadedExecutor(context=context)
        for n in nodes:
            executor.add_node(n)
        t0 = time.monotonic()
        try:
            while not stop.is_set() and not _recording_done(config, recorder, t0):
                executor.spin_once(timeout_sec=0.05)
            _drain(executor, recorder)
        except KeyboardInterrupt:
            logger.info("interrupted: closing the bag")
        recorder.close()
        executor.shutdown()
        return dict(recorder.counts)
    finally:
        for n in nodes:
            n.destroy_node()


def record(config: RecordConfig, stop: threading.Event | None = None) -> BagSummary:
    """Record until ``frames`` / ``duration_s`` / ``stop`` (or Ctrl-C); the bag appears at ``config.out`` whole."""
    if config.storage not in STORAGES:
        raise ConfigError(f"storage {config.storage!r} is not one of {sorted(STORAGES)}")
    out = Path(config.out)
    if out.exists():
        raise InputError(f"{out} exists already; choose a new bag folder")
    # Written inside a hidden staging folder under the bag's own name (rosbags names the data file after it), then
    # moved into place: an interrupted recording never leaves a half bag at ``out``.
    staging = out.parent / f".{out.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    writer = Writer(staging / out.name, version=BAG_VERSION, storage_plugin=STORAGES[config.storage])
    writer.open()
    context = rclpy.context.Context()
    rclpy.init(context=context, args=[])
    try:
        counts = _spin_recording(config, writer, context, stop or threading.Event())
    finally:
        writer.close()
        rclpy.try_shutdown(context=context)
    os.replace(staging / out.name, out)
    staging.rmdir()
    return summarise(out) if any(counts.values()) else BagSummary(out, counts, 0.0)


def summarise(path: Path) -> BagSummary:
    """Topics, message counts and duration of a bag (InputError when it is not a readable rosbag2 folder)."""
    try:
        with Reader(path) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
            duration = reader.duration * 1e-9 if reader.message_count else 0.0
    except (ReaderError, OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path} is not a readable rosbag2 bag: {exc}") from exc
    return BagSummary(Path(path), counts, duration)


@dataclass
class PlayConfig:
    """How ``z123 bag play`` publishes a bag."""

    bag: Path
    """The rosbag2 folder (sqlite3 or mcap)."""
    rate: float = 1.0
    """Playback speed factor: 2 = twice as fast, 0.5 = half speed."""
    loop: bool = False
    """Start again from the beginning at the end (until Ctrl-C)."""
    clock: bool = True
    """Publish the bag time on /clock (nodes with use_sim_time follow it)."""
    topics: tuple[str, ...] = ()
    """Only these topics; empty = every topic the bag holds."""
    delay_s: float = 1.0
    """Wait this long after creating the publishers, so subscribers discover them before the first message."""
    wait_for_subscribers_s: float = 0.0
    """If > 0: wait up to this long until every non-latched topic has a subscriber (then play anyway)."""
    remap: dict[str, str] = field(default_factory=dict)
    """Publish a bag topic under another name (absolute names, as ``ros2 bag play --remap``)."""


def _publishers(node: Node, connections: list[Any], remap: dict[str, str]) -> dict[int, Any]:
    """One publisher per bag connection: reliable (matches every subscriber), latched where the recording was."""
    publishers: dict[int, Any] = {}
    by_topic: dict[str, Any] = {}
    for conn in connections:
        if conn.topic not in by_topic:
            durability = QoSDurabilityPolicy.TRANSIENT_LOCAL if _latched(conn) else QoSDurabilityPolicy.VOLATILE
            qos = QoSProfile(depth=100, reliability=QoSReliabilityPolicy.RELIABLE, durability=durability)
            try:
                topic = remap.get(conn.topic, conn.topic)
                by_topic[conn.topic] = node.create_publisher(message_class(conn.msgtype), topic, qos)
            except InputError as exc:
                logger.error("skipping %s: %s", conn.topic, exc)
                continue
        publishers[conn.id] = by_topic[conn.topic]
    return publishers


def _wait_subscribers(publishers: dict[int, Any], connections: list[Any], timeout_s: float) -> None:
    live = [publishers[c.id] for c in connections if c.id in publishers and not _latched(c)]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(p.get_subscription_count() == 0 for p in live):
        time.sleep(0.05)


def _play_once(
    reader: Reader,
    connections: list[Any],
    publishers: dict[int, Any],
    clock_pub: Any,
    config: PlayConfig,
    stop: threading.Event,
    offset_ns: int,
) -> dict[str, int]:
    """One pass through the bag with the original timing; returns messages per topic."""
    counts: dict[str, int] = {}
    t0_bag = reader.start_time
    t0_wall = time.monotonic()
    for conn, stamp_ns, data in reader.messages(connections=[c for c in connections if c.id in publishers]):
        due = t0_wall + (stamp_ns - t0_bag) * 1e-9 / config.rate
        while not stop.is_set() and (wait := due - time.monotonic()) > 0:
            stop.wait(min(wait, 0.1))
        if stop.is_set():
            break
        if clock_pub is not None:
            now = stamp_ns + offset_ns
            clock = Clock()
            clock.clock.sec, clock.clock.nanosec = divmod(now, 1_000_000_000)
            clock_pub.publish(clock)
        publishers[conn.id].publish(bytes(data))
        counts[conn.topic] = counts.get(conn.topic, 0) + 1
    return counts


def play(config: PlayConfig, stop: threading.Event | None = None) -> BagSummary:
    """Publish the bag's messages with their original timing (divided by ``rate``) until the end or ``stop``."""
    if not config.rate > 0:
        raise ConfigError(f"rate must be > 0, got {config.rate}")
    summarise(config.bag)  # one clear error for a missing or unreadable bag
    stop = stop or threading.Event()
    context = rclpy.context.Context()
    rclpy.init(context=context, args=[])
    totals: dict[str, int] = {}
    try:
        node = rclpy.create_node("z123_bag_player", context=context)
        with Reader(config.bag) as reader:
            connections = [c for c in reader.connections if not config.topics or c.topic in config.topics]
            if not connections:
                raise InputError(f"{config.bag} has none of the topics {list(config.topics)}")
            publishers = _publishers(node, connections, config.remap)
            clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(depth=10)) if config.clock else None
            time.sleep(config.delay_s)
            if config.wait_for_subscribers_s > 0:
                _wait_subscribers(publishers, connections, config.wait_for_subscribers_s)
            offset = 0
            try:
                while not stop.is_set():
                    for topic, n in _play_once(
                        reader, connections, publishers, clock_pub, config, stop, offset
                    ).items():
                        totals[topic] = totals.get(topic, 0) + n
                    if not config.loop:
                        break
                    # Looping: /clock keeps running forward from where the previous pass ended.
                    offset += reader.duration + 1
            except KeyboardInterrupt:
                logger.info("interrupted")
            duration = reader.duration * 1e-9
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    return BagSummary(Path(config.bag), totals, duration)
