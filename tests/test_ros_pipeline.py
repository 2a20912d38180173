"""The node's worker pipeline on its own thread, without an executor or Ray: a frame that brings new objects passes
the rate limit and all its objects are submitted at once (they reconstruct in parallel on the actors); a static
scene, segmented frame after frame, is never reconstructed again; results are published as serialised messages."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import itertools
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("sensor_msgs")
pytest.importorskip("z123_interfaces")

from rclpy.serialization import deserialize_message  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from z123_interfaces.msg import ObjectReconstruction  # noqa: E402

from z123_ros.dispatch import JobResult, JobTimings  # noqa: E402
from z123_ros.reconstruction import reconstruct  # noqa: E402
from z123_ros.ros.config import NodeConfig  # noqa: E402
from z123_ros.ros.diagnostics import NodeStats  # noqa: E402
from z123_ros.ros.frames import RawFrame  # noqa: E402
from z123_ros.ros.pipeline import Pipeline  # noqa: E402
from z123_ros.ros.sim_camera_node import scene_messages  # noqa: E402
from z123_ros.sim import SceneConfig, render_tabletop_scene  # noqa: E402
from z123_ros.sim.sensor import apply_sensor  # noqa: E402

TIMEOUT_S = 120.0  # generous: the machine may be loaded; nothing here is a timing


class RecordingDispatcher:
    """Test double of the dispatcher: records each submitted job and finishes it only when the test says so (with
    the fast ``hull`` backend), which proves what the pipeline submits and when, not how Ray runs it."""

    def __init__(self) -> None:
        self.jobs: dict[int, tuple[Any, Any]] = {}
        self.cancelled: list[int] = []
        self.batches: collections.deque[list[int]] = collections.deque(maxlen=4)
        """The job ids of the last batches (bounded: the leak test counts this double's objects too)."""
        self._batch: list[int] | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def submit(self, job: Any, on_done: Any = None) -> int:
        with self._lock:
            job_id = next(self._ids)
            self.jobs[job_id] = (job, on_done)
            if self._batch is not None:
                self._batch.append(job_id)
        return job_id

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Records the ids of the jobs submitted inside each batch in ``batches`` (the last few)."""
        self._batch = []
        try:
            yield
        finally:
            self.batches.append(self._batch)
            self._batch = None

    def cancel(self, job_id: int) -> bool:
        self.cancelled.append(job_id)
        return True

    def finish_all(self) -> int:
        """Complete every job still open; returns how many."""
        with self._lock:
            open_jobs, self.jobs = self.jobs, {}
        for job_id, (job, on_done) in open_jobs.items():
            on_done(job_id, JobResult(job_id, True, value=reconstruct(job.inp, backend="hull"), timings=JobTimings()))
        return len(open_jobs)


@pytest.fixture(scope="module")
def scenes() -> list:
    return [render_tabletop_scene(SceneConfig(seed=s, num_objects=3)) for s in (0, 1)]


def _raw(scene: Any, noise_seed: int | None = None) -> RawFrame:
    """A synchronised frame of ``scene``; with ``noise_seed``, as an active stereo camera measures it (noise, holes,
    flying pixels: the project's sensor model), so that a static scene looks a little different in every frame."""
    header = Header(frame_id="camera_color_optical_frame")
    if noise_seed is not None:
        rgb, depth = apply_sensor(scene.rgb, scene.depth_m, scene.intrinsics, "active_stereo", seed=noise_seed)
        scene = dataclasses.replace(scene, rgb=rgb, depth_m=depth)
    colour, depth, info = scene_messages(scene, header)
    now = time.monotonic()
    return RawFrame(header, colour, depth, info, received=now, synced=now)


class Harness:
    def __init__(self, rate_hz: float, forget_after_s: float = 10.0) -> None:
        self.published: list[tuple[str, Any]] = []
        self.stats = NodeStats(lambda line: None, lambda: 60.0)
        self.pipeline = Pipeline(
            lambda topic, msg: self.published.append((topic, msg)), self.stats, logging.getLogger()
        )
        config = NodeConfig()
        config.max_segmentation_rate_hz = rate_hz
        config.forget_after_s = forget_after_s
        self.pipeline.configure(config)
        self.dispatcher = RecordingDispatcher()
        self.pipeline.start(self.dispatcher)

    def count(self, name: str) -> int:
        return int(self.stats.flat().get(f"count.{name}", 0))

    def feed(self, raw: RawFrame) -> None:
        """Hand over one frame and wait until the worker is done with it: skipped, or segmented, its objects
        submitted and its segmentation published (the last step)."""
        before = self.done()
        self.pipeline.inbox.put_frame(raw)
        self.wait(lambda: self.done() > before)

    def done(self) -> int:
        return self.count("frames_skipped_static") + sum(1 for topic, _ in self.published if topic == "segmentation")

    @staticmethod
    def wait(predicate: Any) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not predicate():
            assert time.monotonic() < deadline, "the worker thread did not get there"
            time.sleep(0.01)

    def note_worker_waits(self) -> None:
        """From now on ``published`` also gets ("worker waits", None) each time the worker asks for work: it has
        finished its last work item, down to the heap trim."""
        take = self.pipeline.inbox.take

        def noted_take() -> Any:
            self.published.append(("worker waits", None))
            return take()

        self.pipeline.inbox.take = noted_take  # the worker looks the method up on each call

    def idle_after_results(self, count: int) -> bool:
        """``count`` results published, the aggregate after them, and the worker back waiting for work (needs
        note_worker_waits). How the results are grouped into work items varies from run to run."""
        topics = [topic for topic, _ in self.published]
        if topics.count("reconstruction") != count or "markers" not in topics:
            return False
        last_markers = len(topics) - 1 - topics[::-1].index("markers")
        return last_markers > topics.index("reconstruction") and "worker waits" in topics[last_markers:]

    def reconstructions(self) -> list[Any]:
        return [deserialize_message(m, ObjectReconstruction) for t, m in self.published if t == "reconstruction"]


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Any:
    h = Harness(request.param)
    yield h
    h.pipeline.stop()


@pytest.mark.parametrize("harness", [0.01], indirect=True)  # one unchanged frame per 100 s: the rate limit holds
def test_a_frame_with_new_objects_passes_the_rate_limit_and_all_its_objects_go_at_once(harness, scenes) -> None:
    harness.feed(_raw(scenes[0], noise_seed=100))
    assert harness.count("frames_segmented") == 1
    first = dict(harness.dispatcher.jobs)
    assert len(first) == 3, "the three objects of the frame are submitted together, before any result"
    assert len({job.key for job, _ in first.values()}) == 3
    for seed in range(3):  # the same scene again (new sensor noise), within the rate limit: not segmented
        harness.feed(_raw(scenes[0], noise_seed=seed))
    assert harness.count("frames_skipped_static") == 3 and len(harness.dispatcher.jobs) == 3
    harness.feed(_raw(scenes[1], noise_seed=3))  # new objects, well within the rate limit's period
    assert harness.count("frames_segmented") == 2 and harness.count("frames_changed") == 1
    assert len(harness.dispatcher.jobs) > 3, "the new objects were submitted from the frame that brought them"


@pytest.mark.parametrize("harness", [0.01], indirect=True)
def test_a_frames_jobs_go_as_one_batch_sharing_its_colour_and_depth(harness, scenes) -> None:
    """The dispatcher gets one frame's jobs inside one batch (SupervisedDispatcher.batch sends them as one message,
    so the arrays they share travel once), and every job carries the frame's own colour and depth arrays, not
    copies (the dispatcher puts each array into Ray's object store once)."""
    harness.feed(_raw(scenes[0], noise_seed=100))
    jobs = [job for job, _ in harness.dispatcher.jobs.values()]
    assert list(harness.dispatcher.batches) == [sorted(harness.dispatcher.jobs)] and len(jobs) == 3
    assert all(job.inp.rgb is jobs[0].inp.rgb and job.inp.depth_m is jobs[0].inp.depth_m for job in jobs)
    assert len({id(job.inp.mask) for job in jobs}) == 3
    # The actors decimate to the node's face budget (the node's own simplification is the safety net).
    assert {job.max_faces for job in jobs} == {harness.pipeline.config.max_mesh_faces}
    harness.feed(_raw(scenes[0], noise_seed=1))  # nothing new: no job, no empty batch
    assert len(harness.dispatcher.batches) == 1


# Every frame segmented once the reconstructions are done: the object book decides alone.
@pytest.mark.parametrize("harness", [100.0], indirect=True)
def test_a_static_scene_segmented_again_and_again_is_never_reconstructed_again(harness, scenes) -> None:
    harness.feed(_raw(scenes[0], noise_seed=100))
    assert len(harness.dispatcher.jobs) == 3
    keys = sorted(int(job.key) for job, _ in harness.dispatcher.jobs.values())
    for seed in range(12):
        harness.feed(_raw(scenes[0], noise_seed=seed))
        if seed == 4:
            # While they ran, the unchanged (noisy) frames waited: segmenting them would take the actors' cores.
            assert harness.count("frames_segmented") == 1 and harness.count("frames_skipped_static") == 5
            assert harness.dispatcher.finish_all() == 3
            harness.wait(lambda: len(harness.reconstructions()) == 3)
    assert harness.count("frames_segmented") == 8
    assert harness.count("jobs_submitted") == 3 and harness.count("objects_reconstructed_again") == 0
    assert not harness.dispatcher.jobs and not harness.dispatcher.cancelled
    meshes = harness.reconstructions()
    assert sorted(m.object_id for m in meshes) == keys
    assert all(len(m.mesh.vertices) and len(m.mesh.triangles) for m in meshes)
    assert any(topic == "markers" for topic, _ in harness.published)


@pytest.mark.parametrize("harness", [0.01], indirect=True)
def test_the_worker_keeps_nothing_of_its_last_work_item_while_it_waits(harness, scenes) -> None:
    """Once the results are published the worker holds neither them nor their meshes until the next work item (it
    used to keep its last item's variables while blocked, so how many results it held depended on how they had been
    grouped into work items: the object-count test below then moved by tens of objects from run to run)."""
    harness.note_worker_waits()
    harness.feed(_raw(scenes[0], noise_seed=100))
    assert harness.dispatcher.finish_all() == 3
    harness.wait(lambda: harness.idle_after_results(3))
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, JobResult)]


