"""Approximate-time synchronisation of camera streams (colour, depth, camera info), pure Python.

message_filters has no pip wheel (the project runs on the ROS 2 pip wheels, without apt), so this is the project's
own small synchroniser.
Policy: every stream keeps a bounded queue of (stamp, item). When a message arrives, the synchroniser looks for one
message per stream such that all stamps lie within ``slop_s`` of each other, choosing for each stream the message
nearest the newest candidate set. A complete set is emitted once; it and everything older in every queue is
removed, because a later set has been found and the camera streams are monotonic. Messages that fall out of a full
queue or are passed over are counted as ``dropped`` (per stream): the node reports them as "unsynchronised" drops.

No threads and no ROS here: callers (the node's subscription callbacks) lock around :meth:`add` if they run in
parallel; the class holds its own lock so it is safe either way.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from z123_ros.errors import ConfigError


@dataclass
class SyncedSet:
    """One synchronised set of messages, one per stream."""

    #: stream name -> item as given to :meth:`ApproximateTimeSync.add`.
    items: dict[str, Any]
    #: stream name -> stamp (seconds).
    stamps: dict[str, float]

    @property
    def stamp(self) -> float:
        """The set's reference stamp: the newest of its stamps."""
        return max(self.stamps.values())

    @property
    def spread_s(self) -> float:
        """Largest difference between two stamps of the set."""
        return max(self.stamps.values()) - min(self.stamps.values())


@dataclass
class SyncStats:
    """Counters of an :class:`ApproximateTimeSync`."""

    #: Sets emitted.
    emitted: int = 0
    #: stream -> messages discarded without ever being part of a set.
    dropped: dict[str, int] = field(default_factory=dict)
    #: Times the queues were cleared because a stream's clock jumped backwards.
    resets: int = 0

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


class ApproximateTimeSync:
    """Approximate-time synchroniser over named streams.

    Args:
        streams: names of the streams, e.g. ``("rgb", "depth", "info")``.
        slop_s: largest allowed stamp difference within a set, seconds.
        queue_size: messages kept per stream; the oldest is dropped when full.
        time_jump_s: a stamp older than the newest one of its stream by more than this clears all queues (a replayed
            bag restarted, a simulator reset) instead of waiting for the old stamps to be matched.
    """

    def __init__(self, streams: Sequence[str], slop_s: float, queue_size: int = 10, time_jump_s: float = 1.0) -> None:
        if len(streams) < 1 or len(set(streams)) != len(streams):
            raise ConfigError(f"streams must be distinct names, got {list(streams)}")
        if not slop_s >= 0:
            raise ConfigError(f"slop_s must be >= 0, got {slop_s}")
        if queue_size < 1:
            raise ConfigError(f"queue_size must be >= 1, got {queue_size}")
        self.streams = tuple(streams)
        self.slop_s = float(slop_s)
        self.queue_size = int(queue_size)
        self.time_jump_s = float(time_jump_s)
        self._queues: dict[str, deque[tuple[float, Any]]] = {s: deque() for s in self.streams}
        self._newest: dict[str, float] = {}
        self._lock = threading.Lock()
        self.stats = SyncStats(dropped={s: 0 for s in self.streams})

    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            return {s: len(q) for s, q in self._queues.items()}

    def reset(self) -> None:
        """Forget every queued message (counted as dropped)."""
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        for s, q in self._queues.items():
            self.stats.dropped[s] += len(q)
            q.clear()
        self._newest.clear()

    def add(self, stream: str, stamp_s: float, item: Any) -> SyncedSet | None:
        """Queue one message; return the set it completes, if any."""
        if stream not in self._queues:
            raise ConfigError(f"unknown stream {stream!r}; streams are {self.streams}")
        stamp_s = float(stamp_s)
        with self._lock:
            newest = self._newest.get(stream)
            if newest is not None and stamp_s < newest - self.time_jump_s:
                self._clear()
                self.stats.resets += 1
            self._newest[stream] = max(stamp_s, self._newest.get(stream, stamp_s))
            q = self._queues[stream]
            # Keep each queue sorted by stamp: sensors are monotonic, but DDS may reorder slightly.
            pos = len(q)
            while pos > 0 and q[pos - 1][0] > stamp_s:
                pos -= 1
            q.insert(pos, (stamp_s, item))
            if len(q) > self.queue_size:
                q.popleft()
                self.stats.dropped[stream] += 1
            return self._try_match(stamp_s)

    def _try_match(self, pivot_s: float) -> SyncedSet | None:
        if any(not q for q in self._queues.values()):
            return None
        chosen: dict[str, tuple[int, float, Any]] = {}
        for s, q in self._queues.items():
            i = min(range(len(q)), key=lambda k, q=q: abs(q[k][0] - pivot_s))
            chosen[s] = (i, q[i][0], q[i][1])
        stamps = [c[1] for c in chosen.values()]
        if max(stamps) - min(stamps) > self.slop_s:
            return None
        result = SyncedSet(items={s: c[2] for s, c in chosen.items()}, stamps={s: c[1] for s, c in chosen.items()})
        for s, (i, _, _) in chosen.items():
            q = self._queues[s]
            # Messages older than the chosen one can no longer join a set newer than this one.
            self.stats.dropped[s] += i
            for _ in range(i + 1):
                q.popleft()
        self.stats.emitted += 1
        return result
