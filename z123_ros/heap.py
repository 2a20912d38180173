"""Hand the C heap's free memory back to the operating system (glibc ``malloc_trim``).

A long-running process that handles megabyte arrays on several threads (camera frames, depth maps, masks, meshes;
rclpy and the DDS middleware allocate on their own threads) leaves free holes in glibc's per-thread arenas. glibc
keeps those pages: the process's resident memory climbs to a high-water mark over minutes while the memory in use
stays flat. In the node's 15 Hz soak the arenas' free part rose from 4 to 35-48 MB over the first 4 minutes
while the Python objects and the bytes in use did not grow (docs/node/latency.md). ``malloc_trim(0)`` returns every
free page of every arena (madvise), so resident memory follows the memory in use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time


def _load_trim():
    """glibc's ``malloc_trim``, or None on a C library without it (musl, macOS)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    fn.restype = ctypes.c_int
    return fn


_MALLOC_TRIM = _load_trim()


def release_free_heap() -> bool:
    """Return the C heap's free pages to the OS now; True if the C library can (glibc), False otherwise."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class HeapTrimmer:
    """Calls :func:`release_free_heap` at most once per ``period_s`` (0 = never), from whichever thread calls
    :meth:`maybe_trim`: the node's worker thread, between two pieces of work."""

    def __init__(self, period_s: float, clock=time.monotonic) -> None:
        self.period_s = period_s
        self._clock = clock
        self._last = clock()
        self.trims = 0
        """Times the heap was trimmed."""

    def maybe_trim(self) -> bool:
        """Trim if ``period_s`` has passed since the last trim; True when it trimmed."""
        if self.period_s <= 0 or _MALLOC_TRIM is None:
            return False
        now = self._clock()
        if now - self._last < self.period_s:
            return False
        release_free_heap()
        self._last = self._clock()
        self.trims += 1
        return True
