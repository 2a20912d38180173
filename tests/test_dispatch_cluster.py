"""Joining a Ray cluster by address: a second process runs `ray start --head` on 127.0.0.1.

The dispatcher starts before the head exists (DEGRADED, reconnecting with backoff), joins when the head appears, runs
jobs on the head's workers, and goes DEGRADED again, with in-flight jobs failed, when the head is killed.
"""

from __future__ import annotations

import os

import pytest
from _dispatch_helpers import RayHead, Results, free_port, wait_for

from z123_ros.dispatch import DispatchConfig, Dispatcher, DispatcherState, JobRejectedError, WorkerPoolConfig
from z123_ros.dispatch.diagnostics import EchoJob

pytestmark = pytest.mark.ray


def test_degraded_until_a_head_appears_then_joined_by_address_then_lost() -> None:
    import ray

    if ray.is_initialized():  # a previous test module's Ray must not be mistaken for the cluster
        ray.shutdown()
    port = free_port()
    head = RayHead(port)
    config = DispatchConfig(
        address=head.address,
        pools={"echo": WorkerPoolConfig(num_actors=1, num_cpus=0.5)},
        reconnect_backoff_s=0.2,
        reconnect_backoff_max_s=0.5,
        health_check_period_s=0.5,
    )
    dispatcher = Dispatcher(config)
    results = Results()
    try:
        # 1. Nothing listens yet: degraded, says so, rejects jobs, keeps trying.
        assert dispatcher.start(wait_s=10.0) is DispatcherState.DEGRADED
        assert head.address in dispatcher.state_reason
        with pytest.raises(JobRejectedError) as info:
            dispatcher.submit(EchoJob(data=0))
        assert info.value.reason == "degraded"

        # 2. The head appears: the dispatcher joins it by address and its actor runs on the head's node.
        head.start()
        wait_for(lambda: dispatcher.state is DispatcherState.READY, 120.0, "the dispatcher to join the head")
        assert dispatcher.wait_ready(120.0), dispatcher.workers()
        assert ray.is_initialized() and f":{port}" in ray.get_runtime_context().gcs_address
        result = results.wait(dispatcher.submit(EchoJob(data="over the cluster"), on_done=results))
        assert result.ok and result.value == "over the cluster" and result.worker_pid != os.getpid()
        assert f"joined {head.address}" == dispatcher.state_reason

        # 3. The head dies under a running job: the job fails with cluster_lost, the node process lives on.
        job_id = dispatcher.submit(EchoJob(data=1, sleep_s=30.0), on_done=results)
        wait_for(lambda: dispatcher.stats().running == 1, 30.0, "the long job to start")
        head.stop()
        lost = results.wait(job_id, timeout_s=60.0)
        assert not lost.ok and lost.reason == "cluster_lost"
        assert dispatcher.state is DispatcherState.DEGRADED and "unreachable" in dispatcher.state_reason
        with pytest.raises(JobRejectedError):
            dispatcher.submit(EchoJob(data=2))
        assert dispatcher.stats().failed_by_reason["cluster_lost"] == 1
    finally:
        dispatcher.shutdown()
        head.cleanup()
    assert not ray.is_initialized()


@pytest.mark.slow
def test_reconnects_when_a_lost_head_comes_back() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    head = RayHead(free_port())
    config = DispatchConfig(
        address=head.address,
        pools={"echo": WorkerPoolConfig(num_actors=1, num_cpus=0.5)},
        reconnect_backoff_s=0.2,
        reconnect_backoff_max_s=1.0,
        health_check_period_s=0.5,
    )
    dispatcher = Dispatcher(config)
    results = Results()
    try:
        head.start()
        assert dispatcher.start(wait_s=120.0) is DispatcherState.READY, dispatcher.state_reason
        head.stop()
        wait_for(lambda: dispatcher.state is DispatcherState.DEGRADED, 30.0, "the loss to be noticed")
        head.start()  # same port, a new cluster
        wait_for(lambda: dispatcher.state is DispatcherState.READY, 120.0, "the dispatcher to reconnect")
        assert dispatcher.wait_ready(120.0), dispatcher.workers()
        result = results.wait(dispatcher.submit(EchoJob(data="back"), on_done=results))
        assert result.ok and result.value == "back"
    finally:
        dispatcher.shutdown()
        head.cleanup()
    assert not ray.is_initialized()
