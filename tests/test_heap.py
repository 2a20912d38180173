"""z123_ros.heap: memory freed into glibc's arenas goes back to the operating system, at most once per period."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from z123_ros import heap

pytestmark = pytest.mark.skipif(not heap.release_free_heap(), reason="needs glibc's malloc_trim (Linux with glibc)")


def _private_mb() -> float:
    """This process's private resident memory (USS), MB."""
    lines = Path("/proc/self/smaps_rollup").read_text().splitlines()
    return sum(int(line.split()[1]) for line in lines if line.startswith("Private_")) / 1024.0


def test_freed_holes_in_the_heap_go_back_to_the_os() -> None:
    # 64 KiB arrays stay below glibc's mmap threshold, so they live in the heap; freeing every other one leaves
    # ~60 MB of holes between live blocks, which glibc keeps (its own trimming only gives back the top of the heap).
    arrays = [np.ones(8192) for _ in range(2000)]
    del arrays[::2]
    held = _private_mb()
    assert heap.release_free_heap()
    released = held - _private_mb()
    assert released > 30.0, f"only {released:.1f} MB of ~60 MB of freed holes went back to the OS"
    assert all(a[0] == 1.0 and a[-1] == 1.0 for a in arrays), "the live blocks are untouched"


def test_the_trimmer_trims_at_most_once_per_period_and_never_with_period_zero() -> None:
    now = [0.0]
    trimmer = heap.HeapTrimmer(10.0, clock=lambda: now[0])
    calls = []
    for t in (1.0, 9.9, 10.0, 15.0, 20.5, 21.0):
        now[0] = t
        calls.append(trimmer.maybe_trim())
    assert calls == [False, False, True, False, True, False] and trimmer.trims == 2
    trimmer.period_s = 0.0
    now[0] = 1000.0
    assert not trimmer.maybe_trim() and trimmer.trims == 2
