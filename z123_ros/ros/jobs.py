"""Jobs the node sends to the dispatcher: what each carries in, and the ticket that remembers where its result goes.

Also the hand-over between the threads: the executor (frames), the dispatcher's collector (results) and the
service put work into a :class:`WorkerInbox`; the node's single worker thread takes it out.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from z123_ros.dispatch import Job, NovelViewsJob, ReconstructionJob
from z123_ros.novel_views import preprocess_for_zero123
from z123_ros.reconstruction import ReconstructionInput
from z123_ros.ros.config import NodeConfig
from z123_ros.ros.frames import DecodedFrame, RawFrame

RECONSTRUCTION = "reconstruction"
NOVEL_VIEWS = "novel_views"


@dataclass
class JobTicket:
    """A submitted job as the node knows it: its result is published for ``object_id`` with ``header``."""

    kind: str
    """RECONSTRUCTION (a mesh for ~/reconstruction and the aggregate) or NOVEL_VIEWS (an image strip)."""
    object_id: int
    """The tracked (or service-requested) object the job is for."""
    header: Any
    """Header of the colour image the job's input came from: its outputs carry it."""
    received: float
    """time.monotonic() when that colour image arrived: frame-to-mesh latency is measured from here."""
    marks: dict[str, float] = field(default_factory=dict)
    """Pipeline event -> time.monotonic(), from the frame's arrival to this job's submission."""
    T_target_from_cam: np.ndarray | None = None
    """Camera pose in the node's target_frame at that image's stamp: the result is published in target_frame.
    None = in the camera frame (target_frame "")."""

    @property
    def submitted_counter(self) -> str:
        return "jobs_submitted" if self.kind == RECONSTRUCTION else "novel_view_jobs_submitted"

    def stages(self, timings: Any, handled_at: float) -> dict[str, float]:
        """Seconds per stage, in pipeline order, from the marks and the dispatcher's JobTimings of the result."""
        m = self.marks
        collected = m["submitted"] + timings.total_s
        spans = {
            # Camera stamp -> the colour image's callback (0 when the camera's clock is not this node's).
            "camera_to_node": m["received"] - m.get("stamped", m["received"]),
            "sync_wait": m["synced"] - m["received"],
            "queue_wait": m["taken"] - m["synced"],
            "decode": m["decoded"] - m["taken"],
            # Is the frame worth segmenting (does it differ from the last segmented one)?
            "frame_check": m["segmented_start"] - m["decoded"],
            "segmentation": m["segmented"] - m["segmented_start"],
            "change_detection": m["checked"] - m["segmented"],
            # Building the job and handing it to the dispatcher (pickling for the isolated dispatcher's pipe).
            "submit": m["submitted"] - m["checked"],
            "wait_for_actor": timings.queue_s,
            "reconstruction": timings.worker_s,
            # Handed to the actor -> result collected, less the work: object transfer both ways and scheduling.
            "ray_transfer": max(0.0, timings.run_s - timings.worker_s),
            # The isolated dispatcher's process and back (pickling, the socket, unpickling): submit -> collected,
            # less what the dispatch process itself measured (0 with a dispatcher in this process).
            "dispatch_transfer": timings.total_s - timings.queue_s - timings.run_s,
            "result_handoff": max(0.0, handled_at - collected),
        }
        return {k: max(0.0, float(v)) for k, v in spans.items()}


def build_job(
    kind: str,
    config: NodeConfig,
    object_id: int,
    frame: DecodedFrame,
    mask: np.ndarray,
    plane: np.ndarray | None,
    occluders: np.ndarray | None = None,
) -> Job:
    """The dispatcher job of ``kind`` for one object of a decoded frame (``occluders``: the other objects' pixels)."""
    if kind == RECONSTRUCTION:
        inp = ReconstructionInput(
            rgb=frame.rgb,
            mask=mask,
            intrinsics=frame.intrinsics,
            depth_m=frame.depth_m,
            support_plane_cam=plane,
            occluder_mask=occluders,
        )
        # key: a newer view of the same object replaces its queued, not yet started job. max_faces: the actor
        # decimates the mesh (in parallel, off the node's GIL); the node's own simplification then finds it fits.
        return ReconstructionJob(
            inp=inp,
            backend=config.backend,
            config=config.reconstruction,
            key=str(object_id),
            max_faces=config.max_mesh_faces,
        )
    # The paper's input: the object cut out, centred on white, with the camera's polar angle over the table.
    z_input = preprocess_for_zero123(
        frame.rgb, mask, intrinsics=frame.intrinsics, depth_m=frame.depth_m, plane_cam=plane
    )
    return NovelViewsJob(
        image=z_input.image,
        views=[(0.0, float(a), 0.0) for a in config.novel_view_azimuths_deg],
        input_polar_deg=z_input.input_polar_deg,
        num_inference_steps=config.reconstruction.multiview.num_inference_steps,
        guidance_scale=config.reconstruction.multiview.guidance_scale,
        key=f"views-{object_id}",
    )


class WorkerInbox:
    """The latest synchronised frame (one slot: a newer frame replaces an unprocessed one, so the worker never
    falls behind the camera), finished jobs, and the tickets of jobs in flight; all under one condition."""

    def __init__(self) -> None:
        self._cv = threading.Condition()
        self._pending: RawFrame | None = None
        self._results: deque[tuple[JobTicket, Any, Any]] = deque()
        self._tickets: dict[Any, JobTicket] = {}
        self._stopped = True

    def open(self) -> None:
        with self._cv:
            self._stopped = False

    def stop(self) -> None:
        """Wake the worker to exit; an unprocessed frame is dropped."""
        with self._cv:
            self._stopped = True
            self._pending = None
            self._cv.notify_all()

    def clear(self) -> None:
        """Forget every job (after the dispatcher shut down: their results will never be published)."""
        with self._cv:
            self._tickets.clear()
            self._results.clear()

    def put_frame(self, frame: RawFrame) -> bool:
        """Offer a frame; True if it replaced one the worker had not taken yet."""
        with self._cv:
            replaced = self._pending is not None
            self._pending = frame
            self._cv.notify_all()
        return replaced

    def register(self, job_id: Any, ticket: JobTicket) -> None:
        with self._cv:
            self._tickets[job_id] = ticket

    def forget(self, job_id: Any) -> None:
        with self._cv:
            self._tickets.pop(job_id, None)

    def claim(self, job_id: Any) -> JobTicket | None:
        """The ticket of a finished job, or None when the job was cancelled or superseded meanwhile."""
        with self._cv:
            return self._tickets.pop(job_id, None)

    def on_done(self, ticket: JobTicket) -> Callable[[Any, Any], None]:
        """The dispatcher's ``on_done`` for one job: runs on its collector thread, so it only hands over."""

        def done(job_id: Any, outcome: Any) -> None:
            with self._cv:
                self._results.append((ticket, job_id, outcome))
                self._cv.notify_all()

        return done

    def take(self) -> tuple[list[tuple[JobTicket, Any, Any]], RawFrame | None] | None:
        """Block until there are results or a frame; return (results, frame or None), or None once stopped."""
        with self._cv:
            while not self._stopped and not self._results and self._pending is None:
                self._cv.wait(timeout=0.5)
            if self._stopped:
                return None
            results = list(self._results)
            self._results.clear()
            frame, self._pending = self._pending, None
        if frame is not None:
            frame.taken = time.monotonic()
        return results, frame

    def depths(self) -> dict[str, int]:
        with self._cv:
            return {
                "queue.pending_frame": int(self._pending is not None),
                "queue.results": len(self._results),
                "jobs_in_flight": len(self._tickets),
            }