@pytest.mark.parametrize("harness", [2.0], indirect=True)
def test_the_worker_hands_freed_heap_back_to_the_os_between_frames(harness, scenes) -> None:
    harness.pipeline.heap.period_s = 1e-6  # every frame (the node's default: every 10 s)
    for seed in range(2):
        harness.feed(_raw(scenes[0], noise_seed=seed))
    harness.wait(lambda: harness.count("heap_trims") >= 2)
    harness.pipeline.heap.period_s = 0.0  # 0 = never
    trims = harness.count("heap_trims")
    for seed in range(2, 4):
        harness.feed(_raw(scenes[0], noise_seed=seed))
    assert harness.count("heap_trims") == trims


def test_the_static_rate_waits_for_running_reconstructions_but_not_past_half_of_forget_after(scenes) -> None:
    """An unchanged frame due at the static rate is not segmented while the node's reconstructions run, unless
    the last segmentation is older than forget_after_s / 2 (tracks must stay fresh); a changed frame always is."""
    frame, other = _raw(scenes[0], noise_seed=100), _raw(scenes[1], noise_seed=3)
    waits = Harness(100.0, forget_after_s=3600.0)  # may wait half an hour: as long as the jobs run
    fresh = Harness(100.0, forget_after_s=0.02)  # never waits longer than the static rate's 10 ms period
    try:
        for harness in (waits, fresh):
            harness.feed(dataclasses.replace(frame))
            assert len(harness.dispatcher.jobs) == 3
            time.sleep(0.05)  # the static rate's next frame is due
            harness.feed(dataclasses.replace(frame))
        assert waits.count("frames_segmented") == 1 and waits.count("frames_skipped_static") == 1
        assert fresh.count("frames_segmented") == 2 and len(fresh.dispatcher.jobs) == 3
        waits.feed(dataclasses.replace(other))  # new objects: at once, jobs running or not
        assert waits.count("frames_segmented") == 2 and waits.count("frames_changed") == 1
        waits.dispatcher.finish_all()
        waits.wait(lambda: not waits.pipeline.book.jobs_running())
        time.sleep(0.05)
        waits.feed(dataclasses.replace(other))  # nothing runs: the static rate applies again
        assert waits.count("frames_segmented") == 3
    finally:
        waits.pipeline.stop()
        fresh.pipeline.stop()


