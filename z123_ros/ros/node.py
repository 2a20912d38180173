"""``z123_node``: the ROS 2 lifecycle node. Camera frames in; segmentations, meshes and point clouds out.

Pipeline (one worker thread; executor callbacks never wait for it)::

    colour + depth + camera info --(subscriptions: check header, enqueue)--> ApproximateTimeSync
        --> latest synchronised frame (one slot; a newer frame replaces an unprocessed one)
        --> worker, rate limited: decode + validate -> TabletopSegmenter -> ObjectTracker -> ~/segmentation
        --> new or changed objects only: Dispatcher.submit(ReconstructionJob)  (Ray actors own the models)
        --> on completion: ~/reconstruction, ~/objects_cloud, ~/markers, (~/novel_views)
    a timer publishes /diagnostics: queue depths, latencies, drops by reason, backend state.

Lifecycle: configure reads and validates the parameters and builds the segmenter; activate starts the dispatcher
(embedded local Ray by default, a cluster with ``dispatch.address``), whose actors load and warm the models, then
subscribes; a dispatcher that cannot reach its cluster keeps retrying while frames are still segmented and jobs are
counted as rejected (``/diagnostics`` shows ERROR). Deactivate unsubscribes and releases the dispatcher; cleanup
drops everything. ``main()`` configures and activates for users who do not drive lifecycles::

    python -m z123_ros.ros.node --ros-args --params-file config/z123_node.yaml

Every output is stamped with the header (stamp and frame) of the colour image it was computed from; geometry is in
metres in that camera frame.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from z123_ros.camera import CameraIntrinsics
from z123_ros.errors import ConfigError, DispatchError, InputError, Z123Error
from z123_ros.reconstruction import BACKENDS, ReconstructionConfig, ReconstructionInput
from z123_ros.ros import conversions as conv
from z123_ros.ros.params import declare_parameters, make_set_parameters_callback, read_parameters
from z123_ros.ros.sync import ApproximateTimeSync, SyncedSet
from z123_ros.segmentation import ObjectTracker, SegmentationConfig, TabletopSegmenter, TrackerConfig

NODE_NAME = "z123_node"


def _dispatch_config_default() -> Any:
    from z123_ros.dispatch import DispatchConfig

    return DispatchConfig()


@dataclass
class NodeConfig:
    """Parameters of ``z123_node``. Each field is one ROS parameter (nested ones dotted: ``segmentation.stride``)."""

    colour_topic: str = field(default="camera/color/image_raw", metadata={"read_only": True})
    """Colour image topic (rgb8, bgr8, rgba8, bgra8 or mono8)."""
    depth_topic: str = field(default="camera/aligned_depth_to_color/image_raw", metadata={"read_only": True})
    """Depth image topic registered to the colour image (16UC1 mm or 32FC1 m); empty = RGB only."""
    camera_info_topic: str = field(default="camera/color/camera_info", metadata={"read_only": True})
    """CameraInfo of the colour camera (rectified images are assumed)."""
    input_qos: str = field(default="sensor_data", metadata={"read_only": True, "choices": ("sensor_data", "reliable")})
    """QoS of the camera subscriptions: best-effort sensor data (camera drivers' default) or reliable."""
    sync_slop_s: float = field(default=0.03, metadata={"range": (0.0, 1.0)})
    """Largest stamp difference between colour, depth and camera info of one frame, seconds."""
    sync_queue_size: int = field(default=10, metadata={"range": (1, 100)})
    """Messages kept per camera stream while waiting for the others."""
    max_segmentation_rate_hz: float = field(default=2.0, metadata={"range": (0.01, 100.0)})
    """Frames segmented per second at most; newer frames replace older unprocessed ones."""
    backend: str = field(default="depth", metadata={"read_only": True, "choices": BACKENDS})
    """Reconstruction backend: depth (geometric, no weights), multiview or zero123 (Zero-1-to-3), hull (baseline)."""
    change_distance_m: float = field(default=0.02, metadata={"range": (0.0, 10.0)})
    """An object whose centroid moved more than this since its last reconstruction is reconstructed again."""
    change_extent_ratio: float = field(default=0.3, metadata={"range": (0.0, 10.0)})
    """... or whose size (or, without depth, mask area) changed by more than this fraction."""
    forget_after_s: float = field(default=10.0, metadata={"range": (0.1, 3600.0)})
    """Objects not segmented for this long leave the aggregated cloud and markers."""
    min_valid_depth_fraction: float = field(default=0.05, metadata={"range": (0.0, 1.0)})
    """Frames whose depth image has fewer valid (finite, > 0) pixels than this fraction are dropped."""
    max_image_pixels: int = field(default=3840 * 2160, metadata={"range": (1, 16384 * 16384)})
    """Larger images are dropped (a corrupt header, not a camera)."""
    max_cloud_points: int = field(default=20000, metadata={"range": (100, 10_000_000)})
    """Points per object in the reconstruction message and the aggregated cloud."""
    max_mesh_faces: int = field(default=30000, metadata={"range": (100, 10_000_000)})
    """Meshes with more faces are simplified (vertex clustering) before publishing: messages stay small."""
    max_marker_faces: int = field(default=5000, metadata={"range": (100, 1_000_000)})
    """Faces per object in the RViz markers (a further simplification of the published mesh)."""
    publish_novel_views: bool = False
    """For every object sent to reconstruction, also generate Zero-1-to-3 novel views (needs
    dispatch.novel_views.num_actors >= 1 and its model_path) and publish them, side by side, on ~/novel_views."""
    novel_view_azimuths_deg: list[float] = field(default_factory=lambda: [90.0, 180.0, 270.0])
    """Azimuths of the published novel views relative to the input view, degrees (same polar angle and distance).
    Steps and guidance come from reconstruction.multiview."""
    diagnostics_period_s: float = field(default=1.0, metadata={"range": (0.05, 60.0), "read_only": True})
    """Period of the /diagnostics message, seconds."""
    log_throttle_s: float = field(default=5.0, metadata={"range": (0.0, 3600.0)})
    """Per-reason warnings about dropped frames are logged at most once per this many seconds."""
    segmentation: SegmentationConfig = field(default_factory=SegmentationConfig)
    tracking: TrackerConfig = field(default_factory=TrackerConfig)
    reconstruction: ReconstructionConfig = field(default_factory=ReconstructionConfig)
    dispatch: Any = field(default_factory=_dispatch_config_default)


@dataclass
class _Frame:
    """A synchronised, not yet decoded camera frame."""

    header: Header
    colour: Image
    depth: Image | None
    info: CameraInfo
    #: time.monotonic() when the colour image arrived: the start of every latency.
    received: float


@dataclass
class _Decoded:
    header: Header
    rgb: np.ndarray
    depth_m: np.ndarray | None
    intrinsics: CameraIntrinsics
    received: float


@dataclass
class _Track:
    """What the node knows about one tracked object."""

    last_seen: float
    centroid: np.ndarray | None = None
    extent: np.ndarray | None = None
    area: int = 0
    #: State at the last dispatch: the object is reconstructed again only when it changes from this.
    dispatched_centroid: np.ndarray | None = None
    dispatched_extent: np.ndarray | None = None
    dispatched_area: int = 0
    job_id: Any = None
    #: Published reconstruction (vertices, faces, points in the camera frame) and its message.
    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    points: np.ndarray | None = None
    label: str = ""


class _Percentiles:
    """Rolling window of durations, for diagnostics."""

    def __init__(self, size: int = 200) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def summary(self) -> dict[str, float]:
        with self._lock:
            values = np.array(self._values, dtype=float)
        if len(values) == 0:
            return {}
        p50, p95, p99 = np.percentile(values, [50, 95, 99])
        return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "max": float(values.max()), "n": len(values)}


