"""A small transform buffer (what tf2's BufferCore does, for installs without tf2): no ROS imports.

Frames form a tree: each child frame has one parent. Edges are either static (valid at every time) or dynamic (a
time series of samples, interpolated linearly in translation and by slerp in rotation between the two samples that
bracket the query time; no extrapolation beyond ``extrapolation_ns``, like tf2). ``lookup(target, source, stamp_ns)``
composes the edges from ``source`` up to the common ancestor and down to ``target`` and returns
``T_target_from_source`` (4x4): ``p_target = T @ p_source``.

``stamp_ns == 0`` means "the latest time at which the whole chain is known", as tf2's ``Time(0)``.
``wait_for(...)`` blocks (on a condition variable, never a sleep loop) until ``lookup`` can answer or a timeout passes,
for a processing thread waiting for the /tf message that goes with an image. The ROS side (subscribing /tf and
/tf_static, or tf2_ros where installed) is in :mod:`z123_ros.ros.tf_listener`.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from z123_ros.camera import invert
from z123_ros.errors import Z123Error


class TransformError(Z123Error):
    """A transform cannot be answered: unknown frame, frames not connected, or no data at the requested time."""

    reason = "no_transform"


def quaternion_to_matrix(q_xyzw: np.ndarray) -> np.ndarray:
    """3x3 rotation of a quaternion (x, y, z, w) (ROS order); normalised first."""
    x, y, z, w = np.asarray(q_xyzw, dtype=np.float64) / np.linalg.norm(q_xyzw)
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def matrix_to_quaternion(R: np.ndarray) -> np.ndarray:
    """Quaternion (x, y, z, w) with w >= 0 of a 3x3 rotation (Shepperd's method: stable for every angle)."""
    R = np.asarray(R, dtype=np.float64)
    trace = np.trace(R)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [(R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s, 0.25 * s]
    else:
        i = int(np.argmax(np.diag(R)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[k, k])
        q = [0.0, 0.0, 0.0, (R[k, j] - R[j, k]) / s]
        q[i] = 0.25 * s
        q[j] = (R[j, i] + R[i, j]) / s
        q[k] = (R[k, i] + R[i, k]) / s
    q = np.asarray(q)
    return q if q[3] >= 0 else -q


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions (x, y, z, w) by ``alpha`` in [0, 1], along the shorter arc."""
    q0 = np.asarray(q0, dtype=np.float64) / np.linalg.norm(q0)
    q1 = np.asarray(q1, dtype=np.float64) / np.linalg.norm(q1)
    dot = float(q0 @ q1)
    if dot < 0.0:  # q and -q are the same rotation: take the short way round
        q1, dot = -q1, -dot
    if dot > 0.9995:  # nearly parallel: sin(theta) ~ 0, linear interpolation is exact to float precision
        q = q0 + alpha * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - alpha) * theta) * q0 + np.sin(alpha * theta) * q1) / np.sin(theta)


def make_transform(translation: Any, q_xyzw: Any) -> np.ndarray:
    """4x4 rigid transform from a translation (3,) and a quaternion (x, y, z, w)."""
    T = np.eye(4)
    T[:3, :3] = quaternion_to_matrix(np.asarray(q_xyzw, dtype=np.float64))
    T[:3, 3] = np.asarray(translation, dtype=np.float64)
    return T


@dataclass
class _Edge:
    """The transform parent <- child: static, or samples sorted by time."""

    parent: str
    """The parent frame."""
    static: bool
    """True: one transform valid at every time (/tf_static)."""
    stamps_ns: list[int] = field(default_factory=list)
    """Sample times, sorted, nanoseconds (dynamic edges)."""
    translations: list[np.ndarray] = field(default_factory=list)
    """(3,) translation of each sample, metres."""
    rotations: list[np.ndarray] = field(default_factory=list)
    """(4,) unit quaternion (x, y, z, w) of each sample."""

    def latest_ns(self) -> int | None:
        return None if self.static else self.stamps_ns[-1]

    def at(self, stamp_ns: int, extrapolation_ns: int) -> np.ndarray | None:
        """T_parent_from_child at ``stamp_ns`` (0 = latest), or None when the time is outside the samples."""
        if self.static or stamp_ns == 0:
            return make_transform(self.translations[-1], self.rotations[-1])
        stamps = self.stamps_ns
        i = bisect.bisect_left(stamps, stamp_ns)
        if i < len(stamps) and stamps[i] == stamp_ns:
            return make_transform(self.translations[i], self.rotations[i])
        if i == 0 or i == len(stamps):
            nearest = 0 if i == 0 else len(stamps) - 1
            if abs(stamps[nearest] - stamp_ns) > extrapolation_ns:
                return None
            return make_transform(self.translations[nearest], self.rotations[nearest])
        alpha = (stamp_ns - stamps[i - 1]) / (stamps[i] - stamps[i - 1])
        t = (1 - alpha) * self.translations[i - 1] + alpha * self.translations[i]
        return make_transform(t, slerp(self.rotations[i - 1], self.rotations[i], alpha))

    def span(self) -> tuple[int, int] | None:
        return None if self.static else (self.stamps_ns[0], self.stamps_ns[-1])


class TransformBuffer:
    """Thread-safe store of static and time-stamped transforms with chained, interpolated lookups."""

    def __init__(self, cache_time_s: float = 10.0, extrapolation_s: float = 0.0) -> None:
        """``cache_time_s``: dynamic samples older than the newest one of their edge by more than this are dropped.
        ``extrapolation_s``: how far before the first / after the last sample a lookup may still use it."""
        if cache_time_s <= 0 or extrapolation_s < 0:
            raise ValueError("cache_time_s must be > 0 and extrapolation_s >= 0")
        self._cache_ns = int(cache_time_s * 1e9)
        self._extrapolation_ns = int(extrapolation_s * 1e9)
        self._edges: dict[str, _Edge] = {}  # child frame -> edge to its parent
        self._changed = threading.Condition()

    def set_transform(
        self, parent: str, child: str, stamp_ns: int, translation: Any, q_xyzw: Any, static: bool = False
    ) -> None:
        """Add T_parent_from_child (translation, rotation as a quaternion x, y, z, w) at ``stamp_ns``."""
        if not parent or not child or parent == child:
            raise TransformError(f"bad transform {parent!r} <- {child!r}: both frames must be set and differ")
        t = np.asarray(translation, dtype=np.float64).reshape(3)
        q = np.asarray(q_xyzw, dtype=np.float64).reshape(4)
        norm = np.linalg.norm(q)
        if not (np.all(np.isfinite(t)) and np.isfinite(norm) and norm > 1e-9):
            raise TransformError(f"bad transform {parent!r} <- {child!r}: non-finite value or zero quaternion")
        with self._changed:
            edge = self._edges.get(child)
            if edge is None or edge.static != static or edge.parent != parent:
                # tf semantics: the newest message decides a child's parent (a re-parented frame starts afresh).
                edge = self._edges[child] = _Edge(parent=parent, static=static)
            if static:
                edge.translations, edge.rotations = [t], [q / norm]
            else:
                self._insert(edge, int(stamp_ns), t, q / norm)
            self._changed.notify_all()

    def _insert(self, edge: _Edge, stamp_ns: int, t: np.ndarray, q: np.ndarray) -> None:
        i = bisect.bisect_left(edge.stamps_ns, stamp_ns)
        if i < len(edge.stamps_ns) and edge.stamps_ns[i] == stamp_ns:
            edge.translations[i], edge.rotations[i] = t, q
            return
        edge.stamps_ns.insert(i, stamp_ns)
        edge.translations.insert(i, t)
        edge.rotations.insert(i, q)
        cut = bisect.bisect_left(edge.stamps_ns, edge.stamps_ns[-1] - self._cache_ns)
        if cut:
            del edge.stamps_ns[:cut], edge.translations[:cut], edge.rotations[:cut]

    def frames(self) -> set[str]:
        """Every frame named by a transform so far."""
        with self._changed:
            return set(self._edges) | {e.parent for e in self._edges.values()}

    def _chain(self, frame: str) -> list[str]:
        """``frame`` and its ancestors up to the root of its tree."""
        chain = [frame]
        while chain[-1] in self._edges:
            parent = self._edges[chain[-1]].parent
            if parent in chain:  # a loop in published data: stop rather than spin
                raise TransformError(f"the tf tree has a loop through {parent!r}")
            chain.append(parent)
        return chain

    def lookup(self, target: str, source: str, stamp_ns: int = 0) -> np.ndarray:
        """T_target_from_source at ``stamp_ns`` (0 = latest common time); raises TransformError."""
        with self._changed:
            return self._lookup(target, source, stamp_ns)

    def _lookup(self, target: str, source: str, stamp_ns: int) -> np.ndarray:
        if target == source:
            return np.eye(4)
        known = set(self._edges) | {e.parent for e in self._edges.values()}
        for frame in (target, source):
            if frame not in known:
                raise TransformError(f"frame {frame!r} does not exist (known: {sorted(known) or 'none'})")
        up_source, up_target = self._chain(source), self._chain(target)
        common = next((f for f in up_source if f in set(up_target)), None)
        if common is None:
            raise TransformError(f"{source!r} and {target!r} are not connected by any transform")
        edges = [self._edges[f] for f in up_source[: up_source.index(common)]]
        edges_t = [self._edges[f] for f in up_target[: up_target.index(common)]]
        if stamp_ns == 0:
            latest = [e.latest_ns() for e in edges + edges_t if not e.static]
            stamp_ns = min(latest) if latest else 0
        T_common_from_source = self._compose(edges, stamp_ns, source, target)
        T_common_from_target = self._compose(edges_t, stamp_ns, source, target)
        return invert(T_common_from_target) @ T_common_from_source

    def _compose(self, edges: list[_Edge], stamp_ns: int, source: str, target: str) -> np.ndarray:
        """Product of the edges (child first) at ``stamp_ns``: T_ancestor_from_first_child."""
        T = np.eye(4)
        for edge in edges:
            step = edge.at(stamp_ns, self._extrapolation_ns)
            if step is None:
                lo, hi = edge.span()
                raise TransformError(
                    f"no transform {target!r} <- {source!r} at t={stamp_ns * 1e-9:.3f} s: the edge to "
                    f"{edge.parent!r} is known from {lo * 1e-9:.3f} to {hi * 1e-9:.3f} s"
                )
            T = step @ T
        return T

    def can_transform(self, target: str, source: str, stamp_ns: int = 0) -> bool:
        try:
            self.lookup(target, source, stamp_ns)
        except TransformError:
            return False
        return True

    def wait_for(self, target: str, source: str, stamp_ns: int, timeout_s: float) -> np.ndarray:
        """``lookup``, waiting up to ``timeout_s`` for the transforms to arrive; raises the last TransformError."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._changed:
            while True:
                try:
                    return self._lookup(target, source, stamp_ns)
                except TransformError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise
                    self._changed.wait(remaining)

    def clear(self) -> None:
        """Forget every transform (e.g. when a bag loops and time jumps back)."""
        with self._changed:
            self._edges.clear()