@pytest.mark.parametrize("harness", [2.0], indirect=True)
def test_the_frame_path_keeps_nothing_per_frame_or_per_job(harness, scenes) -> None:
    """Scenes in turn, every job finished and published, like the 10-minute soak: after a warm-up cycle, further
    cycles leave no Python objects behind (no per-frame or per-job history, no tickets, no growing caches)."""
    harness.pipeline.book.policy.forget_after_s = 0.0  # an object gone from the frame leaves the book at once
    # A trim after every frame, so the first one (its counters are created then) falls in the warm-up cycle and not,
    # on a slow machine, in a counted one (the node's default is every 10 s).
    harness.pipeline.heap.period_s = 1e-6
    harness.note_worker_waits()

    def cycle(seed: int) -> int:
        for scene in scenes:
            harness.published = []
            harness.feed(_raw(scene, noise_seed=seed))
            assert harness.dispatcher.finish_all() == 3
            harness.wait(lambda: harness.idle_after_results(3))
        harness.published = []
        gc.collect()
        return len(gc.get_objects())

    cycle(0)
    warm = cycle(1)
    counts = [cycle(seed) for seed in range(2, 6)]
    # One cycle creates tens of thousands of objects (messages, masks, meshes); a per-job leak of one object per
    # job would add 24 over these 4 cycles, a kept mesh or message thousands.
    assert max(counts) - warm < 20, f"objects after each cycle: {warm} then {counts}"
    assert harness.count("jobs_completed") == 6 * 2 * 3


def test_the_segmenter_is_warmed_up_once_per_configure() -> None:
    """Activation warms the configured segmenter up; a second activation (after a deactivation) finds it warm and
    does not pay the warm-up again; a new configure builds a new segmenter, warmed once more."""
    pipeline = Pipeline(lambda topic, msg: None, NodeStats(lambda line: None, lambda: 60.0), logging.getLogger())
    segments: list[Any] = []

    def configure() -> None:
        pipeline.configure(NodeConfig(), warm_up=False)
        segment = pipeline._segmenter.segment
        pipeline._segmenter.segment = lambda *a, **k: segments.append(1) or segment(*a, **k)

    configure()
    pipeline.warm_up()
    pipeline.warm_up()
    assert len(segments) == 1
    pipeline.cleanup()
    configure()
    pipeline.warm_up()
    assert len(segments) == 2