class Z123Node(LifecycleNode):
    """The lifecycle node. See the module docstring for the data flow and the parameter file for every setting."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._template = NodeConfig()
        self._specs = declare_parameters(self, self._template)
        self.config: NodeConfig | None = None
        self.add_on_set_parameters_callback(
            make_set_parameters_callback(self._specs, self._current_config, self._apply_config)
        )
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._active = False
        self._stop = False
        self._worker: threading.Thread | None = None
        self._pending: _Frame | None = None
        self._results: deque[tuple[int, Any, Any, Any]] = deque()
        self._tracks: dict[int, _Track] = {}
        self._jobs: dict[Any, tuple[int, Header, float]] = {}
        self._last_frame: _Decoded | None = None
        self._last_seg: Any = None
        self._next_roi_id = 100000
        self._stats_lock = threading.Lock()
        self._drops: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._drops_reported = 0
        self._last_warn: dict[str, float] = {}
        self._lat_segmentation = _Percentiles()
        self._lat_frame_to_mesh = _Percentiles()
        self._lat_job = _Percentiles()
        self._last_segmentation_time = 0.0
        self._segment_lock = threading.Lock()
        self._segmenter: TabletopSegmenter | None = None
        self._tracker: ObjectTracker | None = None
        self._sync: ApproximateTimeSync | None = None
        self._dispatcher: Any = None
        self._backend_state = "unconfigured"
        self._subs: list[Any] = []
        self._pubs: dict[str, Any] = {}
        self._timer = None
        self._service = None
        self._service_group = MutuallyExclusiveCallbackGroup()

    # ------------------------------------------------------------------------------------------- lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = read_parameters(self, self._template, self._specs)
            self._validate(config)
            self._segmenter = TabletopSegmenter(config.segmentation)
        except Z123Error as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.config = config
        self._tracker = ObjectTracker(config.tracking)
        self._sync = self._make_sync(config)
        reliable = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
        )
        from z123_interfaces.msg import ObjectReconstruction, ObjectSegmentation

        self._pubs = {
            "segmentation": self.create_lifecycle_publisher(ObjectSegmentation, "~/segmentation", reliable),
            "reconstruction": self.create_lifecycle_publisher(ObjectReconstruction, "~/reconstruction", reliable),
            "cloud": self.create_lifecycle_publisher(PointCloud2, "~/objects_cloud", latched),
            "markers": self.create_lifecycle_publisher(MarkerArray, "~/markers", latched),
            "novel_views": self.create_lifecycle_publisher(Image, "~/novel_views", reliable),
        }
        # Diagnostics report every state, including failures while inactive, so they are not lifecycle-managed.
        self._pubs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = self.create_timer(config.diagnostics_period_s, self._publish_diagnostics)
        self._backend_state = "configured"
        self.get_logger().info(
            f"configured: backend={config.backend}, colour={config.colour_topic}, "
            f"depth={config.depth_topic or '(none)'}, info={config.camera_info_topic}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self.config
        self._backend_state = "starting"
        try:
            self._dispatcher = self._start_dispatcher(config)
        except Z123Error as exc:
            self.get_logger().error(f"activate failed: could not start the dispatcher: {exc}")
            self._backend_state = f"failed: {exc}"
            return TransitionCallbackReturn.FAILURE
        self._backend_state = "running"
        with self._lock:
            self._stop = False
            self._active = True
        self._worker = threading.Thread(target=self._work, name="z123_worker", daemon=True)
        self._worker.start()
        qos = qos_profile_sensor_data if config.input_qos == "sensor_data" else QoSProfile(depth=5)
        self._subs = [
            self.create_subscription(Image, config.colour_topic, self._on_colour, qos),
            self.create_subscription(CameraInfo, config.camera_info_topic, self._on_info, qos),
        ]
        if config.depth_topic:
            self._subs.append(self.create_subscription(Image, config.depth_topic, self._on_depth, qos))
        from z123_interfaces.srv import ReconstructObject

        self._service = self.create_service(
            ReconstructObject, "~/reconstruct_object", self._on_reconstruct_object, callback_group=self._service_group
        )
        self.get_logger().info("active")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release_outputs()
        self._segmenter = self._tracker = self._sync = None
        self._tracks.clear()
        self._backend_state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release_outputs()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop the worker and the dispatcher (idempotent); for ``main()`` and tests."""
        self._stop_processing()

    def _stop_processing(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None
        with self._lock:
            self._active = False
            self._stop = True
            self._pending = None
            self._cv.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None
        if self._dispatcher is not None:
            dispatcher, self._dispatcher = self._dispatcher, None
            try:
                dispatcher.shutdown()
            except Z123Error as exc:
                self.get_logger().warning(f"dispatcher shutdown: {exc}")
        with self._lock:
            self._jobs.clear()
            self._results.clear()
            for track in self._tracks.values():
                track.job_id = None
        if self._backend_state == "running":
            self._backend_state = "stopped"

    def _release_outputs(self) -> None:
        for name, pub in list(self._pubs.items()):
            if name == "diagnostics":
                self.destroy_publisher(pub)
            else:
                self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._timer is not None:
            self.destroy_timer(self._timer)
            self._timer = None

    # ------------------------------------------------------------------------------------------- parameters

    def _current_config(self) -> NodeConfig:
        return self.config if self.config is not None else read_parameters(self, self._template, self._specs)

    def _validate(self, config: NodeConfig) -> None:
        if config.publish_novel_views and not (
            config.dispatch.novel_views.num_actors > 0 and config.dispatch.novel_views.model_path
        ):
            raise ConfigError(
                "publish_novel_views needs dispatch.novel_views.num_actors >= 1 and dispatch.novel_views.model_path"
            )
        if config.backend in ("multiview", "zero123") and not config.dispatch.reconstruction.model_path:
            raise ConfigError(
                f"backend {config.backend!r} needs dispatch.reconstruction.model_path (a Zero-1-to-3 folder or hub id)"
            )
        config.dispatch.validate()
        config.segmentation.validate()
        config.tracking.validate()

    def _apply_config(self, new: NodeConfig, changed: list[str]) -> None:
        """Run-time parameter change (already validated; read-only ones were refused)."""
        if self.config is None:
            return
        self.config = new
        if any(n.startswith("segmentation.") for n in changed) and self._segmenter is not None:
            segmenter = TabletopSegmenter(new.segmentation)
            with self._segment_lock:
                self._segmenter = segmenter
        if any(n.startswith("sync_") for n in changed) and self._sync is not None:
            self._sync = self._make_sync(new)
        self.get_logger().info(f"parameters changed: {', '.join(changed)}")

    def _make_sync(self, config: NodeConfig) -> ApproximateTimeSync:
        streams = ("colour", "depth", "info") if config.depth_topic else ("colour", "info")
        return ApproximateTimeSync(streams, config.sync_slop_s, config.sync_queue_size)

    # ------------------------------------------------------------------------------------------- dispatch

    def _start_dispatcher(self, config: NodeConfig) -> Any:
        """Start Ray (embedded or ``dispatch.address``) and the worker actors; they warm their models up."""
        from z123_ros.dispatch import Dispatcher

        t0 = time.monotonic()
        dispatcher = Dispatcher(config.dispatch)
        state = dispatcher.start()
        if state.value == "ready":
            self.get_logger().info(f"dispatcher ready in {time.monotonic() - t0:.2f} s")
        else:
            # Segmentation still runs; jobs are rejected (and counted) until the dispatcher reconnects by itself.
            self.get_logger().warning(f"dispatcher is {state.value} ({dispatcher.state_reason}); it keeps retrying")
        return dispatcher

    def _job(self, config: NodeConfig, object_id: int, inp: ReconstructionInput) -> Any:
        from z123_ros.dispatch import ReconstructionJob

        # key: a newer view of the same object replaces its queued, not yet started job.
        return ReconstructionJob(inp=inp, backend=config.backend, config=config.reconstruction, key=str(object_id))

    def _submit(self, object_id: int, frame: _Decoded, mask: np.ndarray, plane: np.ndarray | None) -> Any:
        config = self.config
        inp = ReconstructionInput(
            rgb=frame.rgb, mask=mask, intrinsics=frame.intrinsics, depth_m=frame.depth_m, support_plane_cam=plane
        )
        header, received = frame.header, frame.received

        def on_done(job_id: int, outcome: Any) -> None:
            # Runs on the dispatcher's collector thread: hand over to the worker, never publish or block here.
            with self._lock:
                self._results.append((object_id, job_id, outcome, (header, received)))
                self._cv.notify_all()

        job_id = self._dispatcher.submit(self._job(config, object_id, inp), on_done=on_done)
        with self._lock:
            self._jobs[job_id] = (object_id, header, received)
        self._count("jobs_submitted")
        return job_id

    def _submit_novel_views(self, object_id: int, frame: _Decoded, mask: np.ndarray, plane: Any) -> Any:
        from z123_ros.dispatch import NovelViewsJob
        from z123_ros.novel_views import preprocess_for_zero123

        config = self.config
        # The paper's input: the object cut out, centred on white, with the camera's polar angle over the table.
        z_input = preprocess_for_zero123(
            frame.rgb, mask, intrinsics=frame.intrinsics, depth_m=frame.depth_m, plane_cam=plane
        )
        job = NovelViewsJob(
            image=z_input.image,
            views=[(0.0, float(a), 0.0) for a in config.novel_view_azimuths_deg],
            input_polar_deg=z_input.input_polar_deg,
            num_inference_steps=config.reconstruction.multiview.num_inference_steps,
            guidance_scale=config.reconstruction.multiview.guidance_scale,
            key=f"views-{object_id}",
        )
        header = frame.header

        def on_done(job_id: int, outcome: Any) -> None:
            with self._lock:
                self._results.append((object_id, job_id, outcome, (header, None)))
                self._cv.notify_all()

        job_id = self._dispatcher.submit(job, on_done=on_done)
        with self._lock:
            self._jobs[job_id] = (object_id, header, frame.received)
        self._count("novel_view_jobs_submitted")
        return job_id

    def _publish_novel_views(self, object_id: int, outcome: Any, header: Header) -> None:
        if not outcome.ok:
            self._drop(f"novel_views_{outcome.reason}", f"novel views of object {object_id}: {outcome.error}")
            return
        images = np.asarray(outcome.value.images)
        if images.dtype != np.uint8:
            images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        # (N, H, W, 3) -> one (H, N * W, 3) strip: one message per object keeps the views of one request together.
        strip = np.ascontiguousarray(np.concatenate(list(images), axis=1))
        self._pubs["novel_views"].publish(conv.numpy_to_image(strip, "rgb8", header))
        self._count("novel_views_published")

    # ------------------------------------------------------------------------------------------- callbacks

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._counts[name] += n

    def _drop(self, reason: str, message: str) -> None:
        """Count a dropped frame (or failed job) and warn, throttled per reason."""
        now = time.monotonic()
        throttle = self.config.log_throttle_s if self.config is not None else 5.0
        with self._stats_lock:
            self._drops[reason] += 1
            total = self._drops[reason]
            warn = now - self._last_warn.get(reason, -math.inf) >= throttle
            if warn:
                self._last_warn[reason] = now
        if warn:
            self.get_logger().warning(f"dropped ({reason}, {total} so far): {message}")

    def _on_colour(self, msg: Image) -> None:
        self._guarded(self._colour, msg)

    def _on_depth(self, msg: Image) -> None:
        self._guarded(self._depth, msg)

    def _on_info(self, msg: CameraInfo) -> None:
        self._guarded(self._info, msg)

    def _colour(self, msg: Image) -> None:
        self._count("received_colour")
        try:
            conv.check_image(msg, conv.COLOUR_ENCODINGS, "colour")
        except InputError as exc:
            self._drop("bad_colour_image", str(exc))
            return
        self._feed("colour", msg)

    def _depth(self, msg: Image) -> None:
        self._count("received_depth")
        try:
            conv.check_image(msg, conv.DEPTH_ENCODINGS, "depth")
        except InputError as exc:
            self._drop("bad_depth_image", str(exc))
            return
        self._feed("depth", msg)

    def _info(self, msg: CameraInfo) -> None:
        self._count("received_info")
        try:
            conv.camera_info_to_intrinsics(msg)
        except InputError as exc:
            self._drop("bad_camera_info", str(exc))
            return
        self._feed("info", msg)

    def _feed(self, stream: str, msg: Any) -> None:
        """Executor thread: O(queue) work, no waiting on the worker."""
        sync = self._sync
        if sync is None or not self._active:
            return
        before = sync.stats.dropped_total
        synced = sync.add(stream, conv.header_stamp_s(msg.header), (msg, time.monotonic()))
        lost = sync.stats.dropped_total - before
        if lost:
            self._drop("unsynchronised", f"{lost} message(s) found no partner within {sync.slop_s} s")
        if synced is not None:
            self._enqueue(synced)

    def _enqueue(self, synced: SyncedSet) -> None:
        colour, received = synced.items["colour"]
        depth = synced.items["depth"][0] if "depth" in synced.items else None
        frame = _Frame(
            header=colour.header, colour=colour, depth=depth, info=synced.items["info"][0], received=received
        )
        with self._lock:
            if self._pending is not None:
                self._count("frames_skipped_rate_limit")
            self._pending = frame
            self._count("frames_synchronised")
            self._cv.notify_all()

    # ------------------------------------------------------------------------------------------- worker

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._stop and not self._results and not self._frame_due():
                    self._cv.wait(timeout=self._wait_time())
                if self._stop:
                    return
                results = list(self._results)
                self._results.clear()
                frame = None
                if self._frame_due():
                    frame, self._pending = self._pending, None
            for result in results:
                self._guarded(self._handle_result, *result)
            if frame is not None:
                self._last_segmentation_time = time.monotonic()
                self._guarded(self._process_frame, frame)

    def _frame_due(self) -> bool:
        if self._pending is None or self.config is None:
            return False
        return time.monotonic() - self._last_segmentation_time >= 1.0 / self.config.max_segmentation_rate_hz

    def _wait_time(self) -> float:
        if self._pending is None or self.config is None:
            return 0.5
        remaining = 1.0 / self.config.max_segmentation_rate_hz - (time.monotonic() - self._last_segmentation_time)
        return float(np.clip(remaining, 0.001, 0.5))

    def _guarded(self, fn: Any, *args: Any) -> Any:
        """Callbacks and the worker must survive anything a message, a frame or a job does: count, log, continue
        (an exception escaping an executor callback would stop the whole node)."""
        try:
            return fn(*args)
        except Z123Error as exc:
            self._drop(exc.reason, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in one frame must not kill the node; it is logged in full.
            self._drop("internal_error", f"{type(exc).__name__}: {exc}")
            self.get_logger().error(traceback.format_exc())
        return None

    def _decode(self, frame: _Frame) -> _Decoded | None:
        config = self.config
        try:
            intrinsics = conv.camera_info_to_intrinsics(frame.info)
        except InputError as exc:
            self._drop("bad_camera_info", str(exc))
            return None
        colour = frame.colour
        if colour.width * colour.height > config.max_image_pixels:
            self._drop(
                "image_too_large", f"{colour.width}x{colour.height} > max_image_pixels {config.max_image_pixels}"
            )
            return None
        if (colour.width, colour.height) != (intrinsics.width, intrinsics.height):
            self._drop(
                "size_mismatch",
                f"colour {colour.width}x{colour.height} vs camera info {intrinsics.width}x{intrinsics.height}",
            )
            return None
        try:
            rgb = conv.image_to_rgb(colour)
        except InputError as exc:
            self._drop("bad_colour_image", str(exc))
            return None
        depth_m = None
        if frame.depth is not None:
            if (frame.depth.width, frame.depth.height) != (colour.width, colour.height):
                self._drop(
                    "size_mismatch",
                    f"depth {frame.depth.width}x{frame.depth.height} vs colour "
                    f"{colour.width}x{colour.height} (is depth registered to colour?)",
                )
                return None
            try:
                depth_m = conv.depth_to_metres(frame.depth)
            except InputError as exc:
                self._drop("bad_depth_image", str(exc))
                return None
            valid = float(np.isfinite(depth_m).mean())
            if valid < config.min_valid_depth_fraction:
                self._drop(
                    "invalid_depth",
                    f"only {100 * valid:.1f}% of depth pixels are valid (NaN, inf or 0 "
                    f"elsewhere); min_valid_depth_fraction is {config.min_valid_depth_fraction}",
                )
                return None
        return _Decoded(header=frame.header, rgb=rgb, depth_m=depth_m, intrinsics=intrinsics, received=frame.received)

    def _process_frame(self, frame: _Frame) -> None:
        decoded = self._decode(frame)
        if decoded is None:
            return
        t0 = time.monotonic()
        with self._segment_lock:
            seg = self._segmenter.segment(decoded.rgb, decoded.intrinsics, depth_m=decoded.depth_m)
            seg = self._tracker.update(seg)
        self._lat_segmentation.add(time.monotonic() - t0)
        self._count("frames_segmented")
        with self._lock:
            self._last_frame, self._last_seg = decoded, seg
        self._pubs["segmentation"].publish(conv.segmentation_to_msg(seg, decoded.header))
        now = time.monotonic()
        for obj in seg.objects:
            track = self._tracks.get(obj.id)
            if track is None:
                track = self._tracks[obj.id] = _Track(last_seen=now)
            track.last_seen = now
            track.centroid = None if obj.centroid_cam is None else np.asarray(obj.centroid_cam, float)
            track.extent = None if obj.extent_m is None else np.asarray(obj.extent_m, float)
            track.area = int(np.count_nonzero(obj.mask))
            if self._needs_reconstruction(track):
                self._dispatch_object(obj.id, track, decoded, obj.mask, seg.plane_cam)
        self._forget_stale(now)

    def _needs_reconstruction(self, track: _Track) -> bool:
        config = self.config
        if track.dispatched_area == 0:
            return True
        if track.centroid is not None and track.dispatched_centroid is not None:
            if np.linalg.norm(track.centroid - track.dispatched_centroid) > config.change_distance_m:
                return True
            old, new = np.linalg.norm(track.dispatched_extent), np.linalg.norm(track.extent)
            return abs(new - old) > config.change_extent_ratio * max(old, 1e-6)
        return abs(track.area - track.dispatched_area) > config.change_extent_ratio * track.dispatched_area

    def _dispatch_object(self, object_id: int, track: _Track, frame: _Decoded, mask: np.ndarray, plane: Any) -> None:
        if track.job_id is not None:
            # The object changed while its previous reconstruction ran: that result would be stale.
            with contextlib.suppress(Z123Error):
                self._dispatcher.cancel(track.job_id)
            with self._lock:
                self._jobs.pop(track.job_id, None)
            track.job_id = None
            self._count("jobs_cancelled")
        try:
            track.job_id = self._submit(object_id, frame, mask, plane)
        except DispatchError as exc:
            # Queue full or cluster away: the object is still "new", so a later frame submits it again.
            self._count("dispatch_rejected")
            self._drop(f"dispatch_{exc.reason}", f"object {object_id}: {exc}")
            return
        track.dispatched_centroid, track.dispatched_extent = track.centroid, track.extent
        track.dispatched_area = track.area
        if self.config.publish_novel_views:
            try:
                self._submit_novel_views(object_id, frame, mask, plane)
            except DispatchError as exc:
                self._drop(f"novel_views_{exc.reason}", f"object {object_id}: {exc}")

    def _forget_stale(self, now: float) -> None:
        ttl = self.config.forget_after_s
        stale = [k for k, t in self._tracks.items() if now - t.last_seen > ttl and t.job_id is None]
        for k in stale:
            del self._tracks[k]
        if stale:
            self._publish_aggregate(self._last_frame.header if self._last_frame else Header())

    def _handle_result(self, object_id: int, job_id: Any, outcome: Any, origin: tuple[Header, float]) -> None:
        """Publish one finished job (worker thread). ``outcome`` is the dispatcher's JobResult."""
        header, received = origin
        with self._lock:
            known = self._jobs.pop(job_id, None)
        if known is None:
            return  # cancelled or superseded: its object has a newer job
        if received is None:
            self._publish_novel_views(object_id, outcome, header)
            return
        track = self._tracks.get(object_id)
        if track is not None and track.job_id == job_id:
            track.job_id = None
        if not outcome.ok:
            self._count("jobs_failed")
            self._drop(f"job_{outcome.reason}", f"reconstruction of object {object_id} failed: {outcome.error}")
            if track is not None:
                # Retry on a later frame rather than giving up on the object.
                track.dispatched_area = 0
            return
        result = outcome.value
        config = self.config
        vertices, faces = conv.simplify_mesh(result.vertices, result.faces, config.max_mesh_faces)
        msg = conv.reconstruction_to_msg(result, object_id, header, config.max_cloud_points, mesh=(vertices, faces))
        self._pubs["reconstruction"].publish(msg)
        self._count("jobs_completed")
        self._lat_frame_to_mesh.add(time.monotonic() - received)
        self._lat_job.add(float(outcome.timings.total_s))
        if track is None:
            track = self._tracks[object_id] = _Track(last_seen=time.monotonic())
        track.vertices, track.faces = conv.simplify_mesh(vertices, faces, config.max_marker_faces)
        track.points = conv.pointcloud2_to_points(msg.cloud).xyz
        track.label = f"{object_id}: {result.backend} {result.confidence:.2f}"
        self._publish_aggregate(header)

    def _publish_aggregate(self, header: Header) -> None:
        done = [(k, t) for k, t in sorted(self._tracks.items()) if t.vertices is not None]
        points = [t.points for _, t in done]
        cloud = np.concatenate(points) if points else np.zeros((0, 3), np.float32)
        colours = (
            np.concatenate(
                [np.tile((np.array(conv.id_colour(k)) * 255).astype(np.uint8), (len(t.points), 1)) for k, t in done]
            )
            if done
            else np.zeros((0, 3), np.uint8)
        )
        self._pubs["cloud"].publish(conv.points_to_pointcloud2(cloud, header, colours))
        markers = [conv.MarkerObject(k, t.vertices, t.faces, t.label) for k, t in done]
        self._pubs["markers"].publish(conv.mesh_marker_array(markers, header))

    # ------------------------------------------------------------------------------------------- service

    def _on_reconstruct_object(self, request: Any, response: Any) -> Any:
        response.accepted = False
        response.message = "internal error (see the node's log)"
        result = self._guarded(self._reconstruct_object, request, response)
        return result if result is not None else response

    def _reconstruct_object(self, request: Any, response: Any) -> Any:
        with self._lock:
            frame, seg = self._last_frame, self._last_seg
        response.accepted = False
        if frame is None or seg is None or self._dispatcher is None:
            response.message = "no synchronised frame has been processed yet"
            return response
        try:
            if request.object_id:
                obj = seg.object_by_id(int(request.object_id))
                if obj is None:
                    ids = [o.id for o in seg.objects]
                    response.message = f"object {request.object_id} is not in the last segmentation (ids: {ids})"
                    return response
                object_id, mask, plane = obj.id, obj.mask, seg.plane_cam
            else:
                box = conv.roi_to_box(request.roi, frame.intrinsics.width, frame.intrinsics.height)
                with self._segment_lock:
                    roi_seg = self._segmenter.segment(frame.rgb, frame.intrinsics, depth_m=frame.depth_m, roi=box)
                if not roi_seg.objects:
                    response.message = f"no object found in roi {box}"
                    return response
                obj = max(roi_seg.objects, key=lambda o: o.area_px)
                with self._lock:
                    self._next_roi_id += 1
                    object_id = self._next_roi_id
                mask, plane = obj.mask, roi_seg.plane_cam if roi_seg.plane_cam is not None else seg.plane_cam
            job_id = self._submit(object_id, frame, mask, plane)
        except Z123Error as exc:
            response.message = str(exc)
            return response
        response.accepted = True
        response.message = str(job_id)
        return response

    # ------------------------------------------------------------------------------------------- diagnostics

    def diagnostics(self) -> dict[str, Any]:
        """Everything the /diagnostics message reports, as a flat dict (also handy in tests and benchmarks)."""
        out: dict[str, Any] = {"state": self._backend_state, "active": self._active}
        if self.config is not None:
            out["backend"] = self.config.backend
        with self._stats_lock:
            out.update({f"count.{k}": v for k, v in sorted(self._counts.items())})
            out.update({f"drop.{k}": v for k, v in sorted(self._drops.items())})
            out["drops_total"] = sum(self._drops.values())
        with self._lock:
            out["queue.pending_frame"] = int(self._pending is not None)
            out["queue.results"] = len(self._results)
            out["jobs_in_flight"] = len(self._jobs)
        sync = self._sync
        if sync is not None:
            out.update({f"queue.sync.{k}": v for k, v in sync.queue_depths().items()})
            # Which stream's messages found no partner: tells a lost/late stream from a slow one.
            out.update({f"sync.unmatched.{k}": v for k, v in sync.stats.dropped.items()})
            out["sync.resets"] = sync.stats.resets
        tracks = list(self._tracks.values())  # the worker thread inserts and deletes tracks concurrently
        out["objects_tracked"] = len(tracks)
        out["objects_reconstructed"] = sum(1 for t in tracks if t.vertices is not None)
        for name, lat in (
            ("segmentation", self._lat_segmentation),
            ("frame_to_mesh", self._lat_frame_to_mesh),
            ("job", self._lat_job),
        ):
            out.update({f"latency_s.{name}.{k}": v for k, v in lat.summary().items()})
        dispatcher = self._dispatcher
        if dispatcher is not None:
            out.update({f"dispatch.{k}": v for k, v in dispatcher.stats().flat().items()})
        return out

    def _publish_diagnostics(self) -> None:
        try:
            values = self.diagnostics()
        except Exception as exc:  # noqa: BLE001 - reporting must never take the node down; the error is reported.
            values = {"state": self._backend_state, "error": f"{type(exc).__name__}: {exc}"}
        status = DiagnosticStatus(name=f"{self.get_name()}: pipeline", hardware_id=self.get_name())
        dispatch_state = values.get("dispatch.state", "")
        if self._active and self._backend_state == "running":
            status.level, status.message = DiagnosticStatus.OK, "running"
            if values.get("drops_total", 0) > self._drops_reported:
                status.level, status.message = DiagnosticStatus.WARN, "dropping frames (see drop.*)"
            if dispatch_state != "ready":
                status.level = DiagnosticStatus.ERROR
                status.message = f"dispatcher {dispatch_state}: {values.get('dispatch.state_reason', '')}"
        elif self._backend_state.startswith("failed"):
            status.level, status.message = DiagnosticStatus.ERROR, self._backend_state
        else:
            status.level, status.message = DiagnosticStatus.OK, self._backend_state
        self._drops_reported = values.get("drops_total", 0)
        status.values = [KeyValue(key=k, value=str(v)) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._pubs["diagnostics"].publish(msg)


def main(args: list[str] | None = None) -> int:
    """Start ``z123_node``, configure and activate it, spin until Ctrl-C / SIGTERM. Returns the exit code.

    With ``--managed`` (before ``--ros-args``) the node stays unconfigured for a lifecycle manager (the launch file)
    to drive.
    """
    import sys

    from rclpy.utilities import remove_ros_args

    from z123_ros.resources import ensure_ament_prefix_path

    ensure_ament_prefix_path()
    argv = list(sys.argv if args is None else args)
    managed = "--managed" in remove_ros_args(argv)
    rclpy.init(args=argv)
    node = Z123Node()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    code = 0
    try:
        if managed:
            executor.spin()
        elif node.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal("configure failed (see above); exiting")
            code = 1
        elif node.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            node.get_logger().fatal("activate failed (see above); exiting")
            code = 1
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.release()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    raise SystemExit(main())
