"""A 3-node Ray cluster on this machine: a head and two worker nodes on 127.0.0.1 with distinct custom resources.

Pools are placed by resource (``WorkerPoolConfig.resources`` reaching the actors' ``.options()``), and a worker node
killed under a running job does not lose the job: Ray restarts the actor on the other node that offers the pool's
resource and the dispatcher re-runs the job there. Never `ray stop`: only the nodes started here are killed.
"""

from __future__ import annotations

import time

import pytest
from _dispatch_helpers import RayHead, Results, free_port, record_reliability, wait_for

from z123_ros.dispatch import DispatchConfig, Dispatcher, DispatcherState, WorkerPoolConfig
from z123_ros.dispatch.diagnostics import EchoJob
from z123_ros.dispatch.dispatcher import actor_options

pytestmark = pytest.mark.ray


def test_pool_resources_and_accelerator_type_reach_the_actor_options() -> None:
    pool = WorkerPoolConfig(num_actors=1, num_cpus=0.5, resources={"recon_node": 1.0}, accelerator_type="L4")
    options = actor_options(pool, max_restarts=3)
    assert options["resources"] == {"recon_node": 1.0} and options["accelerator_type"] == "L4"
    assert options["num_cpus"] == 0.5 and options["max_restarts"] == 3
    assert "resources" not in actor_options(WorkerPoolConfig(num_actors=1), 0)


def _node_of(pid: int, nodes: dict[str, RayHead]) -> str:
    return next((name for name, node in nodes.items() if pid in node.pids()), "?")


@pytest.mark.slow  # three `ray start` nodes plus a node death: 1-3 minutes on the shared 2-core machine
def test_three_nodes_place_by_resource_and_a_killed_worker_node_loses_no_job() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
    head = RayHead(free_port(), num_cpus=0)  # the head schedules nothing: every actor lives on a worker node
    nodes: dict[str, RayHead] = {}
    dispatcher = None
    try:
        head.start()
        for name in ("b", "c"):
            nodes[name] = RayHead(0, num_cpus=1, join=head.address, resources={"pool_any": 1, f"node_{name}": 1})
            nodes[name].start()
        config = DispatchConfig(
            address=head.address,
            pools={
                "echo": WorkerPoolConfig(num_actors=1, num_cpus=0.25, resources={"pool_any": 1}),
                "cpu_burn": WorkerPoolConfig(num_actors=1, num_cpus=0.25, resources={"node_c": 1}),
            },
            retries_on_worker_death=1,
            job_timeout_s=300.0,
        )
        dispatcher = Dispatcher(config)
        assert dispatcher.start(wait_s=240.0) is DispatcherState.READY, dispatcher.state_reason
        assert dispatcher.wait_ready(240.0), dispatcher.workers()
        pids = {w.kind: w.pid for w in dispatcher.workers()}
        assert _node_of(pids["cpu_burn"], nodes) == "c"  # only node c offers node_c
        echo_node = _node_of(pids["echo"], nodes)
        assert echo_node in ("b", "c")

        results = Results()
        job_id = dispatcher.submit(EchoJob(data="survives", sleep_s=5.0), on_done=results)
        wait_for(lambda: dispatcher.stats().running == 1, 60.0, "the job to start")
        t_kill = time.monotonic()
        nodes[echo_node].stop()
        result = results.wait(job_id, 300.0)
        recovery = time.monotonic() - t_kill
        assert result.ok and result.value == "survives", (result.reason, result.error)
        assert result.attempts == 2
        survivor = "c" if echo_node == "b" else "b"
        assert _node_of(result.worker_pid, nodes) == survivor
        record_reliability("cluster: worker node killed mid-job", job_done_s=round(recovery, 1), job_sleep_s=5.0)
    finally:
        if dispatcher is not None:
            dispatcher.shutdown()
        for node in nodes.values():
            node.cleanup()
        head.cleanup()
