"""Dispatch: heavy jobs (reconstruction, novel views) run in Ray actors that own the models.

Ray is imported only in this package (and only when a Dispatcher starts). With no address an embedded local Ray is
started and stopped with the dispatcher; with ``DispatchConfig.address`` it joins a cluster (see ray_cluster/README.md).
The node uses :class:`SupervisedDispatcher` (``make_dispatcher``): the same interface, with the Ray driver in a
supervised child process, so that Ray's death never ends the node.

    from z123_ros.dispatch import DispatchConfig, Dispatcher, ReconstructionJob

    with Dispatcher(DispatchConfig()) as dispatcher:
        dispatcher.submit(ReconstructionJob(inp=inp, key="object-3"), on_done=lambda job_id, result: ...)
"""

from z123_ros.dispatch.config import KINDS, DispatchConfig, WorkerPoolConfig
from z123_ros.dispatch.dispatcher import (
    Dispatcher,
    DispatcherState,
    DispatchStats,
    JobFailedError,
    JobRejectedError,
    JobResult,
    JobTimings,
    WorkerInfo,
    probe_tcp,
)
from z123_ros.dispatch.supervisor import SupervisedDispatcher, make_dispatcher
from z123_ros.dispatch.workers import (
    WORKER_KINDS,
    CpuBurnJob,
    EchoJob,
    Job,
    NovelViewsJob,
    ReconstructionJob,
    WorkerReply,
    cpu_burn,
    make_worker,
)

__all__ = [
    "KINDS",
    "WORKER_KINDS",
    "CpuBurnJob",
    "DispatchConfig",
    "DispatchStats",
    "Dispatcher",
    "DispatcherState",
    "EchoJob",
    "Job",
    "JobFailedError",
    "JobRejectedError",
    "JobResult",
    "JobTimings",
    "NovelViewsJob",
    "ReconstructionJob",
    "SupervisedDispatcher",
    "WorkerInfo",
    "WorkerPoolConfig",
    "WorkerReply",
    "cpu_burn",
    "make_dispatcher",
    "make_worker",
    "probe_tcp",
]
