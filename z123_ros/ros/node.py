"""``z123_node``: the ROS 2 lifecycle node. Camera frames in; segmentations, meshes and point clouds out.

Pipeline (one worker thread; executor callbacks never wait for it)::

    colour + depth + camera info --(subscriptions: check header, enqueue)--> ApproximateTimeSync
        --> latest synchronised frame (one slot; a newer frame replaces an unprocessed one)
        --> worker, rate limited: decode + validate -> TabletopSegmenter -> ObjectTracker -> ~/segmentation
        --> new or changed objects only: Dispatcher.submit(ReconstructionJob)  (Ray actors own the models)
        --> on completion: ~/reconstruction, ~/objects_cloud, ~/markers, (~/novel_views)
    a timer publishes /diagnostics: queue depths, latencies, drops by reason, backend state.

Lifecycle: configure reads and validates the parameters and builds the segmenter; activate starts the dispatcher
(embedded local Ray by default, a cluster with ``dispatch.address``), whose actors load and warm the models, and
subscribes at once: frames are segmented from the first one on while Ray starts in the background (seconds), and
objects seen meanwhile are submitted again on later frames (``startup.dispatch_ready_s`` / ``startup.actors_warm_s``
in /diagnostics say when Ray was up and when its actors were warm). A dispatcher that cannot reach its cluster keeps
retrying while frames are still segmented and jobs are counted as rejected (``/diagnostics`` shows ERROR).
Deactivate unsubscribes and releases the dispatcher; cleanup drops everything. ``main()`` configures and activates
for users who do not drive lifecycles::

    python -m z123_ros.ros.node --ros-args --params-file config/z123_node.yaml

Every output is stamped with the stamp of the colour image it was computed from; geometry is in metres, in that
image's camera frame, or with ``target_frame`` set in that frame (camera pose from /tf at the image stamp; frames
without one are dropped as ``no_transform``). ``colour_transport`` / ``depth_transport: compressed`` subscribe to
image_transport's ``<topic>/compressed`` and ``<topic>/compressedDepth`` instead of the raw images.

This module is the ROS shell (lifecycle, parameters, subscriptions, publishers, service, /diagnostics timer). The
work lives in: ``pipeline`` (the worker: segment, submit, publish results), ``frames`` (message checks and frame
decoding, FrameError with a drop reason), ``objects`` (the object book: tracks, change detection, the aggregate; no
ROS), ``jobs`` (job tickets, job building, the worker's inbox), ``diagnostics`` (counters, latencies, status) and
``config`` (NodeConfig).
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy, qos_profile_sensor_data
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray
from z123_interfaces.msg import ObjectReconstruction, ObjectSegmentation
from z123_interfaces.srv import ReconstructObject

from z123_ros import ros  # NodeConfig, Pipeline, frames: loaded once the dispatch process runs (see __init__)
from z123_ros._lean_imports import lean_scientific_imports
from z123_ros.dispatch import DispatchProcess, make_dispatcher
from z123_ros.errors import Z123Error
from z123_ros.resources import ensure_ament_prefix_path
from z123_ros.ros import conversions as conv
from z123_ros.ros.diagnostics import NodeStats, diagnostic_array, pipeline_status, process_age_s
from z123_ros.ros.params import declare_parameters, make_set_parameters_callback, read_parameters
from z123_ros.ros.sync import ApproximateTimeSync, SyncedSet
from z123_ros.ros.tf_listener import TfListener

if TYPE_CHECKING:
    from z123_ros.ros.config import NodeConfig

__all__ = ["NODE_NAME", "Z123Node", "main"]

NODE_NAME = "z123_node"
#: A colour image stamped longer ago than this at its arrival was stamped on another clock.
_MAX_STAMP_AGE_S = 10.0


class Z123Node(LifecycleNode):
    """The lifecycle node. See the module docstring for the data flow and the parameter file for every setting."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        #: Startup breakdown for /diagnostics (startup.*): seconds since the process started at each step.
        self._startup = {"node_created_s": process_age_s()}
        #: The dispatch process, started now (before the parameters are read): Python's start and Ray's import
        #: (0.4 s) overlap the node's own start-up; the dispatcher made at configure adopts it.
        self._early_dispatch: DispatchProcess | None = None
        try:
            self._early_dispatch = DispatchProcess()
        except OSError as exc:
            self.get_logger().warning(f"could not start the dispatch process early: {exc}")
        # First use of the lazy names: the segmentation stack loads now, while the dispatch process starts.
        self._template = ros.NodeConfig()
        self._specs = declare_parameters(self, self._template)
        self.config: NodeConfig | None = None
        self.add_on_set_parameters_callback(
            make_set_parameters_callback(self._specs, self._current_config, self._apply_config)
        )
        self._active = False
        self._stats = NodeStats(
            self.get_logger().warning, lambda: self.config.log_throttle_s if self.config is not None else 5.0
        )
        self._drops_reported = 0
        self._pipeline = ros.Pipeline(self._publish, self._stats, self.get_logger())
        self._sync: ApproximateTimeSync | None = None
        self._dispatcher: Any = None
        self._backend_state = "unconfigured"
        self._subs: list[Any] = []
        self._pubs: dict[str, Any] = {}
        self._timer = None
        self._tf: TfListener | None = None
        self._service = None
        self._service_group = MutuallyExclusiveCallbackGroup()
        #: Triggered (from any thread) to publish /diagnostics now, on the executor thread: when the actors are warm,
        #: instead of up to diagnostics_period_s later (a lifecycle manager or user waiting for them learns it at once).
        self._report_now = self.create_guard_condition(self._publish_diagnostics)

    # ------------------------------------------------------------------------------------------- lifecycle

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            config = read_parameters(self, self._template, self._specs)
            ros.validate_node_config(config)
            self._pipeline.configure(config, warm_up=False)  # at activation, while Ray starts (see on_activate)
        except Z123Error as exc:
            self.get_logger().error(f"configure failed: {exc}")
            return TransitionCallbackReturn.FAILURE
        self.config = config
        self._sync = self._make_sync(config)
        reliable = QoSProfile(depth=5, reliability=QoSReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=QoSReliabilityPolicy.RELIABLE, durability=QoSDurabilityPolicy.TRANSIENT_LOCAL
        )
        publish = self.create_lifecycle_publisher
        self._pubs = {
            "segmentation": publish(ObjectSegmentation, "~/segmentation", reliable),
            "reconstruction": publish(ObjectReconstruction, "~/reconstruction", reliable),
            "cloud": publish(PointCloud2, "~/objects_cloud", latched),
            "markers": publish(MarkerArray, "~/markers", latched),
            "novel_views": publish(Image, "~/novel_views", reliable),
        }
        # Diagnostics report every state, including failures while inactive, so they are not lifecycle-managed.
        self._pubs["diagnostics"] = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._timer = self.create_timer(config.diagnostics_period_s, self._publish_diagnostics)
        if config.target_frame:
            # Subscribed from configure on, so /tf_static (latched) and the /tf history are there at activation.
            self._tf = TfListener(self)
            self._pipeline.tf = self._tf
        self._backend_state = "configured"
        self._prepare_dispatcher(config)
        self._startup["configured_s"] = process_age_s()
        self.get_logger().info(
            f"configured: backend={config.backend}, colour={config.colour_topic} ({config.colour_transport}), "
            f"depth={config.depth_topic or '(none)'} ({config.depth_transport}), info={config.camera_info_topic}, "
            f"outputs in {config.target_frame or 'the camera frame'}"
            + (f" (tf: {self._tf.backend})" if self._tf is not None else "")
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        config = self.config
        self._startup["activate_started_s"] = process_age_s()
        self._backend_state = "starting"
        try:
            self._dispatcher = self._start_dispatcher(config)
        except Z123Error as exc:
            self.get_logger().error(f"activate failed: could not start the dispatcher: {exc}")
            self._backend_state = f"failed: {exc}"
            return TransitionCallbackReturn.FAILURE
        # The segmenter's warm-up (0.1 s of one-off costs) runs now, while the dispatch process starts Ray: done at
        # configure, it delayed Ray's start by as much.
        self._pipeline.warm_up()
        self._backend_state = "running"
        self._active = True
        self._pipeline.start(self._dispatcher)
        qos = qos_profile_sensor_data if config.input_qos == "sensor_data" else QoSProfile(depth=5)
        self._subs = [
            self.create_subscription(kind, topic, lambda msg, s=stream: self._pipeline.guarded(self._feed, s, msg), qos)
            for stream, kind, topic in self._input_streams(config)
        ]
        self._service = self.create_service(
            ReconstructObject, "~/reconstruct_object", self._on_reconstruct_object, callback_group=self._service_group
        )
        self._startup["active_s"] = process_age_s()
        self.get_logger().info(f"active {self._startup['active_s']:.2f} s after the process started")
        return super().on_activate(state)

    @staticmethod
    def _input_streams(config: NodeConfig) -> list[tuple[str, type, str]]:
        """(stream, message type, topic) of the camera inputs; compressed ones under image_transport's names."""
        if config.colour_transport == "compressed":
            streams = [("colour", CompressedImage, f"{config.colour_topic}/compressed")]
        else:
            streams = [("colour", Image, config.colour_topic)]
        streams.append(("info", CameraInfo, config.camera_info_topic))
        if config.depth_topic and config.depth_transport == "compressed":
            streams.append(("depth", CompressedImage, f"{config.depth_topic}/compressedDepth"))
        elif config.depth_topic:
            streams.append(("depth", Image, config.depth_topic))
        return streams

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self.get_logger().info("inactive")
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._release_outputs()
        self._sync = None
        self._release_tf()
        self._pipeline.cleanup()
        self._backend_state = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        self._close_early_dispatch()
        self._release_outputs()
        self._release_tf()
        return TransitionCallbackReturn.SUCCESS

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_processing()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop the worker and the dispatcher (idempotent); for ``main()`` and tests."""
        self._stop_processing()
        self._close_early_dispatch()

    def _close_early_dispatch(self) -> None:
        early, self._early_dispatch = self._early_dispatch, None
        if early is not None:
            early.close()

    def _stop_processing(self) -> None:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        if self._service is not None:
            self.destroy_service(self._service)
            self._service = None
        self._active = False
        self._pipeline.stop()
        if self._dispatcher is not None:
            dispatcher, self._dispatcher = self._dispatcher, None
            try:
                dispatcher.shutdown()
            except Z123Error as exc:
                self.get_logger().warning(f"dispatcher shutdown: {exc}")
        self._pipeline.detach()
        if self._backend_state == "running":
            self._backend_state = "stopped"

    def _release_tf(self) -> None:
        if self._tf is not None:
            self._tf.destroy()
            self._tf = self._pipeline.tf = None

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

    def _apply_config(self, new: NodeConfig, changed: list[str]) -> None:
        """Run-time parameter change (already validated; read-only ones were refused)."""
        if self.config is None:
            return
        self.config = new
        self._pipeline.apply(new, changed)
        if any(n.startswith("sync_") for n in changed) and self._sync is not None:
            self._sync = self._make_sync(new)
        self.get_logger().info(f"parameters changed: {', '.join(changed)}")

    def _make_sync(self, config: NodeConfig) -> ApproximateTimeSync:
        streams = ("colour", "depth", "info") if config.depth_topic else ("colour", "info")
        return ApproximateTimeSync(streams, config.sync_slop_s, config.sync_queue_size)

    # ------------------------------------------------------------------------------------------- inputs

    def _feed(self, stream: str, msg: Any) -> None:
        """Executor thread: check one message, hand a completed frame to the worker; never waits for it."""
        self._stats.count(f"received_{stream}")
        ros.check_message(stream, msg)
        sync = self._sync
        if sync is None or not self._active:
            return
        before = sync.stats.dropped_total
        synced = sync.add(stream, conv.header_stamp_s(msg.header), (msg, time.monotonic()))
        lost = sync.stats.dropped_total - before
        if lost:
            self._stats.drop("unsynchronised", f"{lost} message(s) found no partner within {sync.slop_s} s")
        if synced is not None:
            self._enqueue(synced)

    def _enqueue(self, synced: SyncedSet) -> None:
        colour, received = synced.items["colour"]
        depth = synced.items["depth"][0] if "depth" in synced.items else None
        info = synced.items["info"][0]
        synced = time.monotonic()
        # The stamp's age at arrival, on this node's clock (the camera_to_node stage of every result).
        age = self.get_clock().now().nanoseconds * 1e-9 - (synced - received) - conv.header_stamp_s(colour.header)
        if not 0.0 <= age <= _MAX_STAMP_AGE_S:
            age = 0.0  # another clock (a bag, a simulator, an unsynchronised camera): not a transport time
        frame = ros.RawFrame(colour.header, colour, depth, info, received=received, synced=synced, stamp_age=age)
        if self._pipeline.inbox.put_frame(frame):
            self._stats.count("frames_replaced_while_busy")
        self._stats.count("frames_synchronised")

    def _publish(self, topic: str, msg: Any) -> None:
        """The pipeline's way out (worker thread). After cleanup, or once Ctrl-C / SIGTERM has shut rclpy's context
        down while the worker was mid-frame, the output is dropped instead of failing."""
        pub = self._pubs.get(topic)
        if pub is None or not self.context.ok():
            return
        try:
            pub.publish(msg)
        except Exception:
            if self.context.ok():  # a real publishing error, not the shutdown race
                raise

    # ------------------------------------------------------------------------------------------- dispatcher, service

    def _start_dispatcher(self, config: NodeConfig) -> Any:
        """Start Ray (embedded or ``dispatch.address``) and the worker actors in the background; they warm their
        models up. Activation does not wait: segmentation runs meanwhile, jobs are accepted once Ray is up (they run
        when an actor is warm) and rejected as ``dispatch_not_ready`` before; the objects are submitted again later."""
        dispatcher = self._dispatcher
        if dispatcher is None:  # activated again after a deactivate, which stopped the previous one
            dispatcher = make_dispatcher(config.dispatch)
        dispatcher.start(wait_s=0)
        self.get_logger().info("dispatcher starting in the background")
        threading.Thread(
            target=self._report_when_warm, args=(dispatcher,), name="z123-report-warm", daemon=True
        ).start()
        return dispatcher

    def _report_when_warm(self, dispatcher: Any) -> None:
        """Thread: wait until ``dispatcher`` is ready with every actor warm, then have /diagnostics published at once
        (it ends without publishing when the dispatcher stops or degrades first, or after connect_timeout_s)."""
        if dispatcher.wait_ready(dispatcher.config.connect_timeout_s) and self.context.ok():
            try:
                self._report_now.trigger()
            except Exception:  # noqa: BLE001 - the node was destroyed meanwhile (a shutdown race): no one to tell
                self.get_logger().debug("actors warm, but the node is gone")

    def _prepare_dispatcher(self, config: NodeConfig) -> None:
        """Make the dispatcher and give it the dispatch process started with the node (SupervisedDispatcher.prepare:
        Python up, Ray imported, no Ray started yet), so that activation starts Ray in a process that is ready
        instead of waiting for Python's start-up and the imports first."""
        if self._dispatcher is None:
            self._dispatcher = make_dispatcher(config.dispatch)  # SupervisedDispatcher: Ray's death never ends this
        early, self._early_dispatch = self._early_dispatch, None
        self._dispatcher.prepare(early)

    def _stamp_dispatcher_startup(self, dispatcher: Any) -> None:
        """startup.dispatch_ready_s / startup.actors_warm_s (s since the process started): when Ray first was up
        (jobs accepted) and when its actors first were all warm, from the dispatcher's own stamps."""
        if "actors_warm_s" in self._startup:
            return
        stamps = dispatcher.startup_stamps()
        age_at = process_age_s() - time.monotonic()  # + a monotonic stamp = that moment's process age
        for stamp, key in (("ready", "dispatch_ready_s"), ("warm", "actors_warm_s")):
            if stamp in stamps and key not in self._startup:
                self._startup[key] = age_at + stamps[stamp]
        if "actors_warm_s" in self._startup:
            self.get_logger().info(f"Ray up, actors warm {self._startup['actors_warm_s']:.2f} s after the start")

    def _on_reconstruct_object(self, request: Any, response: Any) -> Any:
        response.accepted = False
        response.message = "internal error (see the node's log)"
        try:
            job_id = self._pipeline.submit_request(request)
        except Z123Error as exc:
            response.message = str(exc)
        except Exception as exc:  # noqa: BLE001 - the service must answer; the bug is logged in full.
            self._stats.drop("internal_error", f"{type(exc).__name__}: {exc}")
            self.get_logger().error(traceback.format_exc())
        else:
            response.accepted, response.message = True, str(job_id)
        return response

    # ------------------------------------------------------------------------------------------- diagnostics

    def diagnostics(self) -> dict[str, Any]:
        """Everything the /diagnostics message reports, as a flat dict (also handy in tests and benchmarks)."""
        out: dict[str, Any] = {"state": self._backend_state, "active": self._active}
        if self.config is not None:
            out["backend"] = self.config.backend
        out.update(self._stats.flat())
        out.update(self._pipeline.values())
        sync = self._sync
        if sync is not None:
            out.update({f"queue.sync.{k}": v for k, v in sync.queue_depths().items()})
            # Which stream's messages found no partner: tells a lost/late stream from a slow one.
            out.update({f"sync.unmatched.{k}": v for k, v in sync.stats.dropped.items()})
            out["sync.resets"] = sync.stats.resets
        tf = self._tf
        if tf is not None:
            out["tf.backend"], out["tf.rejected"] = tf.backend, tf.rejected
        dispatcher = self._dispatcher
        if dispatcher is not None:
            self._stamp_dispatcher_startup(dispatcher)
            out.update({f"dispatch.{k}": v for k, v in dispatcher.stats().flat().items()})
        out.update({f"startup.{k}": round(v, 3) for k, v in self._startup.items()})
        return out

    def _publish_diagnostics(self) -> None:
        if "diagnostics" not in self._pubs:
            return  # not configured, or cleaned up (a late trigger of _report_now)
        try:
            values = self.diagnostics()
        except Exception as exc:  # noqa: BLE001 - reporting must never take the node down; the error is reported.
            values = {"state": self._backend_state, "error": f"{type(exc).__name__}: {exc}"}
        level, message = pipeline_status(values, self._active, self._backend_state, self._drops_reported)
        self._drops_reported = values.get("drops_total", 0)
        stamp = self.get_clock().now().to_msg()
        self._pubs["diagnostics"].publish(diagnostic_array(self.get_name(), level, message, values, stamp))


def main(args: list[str] | None = None) -> int:
    """Start ``z123_node``, configure and activate it, spin until Ctrl-C / SIGTERM. Returns the exit code.

    With ``--managed`` (before ``--ros-args``) the node stays unconfigured for a lifecycle manager (the launch file)
    to drive.
    """
    ensure_ament_prefix_path()
    lean_scientific_imports()  # before the node loads scipy (its constructor): 0.1 CPU-s less before activation
    argv = list(sys.argv if args is None else args)
    managed = "--managed" in remove_ros_args(argv)
    rclpy.init(args=argv)
    node = Z123Node()
    # One executor thread: every callback only checks and hands over (the work is on the pipeline's worker thread),
    # and rclpy's MultiThreadedExecutor re-polls its wait set while callbacks are in flight: at 15 Hz it cost the node
    # 0.62 of a core with a static scene against 0.17 here (docs/node/latency.md).
    executor = SingleThreadedExecutor()
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
