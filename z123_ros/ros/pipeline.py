"""The node's work between a synchronised camera frame and its published outputs, on one worker thread.

Per frame: decode and validate -> segment and track -> ~/segmentation -> new or changed objects (the
:class:`~z123_ros.ros.objects.ObjectBook` decides) go to the dispatcher as jobs, each with a
:class:`~z123_ros.ros.jobs.JobTicket`. Per finished job: ~/reconstruction, the aggregate ~/objects_cloud and
~/markers (or ~/novel_views). The pipeline publishes through a ``publish(topic, msg)`` callable and holds no rclpy
object, so the node around it is only lifecycle, parameters, subscriptions and publishers.

With a ``target_frame``, each frame's camera pose is looked up (``tf.lookup``, waiting up to ``tf_timeout_s``; a
frame without one is dropped as ``no_transform``), objects are tracked and change-detected in that frame, and
meshes, clouds, poses and markers are published in it. Segmentations stay in the camera frame (they are image masks
and camera-frame centroids, and their header says so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from std_msgs.msg import Header
from z123_interfaces.msg import StageTiming

from z123_ros.camera import CameraIntrinsics, invert, transform_points
from z123_ros.errors import DispatchError, Z123Error
from z123_ros.heap import HeapTrimmer
from z123_ros.ros import conversions as conv
from z123_ros.ros.config import NodeConfig
from z123_ros.ros.diagnostics import NodeStats
from z123_ros.ros.frames import DecodedFrame, RawFrame, decode_frame, frame_changed
from z123_ros.ros.jobs import NOVEL_VIEWS, RECONSTRUCTION, JobTicket, WorkerInbox, build_job
from z123_ros.ros.objects import ChangePolicy, ObjectBook
from z123_ros.ros.tf import TransformError
from z123_ros.ros.tf_listener import stamp_to_ns
from z123_ros.segmentation import ObjectTracker, Segmenter, make_segmenter


def result_in_frame(result: Any, T_target_from_cam: np.ndarray, frame_id: str) -> Any:
    """A camera-frame ReconstructionResult moved into another frame (vertices, points, box centre and size;
    ``plane_cam`` stays in the camera frame, as its name says)."""
    vertices = transform_points(T_target_from_cam, result.vertices).astype(np.float32)
    points = transform_points(T_target_from_cam, result.points).astype(np.float32)
    lo, hi = (vertices.min(axis=0), vertices.max(axis=0)) if len(vertices) else (np.zeros(3), np.zeros(3))
    return dataclasses.replace(
        result, vertices=vertices, points=points, centre=(lo + hi) / 2, extent_m=hi - lo, frame=frame_id
    )


#: The mesh goes into the serialised message directly (conversions.reconstruction_to_cdr), not into ``msg.mesh``.
_NO_MESH = (np.zeros((0, 3)), np.zeros((0, 3), np.int64))


def _change_policy(config: NodeConfig) -> ChangePolicy:
    return ChangePolicy(
        change_distance_m=config.change_distance_m,
        change_extent_ratio=config.change_extent_ratio,
        forget_after_s=config.forget_after_s,
        abandon_after_missed=config.abandon_after_missed_frames,
        confirm_frames=config.change_confirm_frames,
        split_confirm_frames=config.change_split_confirm_frames,
    )


class Pipeline:
    """Segmentation, job submission and result fan-out of ``z123_node``. Thread use: :meth:`submit_request`
    (service thread) and :meth:`guarded` (any thread) aside, everything runs on the worker thread."""

    def __init__(self, publish: Callable[[str, Any], None], stats: NodeStats, logger: Any) -> None:
        self._publish = publish
        self._stats = stats
        self._logger = logger
        self.config: NodeConfig | None = None
        #: The dispatcher (submit/cancel/stats), set by the node while active.
        self.dispatcher: Any = None
        self.inbox = WorkerInbox()
        self.book = ObjectBook()
        self._segment_lock = threading.Lock()
        self._segmenter: Segmenter | None = None
        self._tracker: ObjectTracker | None = None
        #: The segmenter the last warm-up ran on (warm_up skips it).
        self._warmed: Segmenter | None = None
        # The last processed frame and its segmentation, for the service: replaced together under the lock.
        self._last_lock = threading.Lock()
        self._last: tuple[DecodedFrame, Any] | None = None
        #: The last segmented frame: the reference of the change check (worker thread only).
        self._last_segmented: DecodedFrame | None = None
        self._worker: threading.Thread | None = None
        #: Object id -> its marker's TRIANGLE_LIST points, (3 F, 3), built once per result (worker thread only).
        self._marker_points: dict[int, np.ndarray] = {}
        #: ``lookup(target, source, stamp_ns, timeout_s) -> T_target_from_source`` (a TfListener), set by the node
        #: when target_frame is set.
        self.tf: Any = None
        #: Returns the C heap's free pages to the OS every config.heap_trim_period_s (worker thread only).
        self.heap = HeapTrimmer(0.0)

    def configure(self, config: NodeConfig, warm_up: bool = True) -> None:
        """Build the segmenter (raises ConfigError), warm it up (unless ``warm_up`` is False: :meth:`warm_up`
        later), and build the tracker."""
        segmenter = make_segmenter(config.segmentation)
        if warm_up:
            self._warm_up(segmenter)
        self.config = config
        self._segmenter, self._tracker = segmenter, ObjectTracker(config.tracking)
        self.book.policy = _change_policy(config)
        self.heap.period_s = config.heap_trim_period_s

    def warm_up(self) -> None:
        """Warm the configured segmenter up (the node does it at activation, while Ray starts), once: activating
        again after a deactivation finds it warm."""
        if self._segmenter is not None and self._segmenter is not self._warmed:
            self._warm_up(self._segmenter)

    def _warm_up(self, segmenter: Segmenter) -> None:
        """Segment a small synthetic frame once: the first call of a segmenter pays one-off costs (0.09 s of the
        first VGA frame's 0.12 s here) that would otherwise delay the first mesh."""
        depth = np.full((120, 160), 0.8, np.float32)
        depth[50:80, 60:100] = 0.75
        rgb = np.full((120, 160, 3), 128, np.uint8)
        try:
            segmenter.segment(rgb, CameraIntrinsics.from_fov(60.0, 160, 120), depth_m=depth)
        except Z123Error as exc:  # a warm-up, not a test: the caches are warm either way
            self._logger.info(f"segmenter warm-up ended with {type(exc).__name__}: {exc}")
        self._warmed = segmenter

    def apply(self, config: NodeConfig, changed: list[str]) -> None:
        """A run-time parameter change (validated)."""
        self.config = config
        self.book.policy = _change_policy(config)
        self.heap.period_s = config.heap_trim_period_s
        if any(n.startswith("segmentation.") for n in changed) and self._segmenter is not None:
            segmenter = make_segmenter(config.segmentation)
            with self._segment_lock:
                self._segmenter = segmenter

    def start(self, dispatcher: Any) -> None:
        self.dispatcher = dispatcher
        self.inbox.open()
        self._worker = threading.Thread(target=self._work, name="z123_worker", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop the worker thread (an unprocessed frame is dropped); the dispatcher stays with its owner."""
        self.inbox.stop()
        if self._worker is not None:
            self._worker.join(timeout=10.0)
            self._worker = None

    def detach(self) -> None:
        """The dispatcher was shut down: forget every job and stop submitting."""
        self.dispatcher = None
        self.inbox.clear()
        self.book.clear_jobs()

    def cleanup(self) -> None:
        self._segmenter = self._tracker = self._warmed = None
        self.book.clear()
        self._marker_points = {}

    def _work(self) -> None:
        while True:
            work = self.inbox.take()
            if work is None:
                return
            self._handle_work(*work)
            # Not kept while waiting for the next: the last results hold their meshes and the frame its images.
            del work

    def _handle_work(self, results: list[tuple[JobTicket, Any, Any]], frame: RawFrame | None) -> None:
        """One work item: its finished jobs (published, then the aggregate once), then its frame, then a heap trim."""
        # Every result first, then the aggregate once: the objects of one frame tend to finish together.
        headers = [self.guarded(self._handle_result, *result) for result in results]
        headers = [h for h in headers if h is not None]
        if headers:
            self.guarded(self._publish_aggregate, headers[-1])
        if frame is not None:
            self.guarded(self._process_frame, frame)
        # Between two frames: what this one freed goes back to the OS, not only to the allocator's free lists.
        trim_start = time.monotonic()
        if self.heap.maybe_trim():
            self._stats.count("heap_trims")
            self._stats.latency("heap_trim", time.monotonic() - trim_start)

    def guarded(self, fn: Any, *args: Any) -> Any:
        """Callbacks and the worker must survive anything a message, a frame or a job does: count, log, continue
        (an exception escaping an executor callback would stop the whole node)."""
        try:
            return fn(*args)
        except Z123Error as exc:
            self._stats.drop(exc.reason, str(exc))
        except Exception as exc:  # noqa: BLE001 - a bug in one frame must not kill the node; it is logged in full.
            self._stats.drop("internal_error", f"{type(exc).__name__}: {exc}")
            self._logger.error(traceback.format_exc())
        return None

    def _process_frame(self, raw: RawFrame) -> None:
        config = self.config
        frame = decode_frame(raw, config.max_image_pixels, config.min_valid_depth_fraction)
        if not self._worth_segmenting(frame):
            self._stats.count("frames_skipped_static")
            return
        frame.T_target_from_cam = self._camera_pose(frame.header)
        t0 = frame.marks["segmented_start"] = time.monotonic()
        with self._segment_lock:
            seg = self._segmenter.segment(frame.rgb, frame.intrinsics, depth_m=frame.depth_m)
            if frame.T_target_from_cam is not None:
                seg.T_cam_from_world = invert(frame.T_target_from_cam)  # the tracker matches in the fixed frame
            seg = self._tracker.update(seg)
        now = frame.marks["segmented"] = time.monotonic()
        self._stats.latency("segmentation", now - t0)
        self._stats.count("frames_segmented")
        self._last_segmented = frame
        with self._last_lock:
            self._last = (frame, seg)
        surfaces = self._surfaces(frame, seg)
        due = self.book.observe(seg.objects, now, frame.T_target_from_cam, surfaces)
        for job_id in self.book.take_abandoned_jobs():
            self._cancel(job_id, "jobs_abandoned")
        frame.marks["checked"] = time.monotonic()
        # Submit before publishing the segmentation: the actors start while this thread serialises the message. The
        # frame's jobs go as one batch: its colour and depth images travel once, not once per object.
        with self.dispatcher.batch() if due else contextlib.nullcontext():
            for object_id in due:
                # The other objects' pixels go along: the reconstruction treats space behind them as unknown, not free.
                others = [o.mask for o in seg.objects if o.id != object_id]
                occluders = np.any(others, axis=0) if others else None
                self._dispatch_object(object_id, frame, seg.object_by_id(object_id).mask, seg.plane_cam, occluders)
        self._publish("segmentation", conv.segmentation_to_msg(seg, frame.header))
        if self.book.forget_stale(now):
            self._publish_aggregate(self._output_header(frame.header, frame.T_target_from_cam))

    @staticmethod
    def _surfaces(frame: DecodedFrame, seg: Any, max_points: int = 500) -> dict[int, np.ndarray] | None:
        """Each object's visible points in the target frame (a fixed stride subsample), for change detection with
        a moving camera; None without a camera pose or depth."""
        T = frame.T_target_from_cam
        if T is None or frame.depth_m is None:
            return None
        out = {}
        for obj in seg.objects:
            points, _ = frame.intrinsics.backproject(frame.depth_m, obj.mask)
            out[obj.id] = transform_points(T, points[:: max(1, -(-len(points) // max_points))])
        return out

    def _camera_pose(self, header: Header) -> np.ndarray | None:
        """T_target_from_cam at the image stamp (waits up to tf_timeout_s); None without a target frame."""
        target = self.config.target_frame
        if not target:
            return None
        if self.tf is None:
            raise TransformError(f"target_frame is {target!r} but no /tf listener runs")
        try:
            return self.tf.lookup(target, header.frame_id, stamp_to_ns(header.stamp), self.config.tf_timeout_s)
        except TransformError as exc:
            raise TransformError(f"{target} <- {header.frame_id or '(empty frame_id)'}: {exc}") from exc

    def _output_header(self, header: Header, T_target_from_cam: np.ndarray | None) -> Header:
        """The header of geometry computed from a frame with ``header``: its stamp, in target_frame when posed."""
        if T_target_from_cam is None:
            return header
        return Header(stamp=header.stamp, frame_id=self.config.target_frame)

    def _worth_segmenting(self, frame: DecodedFrame) -> bool:
        """Segment a frame that differs from the last segmented one at once; an unchanged one only as often as
        max_segmentation_rate_hz (tracks stay fresh, CPU stays low while the scene is static), and not while this
        node's reconstructions run (:meth:`_refresh_on_hold`)."""
        last = self._last_segmented
        if last is None:
            return True
        since = frame.marks["decoded"] - last.marks["decoded"]
        if since >= 1.0 / self.config.max_segmentation_rate_hz and not self._refresh_on_hold(since):
            return True
        if self.book.awaiting_confirmation():
            return True  # a change seen once is confirmed (or dismissed as flicker) by the very next frame
        # Half the smallest object the segmenter keeps: a new or moved object always counts as a change.
        if frame_changed(last, frame, max(1, self.config.segmentation.min_object_area_px // 2)):
            self._stats.count("frames_changed")
            return True
        return False

    def _refresh_on_hold(self, since: float) -> bool:
        """Whether the periodic segmentation of an unchanged frame waits because this node's reconstructions run:
        it would find the same objects and take the CPU they run on (the actors use every core of a small robot
        computer: the static rate's segmentations made the others' reconstructions slower). A changed frame is
        segmented at once all the same. Not for longer than half of forget_after_s, so that tracks stay fresh."""
        return self.book.jobs_running() and since < 0.5 * self.config.forget_after_s

    def _dispatch_object(
        self, object_id: int, frame: DecodedFrame, mask: np.ndarray, plane: Any, occluders: Any = None
    ) -> None:
        stale = self.book.take_running_job(object_id)
        if stale is not None:
            # The object changed while its previous reconstruction ran: that result would be stale.
            self._cancel(stale, "jobs_cancelled")
        again = self.book.get(object_id).dispatched_area > 0
        try:
            job_id = self._submit(RECONSTRUCTION, object_id, frame, mask, plane, frame.marks, occluders)
        except DispatchError as exc:
            # Queue full or cluster away: the object is still "new", so a later frame submits it again.
            self._stats.count("dispatch_rejected")
            self._stats.drop(f"dispatch_{exc.reason}", f"object {object_id}: {exc}")
            return
        track = self.book.get(object_id)
        self._logger.info(f"object {object_id} {'again' if again else 'sent'} to reconstruction: {track.reason}")
        self.book.dispatched(object_id, job_id)
        if again:  # moved or changed since its last reconstruction (a static scene never counts here)
            self._stats.count("objects_reconstructed_again")
        if self.config.publish_novel_views:
            try:
                self._submit(NOVEL_VIEWS, object_id, frame, mask, plane)
            except DispatchError as exc:
                self._stats.drop(f"novel_views_{exc.reason}", f"object {object_id}: {exc}")

    def _cancel(self, job_id: Any, counter: str) -> None:
        with contextlib.suppress(Z123Error):
            self.dispatcher.cancel(job_id)
        self.inbox.forget(job_id)
        self._stats.count(counter)

    def _submit(
        self,
        kind: str,
        object_id: int,
        frame: DecodedFrame,
        mask: np.ndarray,
        plane: Any,
        marks: dict | None = None,
        occluders: Any = None,
    ) -> Any:
        """The one way a job reaches the dispatcher (worker thread and service): its result comes back through the
        inbox to the worker thread, with the ticket that says where to publish it. ``marks`` (the frame's events,
        worker thread only) give the result its per-stage latency breakdown."""
        ticket = JobTicket(
            kind, object_id, frame.header, frame.received, dict(marks) if marks else {}, frame.T_target_from_cam
        )
        job = build_job(kind, self.config, object_id, frame, mask, plane, occluders)
        job_id = self.dispatcher.submit(job, on_done=self.inbox.on_done(ticket))
        if ticket.marks:
            ticket.marks["submitted"] = time.monotonic()
        self.inbox.register(job_id, ticket)
        self._stats.count(ticket.submitted_counter)
        return job_id

    def _handle_result(self, ticket: JobTicket, job_id: Any, outcome: Any) -> Header | None:
        """Publish one finished job (worker thread). ``outcome`` is the dispatcher's JobResult. Returns the header
        of the aggregate to publish when the job added a reconstruction to it."""
        if self.inbox.claim(job_id) is None:
            return None  # cancelled or superseded: its object has a newer job
        if ticket.kind == NOVEL_VIEWS:
            self._publish_novel_views(ticket, outcome)
            return None
        object_id = ticket.object_id
        self.book.finished(object_id, job_id, outcome.ok)
        if not outcome.ok:
            # The book retries the object at its next sighting rather than giving up on it.
            self._stats.count("jobs_failed")
            self._stats.drop(f"job_{outcome.reason}", f"reconstruction of object {object_id} failed: {outcome.error}")
            return None
        result, config = outcome.value, self.config
        handled = time.monotonic()
        header = ticket.header
        # Only metric camera-frame geometry can be placed in another frame (a learned backend's normalised object
        # frame has no scale); it then stays in the camera frame, as its header says.
        if ticket.T_target_from_cam is not None and result.metric and result.frame == "camera":
            result = result_in_frame(result, ticket.T_target_from_cam, config.target_frame)
            header = self._output_header(header, ticket.T_target_from_cam)
        # The actor decimated the mesh to max_mesh_faces already (jobs.build_job): this validates it and only
        # simplifies a job that ran under a larger budget than the one set since.
        vertices, faces = conv.simplify_mesh(result.vertices, result.faces, config.max_mesh_faces)
        msg = conv.reconstruction_to_msg(result, object_id, header, config.max_cloud_points, mesh=_NO_MESH)
        stages = ticket.stages(outcome.timings, handled) if ticket.marks else {}
        if stages:
            stages["conversion"] = time.monotonic() - handled
            # The node's stages first, then the backend's own (their names have no "pipeline." prefix).
            msg.timings = [StageTiming(stage=f"pipeline.{k}", seconds=v) for k, v in stages.items()] + list(msg.timings)
        t_publish = time.monotonic()
        # Serialised here with the mesh written by numpy (conversions.reconstruction_to_cdr): publish takes bytes.
        self._publish("reconstruction", conv.reconstruction_to_cdr(msg, vertices, faces))
        done = time.monotonic()
        stages["publish"] = done - t_publish
        for name, seconds in stages.items():
            self._stats.latency(f"stage.{name}", seconds)
        self._stats.count("jobs_completed")
        self._stats.latency("frame_to_mesh", done - ticket.received)
        self._stats.latency("job", float(outcome.timings.total_s))
        marker_vertices, marker_faces = conv.cluster_mesh(vertices, faces, config.max_marker_faces)
        points = conv.pointcloud2_to_points(msg.cloud).xyz
        label = f"{object_id}: {result.backend} {result.confidence:.2f}"
        self.book.store_result(object_id, marker_vertices, marker_faces, points, label, time.monotonic())
        self._marker_points[object_id] = conv.marker_points(marker_vertices, marker_faces)
        return header

    def _publish_aggregate(self, header: Header) -> None:
        agg = self.book.aggregate(conv.id_colour)
        self._publish("cloud", conv.points_to_pointcloud2(agg.points, header, agg.colours))
        shown = {k for k, _, _, _ in agg.meshes}
        self._marker_points = {k: v for k, v in self._marker_points.items() if k in shown}
        markers = [
            conv.MarkerObject(k, vertices, faces, label, points=self._marker_points.get(k))
            for k, vertices, faces, label in agg.meshes
        ]
        # Serialised with the points written by numpy (conversions.mesh_marker_array_cdr): publish takes bytes.
        self._publish("markers", conv.mesh_marker_array_cdr(markers, header))

    def _publish_novel_views(self, ticket: JobTicket, outcome: Any) -> None:
        if not outcome.ok:
            self._stats.drop(
                f"novel_views_{outcome.reason}", f"novel views of object {ticket.object_id}: {outcome.error}"
            )
            return
        images = np.asarray(outcome.value.images)
        if images.dtype != np.uint8:
            images = (np.clip(images, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        # (N, H, W, 3) -> one (H, N * W, 3) strip: one message per object keeps the views of one request together.
        strip = np.ascontiguousarray(np.concatenate(list(images), axis=1))
        self._publish("novel_views", conv.numpy_to_image(strip, "rgb8", ticket.header))
        self._stats.count("novel_views_published")

    def submit_request(self, request: Any) -> Any:
        """Submit the requested object (by id in the last segmentation, or the largest one found in a region of
        interest of the last frame); return the job id or raise a Z123Error whose message is the answer."""
        with self._last_lock:
            last = self._last
        if last is None or self.dispatcher is None:
            raise Z123Error("no synchronised frame has been processed yet")
        frame, seg = last
        if request.object_id:
            obj = seg.object_by_id(int(request.object_id))
            if obj is None:
                ids = [o.id for o in seg.objects]
                raise Z123Error(f"object {request.object_id} is not in the last segmentation (ids: {ids})")
            return self._submit(RECONSTRUCTION, obj.id, frame, obj.mask, seg.plane_cam)
        box = conv.roi_to_box(request.roi, frame.intrinsics.width, frame.intrinsics.height)
        with self._segment_lock:
            roi_seg = self._segmenter.segment(frame.rgb, frame.intrinsics, depth_m=frame.depth_m, roi=box)
        if not roi_seg.objects:
            raise Z123Error(f"no object found in roi {box}")
        obj = max(roi_seg.objects, key=lambda o: o.area_px)
        plane = roi_seg.plane_cam if roi_seg.plane_cam is not None else seg.plane_cam
        return self._submit(RECONSTRUCTION, self.book.new_roi_id(), frame, obj.mask, plane)

    def values(self) -> dict[str, Any]:
        """Queue depths and object counts for /diagnostics (any thread)."""
        out: dict[str, Any] = self.inbox.depths()
        out["objects_tracked"], out["objects_reconstructed"] = self.book.counts()
        return out
