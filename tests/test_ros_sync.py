"""The in-project approximate-time synchroniser (pure Python, no ROS)."""

from __future__ import annotations

import threading

import pytest

from z123_ros.errors import ConfigError
from z123_ros.ros.sync import ApproximateTimeSync

pytestmark = pytest.mark.ros


def test_matches_within_slop_and_reports_spread() -> None:
    sync = ApproximateTimeSync(("rgb", "depth", "info"), slop_s=0.02)
    assert sync.add("rgb", 1.000, "c1") is None
    assert sync.add("depth", 1.010, "d1") is None
    out = sync.add("info", 1.000, "i1")
    assert out is not None
    assert out.items == {"rgb": "c1", "depth": "d1", "info": "i1"}
    assert out.stamp == pytest.approx(1.010) and out.spread_s == pytest.approx(0.010)
    assert sync.queue_depths() == {"rgb": 0, "depth": 0, "info": 0}
    assert sync.stats.emitted == 1 and sync.stats.dropped_total == 0


def test_picks_nearest_and_drops_older() -> None:
    sync = ApproximateTimeSync(("rgb", "depth"), slop_s=0.01, queue_size=10)
    for k in range(5):
        assert sync.add("rgb", 1.0 + 0.033 * k, f"c{k}") is None
    out = sync.add("depth", 1.0 + 0.033 * 3 + 0.004, "d3")
    assert out is not None and out.items["rgb"] == "c3"
    # c0..c2 can no longer be part of a newer set.
    assert sync.stats.dropped["rgb"] == 3
    assert sync.queue_depths()["rgb"] == 1


def test_never_synchronising_streams_stay_bounded_and_count_drops() -> None:
    sync = ApproximateTimeSync(("rgb", "depth"), slop_s=0.005, queue_size=4)
    for k in range(100):
        assert sync.add("rgb", float(k), k) is None
        assert sync.add("depth", k + 0.5, k) is None
    assert max(sync.queue_depths().values()) <= 4
    assert sync.stats.emitted == 0
    assert sync.stats.dropped == {"rgb": 96, "depth": 96}


def test_out_of_order_arrival_and_time_jump_reset() -> None:
    sync = ApproximateTimeSync(("a", "b"), slop_s=0.01, time_jump_s=1.0)
    sync.add("a", 2.0, "a2")
    sync.add("a", 1.9, "a19")  # slightly reordered by the transport
    out = sync.add("b", 1.9, "b19")
    assert out is not None and out.items["a"] == "a19"
    # A replay restarting at t = 0: old queue content is discarded instead of blocking.
    assert sync.add("a", 0.0, "a0") is None
    assert sync.stats.resets == 1
    out = sync.add("b", 0.001, "b0")
    assert out is not None and out.items == {"a": "a0", "b": "b0"}


def test_thread_safety_under_concurrent_adds() -> None:
    sync = ApproximateTimeSync(("a", "b"), slop_s=0.001, queue_size=1000)
    results: list = []
    lock = threading.Lock()

    def feed(stream: str) -> None:
        for k in range(500):
            out = sync.add(stream, k * 0.1, (stream, k))
            if out is not None:
                with lock:
                    results.append(out)

    threads = [threading.Thread(target=feed, args=(s,)) for s in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == sync.stats.emitted >= 1
    for r in results:
        assert r.items["a"][1] == r.items["b"][1]
    assert len(results) + sync.stats.dropped["a"] + sync.queue_depths()["a"] == 500


def test_config_errors() -> None:
    with pytest.raises(ConfigError):
        ApproximateTimeSync(("a", "a"), slop_s=0.1)
    with pytest.raises(ConfigError):
        ApproximateTimeSync(("a",), slop_s=-1)
    with pytest.raises(ConfigError, match="unknown stream"):
        ApproximateTimeSync(("a",), slop_s=0.1).add("b", 0.0, None)
