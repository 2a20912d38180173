"""Stable object ids across camera frames.

Objects are matched to tracks one-to-one (Hungarian) by 3D centroid and size, with a gate: a pair further apart than
``gate_distance_m`` (or whose sizes differ too much) never matches. With the camera pose ``T_cam_from_world`` of each
frame the centroids are compared in the world frame, so a moving camera keeps the ids of objects that stay put; without
it they are compared in the camera frame, which is right for a still camera. Objects without 3D data (RGB-only
fallback) are matched by 2D box overlap instead.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from z123_ros.camera import check_rigid, invert, transform_points
from z123_ros.errors import ConfigError
from z123_ros.segmentation.types import FrameSegmentation, SegmentedObject

logger = logging.getLogger(__name__)

_NO_MATCH = 1e6


@dataclass
class TrackerConfig:
    """Settings of :class:`ObjectTracker`."""

    gate_distance_m: float = 0.05
    """Largest centroid displacement between frames that still counts as the same object."""
    size_weight: float = 1.0
    """Weight of the size difference (metres) against the centroid distance in the matching cost."""
    max_size_change: float = 0.5
    """Pairs whose largest size difference exceeds this fraction of the larger size (plus 2 cm) never match."""
    min_box_iou: float = 0.3
    """Objects without 3D data match a track when their 2D boxes overlap at least this much (IoU)."""
    max_missed_frames: int = 30
    """A track not seen for this many frames is forgotten (its id is never reused)."""
    smoothing: float = 0.5
    """Weight of the new measurement when updating a track's position and size (1 = no smoothing)."""

    def validate(self) -> None:
        if self.gate_distance_m <= 0 or not 0 < self.smoothing <= 1 or self.max_missed_frames < 0:
            raise ConfigError("gate_distance_m must be > 0, smoothing in (0, 1], max_missed_frames >= 0")


@dataclass
class Track:
    """What the tracker remembers about one object."""

    id: int
    #: (3,) centroid in the world frame when frames had a pose, else in the camera frame; None for RGB-only.
    position: np.ndarray | None
    #: True when ``position`` is in the world frame.
    in_world: bool
    #: (3,) rotation-invariant size descriptor, metres (see ``_size``); None for RGB-only.
    size: np.ndarray | None
    box_xyxy: tuple[int, int, int, int]
    #: Frames this track was matched in.
    hits: int = 1
    #: Consecutive frames it was not matched.
    missed: int = 0


def _size(obj: SegmentedObject) -> np.ndarray | None:
    """Footprint on the plane (larger, smaller) and height; sorted camera-frame extent without a plane."""
    if obj.size_on_plane_m is not None:
        s = np.asarray(obj.size_on_plane_m, dtype=np.float64)
        return np.array([max(s[0], s[1]), min(s[0], s[1]), s[2]])
    if obj.extent_m is not None:
        return np.sort(np.asarray(obj.extent_m, dtype=np.float64))[::-1]
    return None


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class ObjectTracker:
    """Gives the objects of successive frames stable ids (1, 2, ... in order of first sight, never reused)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self.config.validate()
        self.tracks: list[Track] = []
        self._next_id = 1

    def reset(self) -> None:
        self.tracks = []
        self._next_id = 1

    def _cost(self, obj: SegmentedObject, position: np.ndarray | None, in_world: bool, track: Track) -> float:
        cfg = self.config
        if position is not None and track.position is not None and in_world == track.in_world:
            dist = float(np.linalg.norm(position - track.position))
            if dist > cfg.gate_distance_m:
                return _NO_MATCH
            size, cost = _size(obj), dist
            if size is not None and track.size is not None:
                diff = float(np.max(np.abs(size - track.size)))
                if diff > cfg.max_size_change * float(np.max(np.maximum(size, track.size))) + 0.02:
                    return _NO_MATCH
                cost += cfg.size_weight * diff
            return cost
        iou = box_iou(obj.box_xyxy, track.box_xyxy)
        # Scaled into the metric cost's range so 2D matches never beat gated 3D ones by accident.
        return (1.0 - iou) * cfg.gate_distance_m if iou >= cfg.min_box_iou else _NO_MATCH

    def update(self, frame: FrameSegmentation, T_cam_from_world: np.ndarray | None = None) -> FrameSegmentation:
        """Match ``frame``'s objects to the tracks; returns a copy of ``frame`` with ids (and labels) replaced.

        Args:
            frame: a segmentation result.
            T_cam_from_world: the frame's camera pose (world +z up); defaults to ``frame.T_cam_from_world``.
        """
        cfg = self.config
        T = frame.T_cam_from_world if T_cam_from_world is None else T_cam_from_world
        T_world_from_cam = None if T is None else invert(check_rigid(T, "T_cam_from_world"))
        in_world = T_world_from_cam is not None
        positions: list[np.ndarray | None] = []
        for obj in frame.objects:
            if obj.centroid_cam is None:
                positions.append(None)
            elif in_world:
                positions.append(transform_points(T_world_from_cam, obj.centroid_cam[None])[0])
            else:
                positions.append(np.asarray(obj.centroid_cam, dtype=np.float64))
        # 1. One-to-one assignment on the gated cost.
        matches: dict[int, int] = {}
        if frame.objects and self.tracks:
            cost = np.array(
                [
                    [self._cost(obj, pos, in_world, tr) for tr in self.tracks]
                    for obj, pos in zip(frame.objects, positions, strict=True)
                ]
            )
            rows, cols = linear_sum_assignment(cost)
            matches = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if cost[r, c] < _NO_MATCH}
        # 2. Update matched tracks, start new ones.
        new_ids: list[int] = []
        matched_tracks = set()
        a = cfg.smoothing
        for i, (obj, pos) in enumerate(zip(frame.objects, positions, strict=True)):
            size = _size(obj)
            if i in matches:
                tr = self.tracks[matches[i]]
                matched_tracks.add(matches[i])
                if pos is not None:
                    same_frame = tr.position is not None and tr.in_world == in_world
                    tr.position = (1 - a) * tr.position + a * pos if same_frame else pos
                    tr.in_world = in_world
                if size is not None:
                    tr.size = size if tr.size is None else (1 - a) * tr.size + a * size
                tr.box_xyxy = obj.box_xyxy
                tr.hits += 1
                tr.missed = 0
            else:
                tr = Track(self._next_id, pos, in_world, size, obj.box_xyxy)
                self._next_id += 1
                self.tracks.append(tr)
                matched_tracks.add(len(self.tracks) - 1)
            new_ids.append(tr.id)
        # 3. Age the unmatched tracks and forget the stale ones.
        for j, tr in enumerate(self.tracks):
            if j not in matched_tracks:
                tr.missed += 1
        self.tracks = [tr for tr in self.tracks if tr.missed <= cfg.max_missed_frames]
        # 4. The frame with the new ids.
        objects = [dataclasses.replace(obj, id=k) for obj, k in zip(frame.objects, new_ids, strict=True)]
        labels = frame.labels
        if labels is not None:
            lut = np.zeros(max([o.id for o in frame.objects] + [int(labels.max()), 0]) + 1, dtype=np.int32)
            for obj, k in zip(frame.objects, new_ids, strict=True):
                lut[obj.id] = k
            labels = lut[labels]
        return dataclasses.replace(frame, objects=objects, labels=labels)
