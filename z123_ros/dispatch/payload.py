"""A job on its way to a Ray actor: pickled once, its large arrays put into Ray's object store once per array, however
many jobs carry them.

The objects of one camera frame are one job each, and every one of them carries the frame's colour and depth images
(2.15 MB of a VGA job's 2.76 MB). Put whole (``ray.put(job)``), each job copied them into the object store again.
Here a job is pickled with its large arrays left out (:func:`pack`: the pickle names them by position), each of those
arrays is put once while any queued or running job holds it (:class:`SharedArrays`, by object identity), and the
actor gets the pickle and the arrays as the arguments of one call (Ray resolves top-level references without a copy)
and rebuilds the job (:func:`unpack`).

Object identity is the right key because the arrays are not copied between the jobs of a frame: the node builds
them all from one decoded frame, and the dispatch process receives a frame's jobs in one message, so that pickle's
memo gives them the same array objects again (:meth:`SupervisedDispatcher.batch`).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Arrays at least this large travel as their own objects in Ray's object store (shared between jobs); smaller ones
#: (a few kB of points, a camera matrix) stay inside the job's pickle.
SHARED_MIN_BYTES = 64 * 1024


class _Pickler(pickle.Pickler):
    def __init__(self, file: io.BytesIO, arrays: list[np.ndarray]) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.arrays = arrays
        self._index: dict[int, int] = {}

    def persistent_id(self, obj: Any) -> int | None:
        if type(obj) is not np.ndarray or obj.nbytes < SHARED_MIN_BYTES:
            return None
        index = self._index.get(id(obj))
        if index is None:
            index = self._index[id(obj)] = len(self.arrays)
            self.arrays.append(obj)
        return index


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: io.BytesIO, arrays: tuple[Any, ...]) -> None:
        super().__init__(file)
        self.arrays = arrays

    def persistent_load(self, pid: Any) -> Any:
        return self.arrays[pid]


def pack(job: Any) -> tuple[bytes, list[np.ndarray]]:
    """(pickle of ``job`` without its large arrays, those arrays in the order the pickle names them; each once)."""
    buffer, arrays = io.BytesIO(), []
    _Pickler(buffer, arrays).dump(job)
    return buffer.getvalue(), arrays


def unpack(head: bytes, arrays: tuple[Any, ...] | list[Any]) -> Any:
    """The job :func:`pack` gave ``head`` and ``arrays`` for (the arrays as Ray hands them over: read-only views of
    the object store)."""
    return _Unpickler(io.BytesIO(head), tuple(arrays)).load()


@dataclass(eq=False)
class SharedArray:
    """One large array of the jobs in flight and its object in Ray's object store (once put)."""

    array: np.ndarray
    users: int = 0
    """Jobs in flight (queued or running) that carry it."""
    ref: Any = None
    """Its ObjectRef once put; dropped (and so freed by Ray) with the last job that carries it."""


class SharedArrays:
    """The large arrays of the jobs in flight, by object identity; each is put into Ray's object store once. Each
    entry holds its array, so an identity cannot be reused by another array while the entry exists. Not thread-safe:
    the dispatcher calls it under its lock (``acquire``, ``release``, ``entries``) and puts from its collector
    thread."""

    def __init__(self) -> None:
        self._entries: dict[int, SharedArray] = {}
        self.puts = 0
        """Arrays put into the object store so far."""
        self.bytes_put = 0
        """Their bytes."""

    def __len__(self) -> int:
        return len(self._entries)

    def acquire(self, arrays: list[np.ndarray]) -> None:
        """A job that carries ``arrays`` is in flight."""
        for array in arrays:
            entry = self._entries.get(id(array))
            if entry is None:
                entry = self._entries[id(array)] = SharedArray(array)
            entry.users += 1

    def release(self, arrays: list[np.ndarray]) -> None:
        """That job is finished (in whatever way): an array no other job in flight carries is forgotten."""
        for array in arrays:
            entry = self._entries.get(id(array))
            if entry is not None and entry.array is array:
                entry.users -= 1
                if entry.users <= 0:
                    del self._entries[id(array)]

    def entries(self, arrays: list[np.ndarray]) -> list[SharedArray]:
        """The entries of an acquired job's arrays (to put them outside the lock: see :meth:`refs`)."""
        return [self._entries[id(array)] for array in arrays]

    def refs(self, entries: list[SharedArray], put: Callable[[Any], Any]) -> list[Any]:
        """The object store references of ``entries``, putting those not yet put (``put``: ``ray.put``)."""
        refs = []
        for entry in entries:
            if entry.ref is None:
                entry.ref = put(entry.array)
                self.puts += 1
                self.bytes_put += int(entry.array.nbytes)
            refs.append(entry.ref)
        return refs
