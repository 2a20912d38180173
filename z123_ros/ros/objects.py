"""The node's object book: what it knows about each tracked object, when an object needs reconstructing, and the
aggregate of every published reconstruction (one cloud, one marker set). Pure Python and numpy: no ROS, no Ray.

Thread use: the node's worker thread is the only writer; the diagnostics timer reads :meth:`ObjectBook.counts`.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from z123_ros.camera import transform_points


@dataclass
class ChangePolicy:
    """When a tracked object is reconstructed again, and when it is forgotten."""

    change_distance_m: float = 0.02
    """Reconstruct again when the centroid moved more than this since the last dispatch, metres."""
    change_extent_ratio: float = 0.3
    """... or the size (without depth: the mask area) changed by more than this fraction (with depth: of the
    extent's norm, plus change_distance_m)."""
    forget_after_s: float = 10.0
    """Objects not seen for this long (and with no job running) leave the book."""
    abandon_after_missed: int = 2
    """The job of an object missing from this many segmented frames in a row is cancelled (the object left the view
    or the scene changed: its mesh would be stale and its actor is needed); it is reconstructed again if it comes
    back. Counted in frames, not seconds, so that a slow (loaded) segmentation does not abandon visible objects."""
    confirm_frames: int = 2
    """An object already sent to reconstruction is sent again only when it looks changed in this many segmented
    frames in a row (a one-frame merge or noisy size of a static object is segmentation flicker, not a change; a
    frame the object is missing from breaks the row). Any new object (or one whose job failed or was abandoned) is
    sent at its first sighting, unless it is a possible fragment (``split_confirm_frames``)."""
    split_confirm_frames: int = 4
    """A possible split: a new object whose centroid lies inside the box another object of the same frame had
    when it was sent to reconstruction (a fragment of it, most likely), and that other object while such a fragment
    is there, are sent only when this holds in this many segmented frames in a row; so is a new object inside the
    box of one missing from fewer frames than this (the same object under a new tracker id, most likely). Noise
    splits an object in a few frames of every hundred (the mug of the node benchmark's static scene: 1 of 12
    samples of the active-stereo model). With each frame independent, a split in a fraction p of frames is
    "confirmed" in k frames in a row with probability p^k at every frame: at 2 Hz over 3 minutes, 2.5 times with
    k = 2 and p = 1/12, 0.02 times with k = 4. A real fragment or an object put down inside another's box waits for
    k - confirm_frames more frames, each segmented at once (:meth:`ObjectBook.awaiting_confirmation`)."""


@dataclass
class Track:
    """What the node knows about one tracked object."""

    last_seen: float
    """time.monotonic() of the last frame the object was segmented in."""
    centroid: np.ndarray | None = None
    """(3,) centroid at the last sighting, in the node's target frame (the camera frame without one); None without
    depth."""
    extent: np.ndarray | None = None
    """(3,) extent at the last sighting; None without depth."""
    area: int = 0
    """Mask area in pixels at the last sighting."""
    missed: int = 0
    """Segmented frames in a row the object was not in."""
    changed: int = 0
    """Segmented frames in a row the object looked changed since it was last sent to reconstruction."""
    dispatched_centroid: np.ndarray | None = None
    """Centroid when the object was last sent to reconstruction: it is sent again only when it changes from this."""
    dispatched_extent: np.ndarray | None = None
    """Extent when last sent to reconstruction."""
    dispatched_area: int = 0
    """Mask area when last sent; 0 = never sent (or its last job failed): reconstruct at the next sighting."""
    job_id: Any = None
    """The dispatcher's id of the object's running reconstruction; None when none runs."""
    vertices: np.ndarray | None = None
    """(V, 3) published mesh vertices (marker resolution) in the published frame; None before the first result."""
    faces: np.ndarray | None = None
    """(F, 3) published mesh faces (marker resolution)."""
    points: np.ndarray | None = None
    """(N, 3) published point cloud in the published frame (target_frame, or the camera frame)."""
    label: str = ""
    """Marker text: id, backend, confidence."""
    observed: np.ndarray | None = None
    """(N, 3) visible surface points at the last sighting, in the fixed target frame; None without one (or depth)."""
    tree: Any = None
    """KD-tree of ``points`` (built on first use, dropped when a new result replaces them)."""
    reason: str = ""
    """Why the object was last found due for reconstruction (new, or which change), for the node's log."""
    confirm: int = 1
    """Segmented frames in a row its current change must hold for (``ChangePolicy``: confirm_frames, or
    split_confirm_frames while it is or has a possible fragment)."""


@dataclass
class Aggregate:
    """Every reconstructed object together, for the latched cloud and marker topics."""

    points: np.ndarray
    """(N, 3) float32 points of all objects, in the published frame."""
    colours: np.ndarray
    """(N, 3) uint8 colour per point: the object's id colour."""
    meshes: list[tuple[int, np.ndarray, np.ndarray, str]]
    """(object id, vertices, faces, label) per reconstructed object, by id."""


class ObjectBook:
    """Tracks keyed by the tracker's object id, with the change detection that decides what to reconstruct."""

    #: Ids of objects requested through the service's region of interest start here, clear of the tracker's ids.
    ROI_ID_START = 100001

    def __init__(self, policy: ChangePolicy | None = None) -> None:
        self.policy = policy or ChangePolicy()
        self._tracks: dict[int, Track] = {}
        self._roi_ids = itertools.count(self.ROI_ID_START)
        self._roi_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._tracks)

    def get(self, object_id: int) -> Track | None:
        return self._tracks.get(object_id)

    def observe(
        self,
        objects: Iterable[Any],
        now: float,
        T_fixed_from_cam: np.ndarray | None = None,
        surfaces: dict[int, np.ndarray] | None = None,
    ) -> list[int]:
        """Record one frame's segmented objects (``SegmentedObject``: id, mask, centroid_cam, extent_m); return
        the ids of those that are new or changed since their last dispatch, in the frame's order.

        ``T_fixed_from_cam``: the frame's camera pose in a fixed frame, and ``surfaces``: each object's visible
        points in that frame. A moving camera sees another side of a static object (its visible centroid and
        box move with the view), so there an object counts as changed when its reconstruction no longer explains
        what is seen (see :meth:`needs_reconstruction`), not when the centroid moves."""
        for track in self._tracks.values():
            track.missed += 1
        seen = []
        for obj in objects:
            track = self._tracks.get(obj.id)
            if track is None:
                track = self._tracks[obj.id] = Track(last_seen=now)
            track.last_seen, track.missed = now, 0
            centroid = None if obj.centroid_cam is None else np.asarray(obj.centroid_cam, float)
            if centroid is not None and T_fixed_from_cam is not None:
                centroid = transform_points(T_fixed_from_cam, centroid[None])[0]
            track.centroid = centroid
            track.observed = None if surfaces is None else surfaces.get(obj.id)
            track.extent = None if obj.extent_m is None else np.asarray(obj.extent_m, float)
            track.area = int(np.count_nonzero(obj.mask))
            seen.append(obj.id)
        for track in self._tracks.values():
            if track.missed:
                # "In a row" means consecutive segmented frames: a fragment that flickers in and out (or a track
                # that looked changed, then vanished) counts again from 1. Without this, a one-frame split seen
                # twice minutes apart confirmed itself and its static object was reconstructed again.
                track.changed = 0
        # Possible fragments (new objects inside another's box) and the objects whose boxes hold them: a split. The
        # other may also be an object missing from the last few frames only: the tracker gave it a new id (a size
        # outlier, flying pixels behind it, failed its size gate), or it was swapped for another object.
        recent = [k for k, t in self._tracks.items() if 0 < t.missed < self.policy.split_confirm_frames]
        others = seen + recent
        inside = {
            k: self._inside_another(k, self._tracks[k], others) for k in seen if not self._tracks[k].dispatched_area
        }
        split = {k for k, parent in inside.items() if parent is not None}
        split |= {parent for parent in inside.values() if parent is not None}
        due = []
        for object_id in seen:  # once every track of the frame is up to date
            track = self._tracks[object_id]
            fragment = inside.get(object_id) is not None
            if track.dispatched_area == 0 and not fragment:
                track.reason = "new"
                due.append(object_id)  # new, or its last job failed or was abandoned: at once
            elif fragment or self.needs_reconstruction(track):
                track.changed += 1
                policy = self.policy
                track.confirm = policy.split_confirm_frames if object_id in split else policy.confirm_frames
                if track.changed >= track.confirm:
                    track.reason = "new inside another's box" if fragment else self.change_reason(track)
                    due.append(object_id)
            else:
                track.changed = 0
        return due

    def awaiting_confirmation(self) -> bool:
        """Whether an object in the last frame looks changed (or new inside another's box) and waits for its
        confirmation: the next frame should be segmented at once, not at the static rate."""
        return any(0 < t.changed < t.confirm and t.missed == 0 for t in self._tracks.values())

    def _inside_another(self, object_id: int, track: Track, others: list[int]) -> int | None:
        """The id of another object (of ``others``: this frame's, and those missing from its last few) whose box,
        when it was last sent to reconstruction, holds this new object's centroid: most likely a fragment of that
        object (segmentation split it) or that object under a new id, so both wait for ``split_confirm_frames``. None
        for a new object elsewhere, which goes at once."""
        if track.centroid is None:
            return None
        for other_id in others:
            other = self._tracks[other_id]
            if other_id == object_id or other.dispatched_area == 0 or other.dispatched_extent is None:
                continue
            if np.all(np.abs(track.centroid - other.dispatched_centroid) <= 0.5 * other.dispatched_extent):
                return other_id
        return None

    def needs_reconstruction(self, track: Track) -> bool:
        policy = self.policy
        if track.dispatched_area == 0:
            return True
        if track.observed is not None:
            return self._off_reconstruction(track)
        if track.centroid is not None and track.dispatched_centroid is not None:
            if np.linalg.norm(track.centroid - track.dispatched_centroid) > policy.change_distance_m:
                return True
            old, new = np.linalg.norm(track.dispatched_extent), np.linalg.norm(track.extent)
            # Plus change_distance_m: stray depth at an object's edges adds centimetres whatever its size, which
            # is 30 % of a 7 cm object (the extent of one flipped 0.07 <-> 0.11 m between noise samples).
            return bool(abs(new - old) > policy.change_extent_ratio * old + policy.change_distance_m)
        return abs(track.area - track.dispatched_area) > policy.change_extent_ratio * track.dispatched_area

    def change_reason(self, track: Track) -> str:
        """What changed since the object's last dispatch, in words (for the log)."""
        if track.dispatched_area == 0:
            return "new"
        if track.observed is not None:
            return "the visible surface is off the reconstruction"
        area = f"area {track.dispatched_area} -> {track.area} px"
        if track.centroid is None or track.dispatched_centroid is None:
            return area
        moved = 1000.0 * float(np.linalg.norm(track.centroid - track.dispatched_centroid))
        old, new = np.round(track.dispatched_extent, 3).tolist(), np.round(track.extent, 3).tolist()
        return f"centroid moved {moved:.0f} mm, extent {old} -> {new} m, {area}"

    def _off_reconstruction(self, track: Track) -> bool:
        """Fixed frame, moving camera: changed when the median distance of the visible points to the published
        reconstruction exceeds change_distance_m. While the first reconstruction runs there is none to compare
        with: only a centroid displacement larger than the object itself (no view change does that) counts."""
        policy = self.policy
        if track.points is None or len(track.points) == 0 or len(track.observed) == 0:
            if track.centroid is None or track.dispatched_centroid is None:
                return False
            size = 0.0 if track.dispatched_extent is None else float(np.max(track.dispatched_extent))
            moved = float(np.linalg.norm(track.centroid - track.dispatched_centroid))
            return moved > max(policy.change_distance_m, size)
        if track.tree is None:
            track.tree = cKDTree(track.points)
        distances, _ = track.tree.query(track.observed, k=1)
        return float(np.median(distances)) > policy.change_distance_m

    def jobs_running(self) -> bool:
        """Whether a reconstruction of any object is queued or running."""
        return any(t.job_id is not None for t in self._tracks.values())

    def take_running_job(self, object_id: int) -> Any:
        """The id of the object's running job (now stale: the object changed), which the book forgets; or None."""
        track = self._tracks.get(object_id)
        if track is None or track.job_id is None:
            return None
        job_id, track.job_id = track.job_id, None
        return job_id

    def take_abandoned_jobs(self) -> list[Any]:
        """Jobs of objects missing for ``abandon_after_missed`` frames, which the book forgets (to be cancelled); their
        objects count as never reconstructed, so a return is reconstructed again."""
        jobs = []
        for track in self._tracks.values():
            if track.job_id is not None and track.missed >= self.policy.abandon_after_missed:
                jobs.append(track.job_id)
                track.job_id, track.dispatched_area = None, 0
        return jobs

    def dispatched(self, object_id: int, job_id: Any) -> None:
        """The object's current state went to reconstruction as ``job_id``."""
        track = self._tracks[object_id]
        track.job_id, track.changed = job_id, 0
        track.dispatched_centroid, track.dispatched_extent = track.centroid, track.extent
        track.dispatched_area = track.area

    def finished(self, object_id: int, job_id: Any, ok: bool) -> None:
        """A reconstruction job ended; a failed one is retried at the object's next sighting."""
        track = self._tracks.get(object_id)
        if track is None:
            return
        if track.job_id == job_id:
            track.job_id = None
        if not ok:
            track.dispatched_area = 0

    def store_result(
        self, object_id: int, vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, label: str, now: float
    ) -> None:
        """Keep an object's published reconstruction for the aggregate (also one requested through the service,
        which the tracker never saw)."""
        track = self._tracks.get(object_id)
        if track is None:
            track = self._tracks[object_id] = Track(last_seen=now)
        track.vertices, track.faces, track.points, track.label = vertices, faces, points, label
        track.tree = None

    def forget_stale(self, now: float) -> list[int]:
        """Drop objects unseen for ``forget_after_s`` with no job running; return their ids."""
        ttl = self.policy.forget_after_s
        stale = [k for k, t in self._tracks.items() if now - t.last_seen > ttl and t.job_id is None]
        for k in stale:
            del self._tracks[k]
        return stale

    def clear_jobs(self) -> None:
        """The dispatcher went away: no job of any object is running any more."""
        for track in self._tracks.values():
            track.job_id = None

    def clear(self) -> None:
        self._tracks.clear()

    def new_roi_id(self) -> int:
        """A fresh object id for a service request by region of interest (service thread)."""
        with self._roi_lock:
            return next(self._roi_ids)

    def counts(self) -> tuple[int, int]:
        """(objects tracked, objects with a published reconstruction); safe from any thread."""
        tracks = list(self._tracks.values())  # the worker thread inserts and deletes tracks concurrently
        return len(tracks), sum(1 for t in tracks if t.vertices is not None)

    def aggregate(self, colour_of: Callable[[int], tuple[float, float, float]]) -> Aggregate:
        """Every reconstructed object, by id; ``colour_of(id)`` gives an object's RGB colour in 0..1."""
        done = [(k, t) for k, t in sorted(self._tracks.items()) if t.vertices is not None]
        if not done:
            return Aggregate(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.uint8), [])
        points = np.concatenate([t.points for _, t in done]).astype(np.float32, copy=False)
        colours = np.concatenate(
            [np.tile((np.array(colour_of(k)) * 255).astype(np.uint8), (len(t.points), 1)) for k, t in done]
        )
        return Aggregate(points, colours, [(k, t.vertices, t.faces, t.label) for k, t in done])
