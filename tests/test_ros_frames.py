"""Frame decoding and validation (no rclpy graph, only the message types): every bad frame raises FrameError with
the reason that /diagnostics counts; the worker's inbox; the /diagnostics status rules."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("sensor_msgs")

from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from z123_ros.camera import CameraIntrinsics  # noqa: E402
from z123_ros.errors import FrameError, InputError  # noqa: E402
from z123_ros.ros import conversions as conv  # noqa: E402
from z123_ros.ros.diagnostics import NodeStats, pipeline_status  # noqa: E402
from z123_ros.ros.frames import RawFrame, check_message, decode_frame, frame_changed  # noqa: E402
from z123_ros.ros.jobs import RECONSTRUCTION, JobTicket, WorkerInbox  # noqa: E402

W, H = 32, 24
HEADER = Header(frame_id="cam")


def _frame(rgb=None, depth=None, info=None, depth_m=None) -> RawFrame:
    rgb = np.zeros((H, W, 3), np.uint8) if rgb is None else rgb
    depth_m = np.full((H, W), 0.8, np.float32) if depth_m is None else depth_m
    colour = conv.numpy_to_image(rgb, "rgb8", HEADER)
    depth = conv.numpy_to_image(depth_m, "32FC1", HEADER) if depth is None else depth
    info = conv.intrinsics_to_camera_info(CameraIntrinsics.from_fov(60.0, W, H), HEADER) if info is None else info
    return RawFrame(header=HEADER, colour=colour, depth=depth, info=info, received=12.5)


def _decode(frame: RawFrame, max_pixels: int = 10_000, min_valid: float = 0.05):
    return decode_frame(frame, max_image_pixels=max_pixels, min_valid_depth_fraction=min_valid)


def test_good_frame_decodes_to_arrays() -> None:
    rgb = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    depth_m = np.full((H, W), 0.8, np.float32)
    depth_m[0] = 0.0  # invalid: becomes NaN
    out = _decode(_frame(rgb=rgb, depth_m=depth_m))
    np.testing.assert_array_equal(out.rgb, rgb)
    assert np.isnan(out.depth_m[0]).all() and np.allclose(out.depth_m[1:], 0.8)
    assert (out.intrinsics.width, out.intrinsics.height) == (W, H)
    assert out.received == 12.5 and out.header.frame_id == "cam"


def _reason(fn) -> str:
    with pytest.raises(FrameError) as info:
        fn()
    assert isinstance(info.value, InputError) and str(info.value)
    return info.value.reason


def test_each_bad_frame_names_its_reason() -> None:
    zero_focal = conv.intrinsics_to_camera_info(CameraIntrinsics.from_fov(60.0, W, H), HEADER)
    zero_focal.k = [0.0] * 9
    other_size = conv.intrinsics_to_camera_info(CameraIntrinsics.from_fov(60.0, 2 * W, 2 * H), HEADER)
    truncated = conv.numpy_to_image(np.full((H, W), 0.8, np.float32), "32FC1", HEADER)
    truncated.data = bytes(truncated.data)[: -truncated.step]
    small_depth = conv.numpy_to_image(np.full((H // 2, W // 2), 0.8, np.float32), "32FC1", HEADER)
    assert _reason(lambda: _decode(_frame(info=zero_focal))) == "bad_camera_info"
    assert _reason(lambda: _decode(_frame(), max_pixels=W * H - 1)) == "image_too_large"
    assert _reason(lambda: _decode(_frame(info=other_size))) == "size_mismatch"
    assert _reason(lambda: _decode(_frame(depth=small_depth))) == "size_mismatch"
    assert _reason(lambda: _decode(_frame(depth=truncated))) == "bad_depth_image"
    assert _reason(lambda: _decode(_frame(depth_m=np.full((H, W), np.nan, np.float32)))) == "invalid_depth"
    # 4 % valid pixels against a 5 % floor.
    sparse = np.full((H, W), np.nan, np.float32)
    sparse.flat[: int(0.04 * W * H)] = 1.0
    assert _reason(lambda: _decode(_frame(depth_m=sparse))) == "invalid_depth"
    assert _decode(_frame(depth_m=sparse), min_valid=0.03).depth_m is not None


def test_incoming_messages_are_checked_per_stream() -> None:
    frame = _frame()
    for stream, msg in (("colour", frame.colour), ("depth", frame.depth), ("info", frame.info)):
        check_message(stream, msg)
    yuv = conv.numpy_to_image(np.zeros((H, W, 3), np.uint8), "rgb8", HEADER)
    yuv.encoding = "yuv422"
    assert _reason(lambda: check_message("colour", yuv)) == "bad_colour_image"
    assert _reason(lambda: check_message("depth", frame.colour)) == "bad_depth_image"
    bad_info = conv.intrinsics_to_camera_info(CameraIntrinsics.from_fov(60.0, W, H), HEADER)
    bad_info.k = [0.0] * 9
    assert _reason(lambda: check_message("info", bad_info)) == "bad_camera_info"


def test_a_distorted_camera_is_undistorted_and_an_unknown_model_refused() -> None:
    """image_raw with its calibration's distortion (CameraInfo.d) comes out of the decoder as the pinhole image:
    the frame a distorted lens records of a depth step is moved back to where the pinhole model puts it."""
    cam = CameraIntrinsics(30.0, 30.0, (W - 1) / 2, (H - 1) / 2, W, H)
    info = conv.intrinsics_to_camera_info(cam, HEADER)
    depth_m = np.full((H, W), 1.0, np.float32)
    depth_m[:, W // 2 + 4 :] = 0.6
    plain = _decode(_frame(depth_m=depth_m, info=info))
    np.testing.assert_array_equal(plain.depth_m, depth_m)  # zero d: untouched
    info.d = [0.4, 0.0, 0.0, 0.0, 0.0]  # strong barrel distortion
    undistorted = _decode(_frame(depth_m=depth_m, info=info))
    assert set(np.unique(undistorted.depth_m[np.isfinite(undistorted.depth_m)]).tolist()) <= {
        np.float32(0.6).item(),
        np.float32(1.0).item(),
    }
    assert not np.array_equal(undistorted.depth_m, depth_m)
    check_message("info", info)
    info.distortion_model = "some_vendor_model"
    assert _reason(lambda: check_message("info", info)) == "bad_camera_info"
    assert _reason(lambda: _decode(_frame(depth_m=depth_m, info=info))) == "bad_camera_info"


def _ticket(object_id: int = 1) -> JobTicket:
    return JobTicket(kind=RECONSTRUCTION, object_id=object_id, header=HEADER, received=0.0)


def test_inbox_keeps_the_latest_frame_and_hands_results_over() -> None:
    inbox = WorkerInbox()
    inbox.open()
    first, second = _frame(), _frame()
    assert inbox.put_frame(first) is False
    assert inbox.put_frame(second) is True, "an unprocessed frame is replaced"
    ticket = _ticket()
    inbox.register(41, ticket)
    inbox.on_done(ticket)(41, "outcome")
    results, frame = inbox.take()
    assert frame is second and results == [(ticket, 41, "outcome")] and frame.taken > 0
    assert inbox.claim(41) is ticket and inbox.claim(41) is None
    inbox.register(42, ticket)
    inbox.forget(42)
    assert inbox.claim(42) is None, "a cancelled job's result is not published"
    assert inbox.depths() == {"queue.pending_frame": 0, "queue.results": 0, "jobs_in_flight": 0}


def test_change_check_sees_an_object_and_ignores_sensor_noise() -> None:
    rng = np.random.default_rng(1)
    base = np.full((96, 128), 1.0, np.float32)
    previous = _decode(_frame96(base), max_pixels=10**6)
    noisy = base + rng.normal(0.0, 0.003, base.shape).astype(np.float32)  # 3 mm at 1 m: a good RGB-D sensor
    noisy[rng.random(base.shape) < 0.02] = np.nan  # pixels dropping out are not a change
    assert not frame_changed(previous, _decode(_frame96(noisy), max_pixels=10**6), min_changed_px=100)
    speckle = base.copy()
    speckle[rng.random(base.shape) < 0.03] = 0.8  # flying pixels: 3 % of the pixels, 20 cm off, scattered
    speckle[:, 32] = 0.9  # one column of edge jitter
    assert not frame_changed(previous, _decode(_frame96(speckle), max_pixels=10**6), min_changed_px=100)
    with_object = base.copy()
    with_object[40:52, 60:72] = 0.9  # a 12 x 12 px object 10 cm in front of the table
    assert frame_changed(previous, _decode(_frame96(with_object), max_pixels=10**6), min_changed_px=100)
    assert not frame_changed(previous, _decode(_frame96(with_object), max_pixels=10**6), min_changed_px=400)


def _frame96(depth_m: np.ndarray) -> RawFrame:
    h, w = depth_m.shape
    rgb = np.zeros((h, w, 3), np.uint8)
    info = conv.intrinsics_to_camera_info(CameraIntrinsics.from_fov(60.0, w, h), HEADER)
    return _frame(rgb=rgb, depth_m=depth_m, info=info)


def test_inbox_stop_wakes_a_waiting_worker() -> None:
    inbox = WorkerInbox()
    inbox.open()
    got: list = []
    worker = threading.Thread(target=lambda: got.append(inbox.take()))
    worker.start()
    inbox.stop()
    worker.join(timeout=30)
    assert not worker.is_alive() and got == [None]


def test_pipeline_status_levels() -> None:
    ready = {"dispatch.state": "ready", "drops_total": 3}
    assert pipeline_status(ready, True, "running", 3) == (DiagnosticStatus.OK, "running")
    assert pipeline_status(ready, True, "running", 2)[0] == DiagnosticStatus.WARN
    degraded = {"dispatch.state": "degraded", "dispatch.state_reason": "cluster lost", "drops_total": 9}
    assert pipeline_status(degraded, True, "running", 0) == (
        DiagnosticStatus.ERROR,
        "dispatcher degraded: cluster lost",
    )
    connecting = {"dispatch.state": "connecting", "dispatch.state_reason": "starting", "drops_total": 0}
    assert pipeline_status(connecting, True, "running", 0) == (DiagnosticStatus.WARN, "dispatcher connecting: starting")
    assert pipeline_status({}, False, "failed: no ray", 0) == (DiagnosticStatus.ERROR, "failed: no ray")
    assert pipeline_status({}, False, "configured", 0) == (DiagnosticStatus.OK, "configured")


def test_drops_are_counted_and_warnings_throttled_per_reason() -> None:
    warnings: list[str] = []
    stats = NodeStats(warnings.append, lambda: 3600.0)
    for _ in range(3):
        stats.drop("invalid_depth", "no depth")
    stats.drop("size_mismatch", "small")
    stats.count("frames_segmented", 2)
    stats.latency("segmentation", 0.25)
    flat = stats.flat()
    assert flat["drop.invalid_depth"] == 3 and flat["drop.size_mismatch"] == 1 and flat["drops_total"] == 4
    assert flat["count.frames_segmented"] == 2 and flat["latency_s.segmentation.p50"] == 0.25
    assert len(warnings) == 2 and "invalid_depth, 1 so far" in warnings[0]


def test_ticket_breaks_the_latency_into_stages() -> None:
    from z123_ros.dispatch import JobTimings

    marks = {"stamped": 9.97, "received": 10.0, "synced": 10.02, "taken": 10.05, "decoded": 10.06}
    marks |= {"segmented_start": 10.061, "segmented": 10.1, "checked": 10.101, "submitted": 10.111}
    ticket = JobTicket(kind=RECONSTRUCTION, object_id=1, header=HEADER, received=10.0, marks=marks)
    # The isolated dispatcher: its process measured 0.2 + 0.4 s of the 0.65 s the node waited for the result.
    timings = JobTimings(queue_s=0.2, run_s=0.4, total_s=0.65, worker_s=0.35)
    stages = ticket.stages(timings, handled_at=10.111 + 0.65 + 0.01)
    expected = {
        "camera_to_node": 0.03,
        "sync_wait": 0.02,
        "queue_wait": 0.03,
        "decode": 0.01,
        "frame_check": 0.001,
        "segmentation": 0.039,
        "change_detection": 0.001,
        "submit": 0.01,
        "wait_for_actor": 0.2,
        "reconstruction": 0.35,
        "ray_transfer": 0.05,
        "dispatch_transfer": 0.05,
        "result_handoff": 0.01,
    }
    assert list(stages) == list(expected)
    for name, seconds in expected.items():
        assert stages[name] == pytest.approx(seconds, abs=1e-9), name
    assert sum(stages.values()) == pytest.approx(10.771 - 9.97), "the stages add up to the stamp-to-handling time"
