"""Dispatch: heavy jobs (reconstruction, novel views) run in Ray actors that own the models.

Ray is imported only in this package (and only when a Dispatcher starts). With no address an embedded local Ray is
started and stopped with the dispatcher; with ``DispatchConfig.address`` it joins a cluster (see ray_cluster/README.md).
The node uses :class:`SupervisedDispatcher` (``make_dispatcher``): the same interface, with the Ray driver in a
supervised child process, so that Ray's death never ends the node. The worker kinds (which actors exist, which jobs
they run) are one registry, :mod:`z123_ros.dispatch.kinds`; the diagnostic ones live in
:mod:`z123_ros.dispatch.diagnostics`.

    from z123_ros.dispatch import DispatchConfig, Dispatcher, ReconstructionJob

    with Dispatcher(DispatchConfig()) as dispatcher:
        dispatcher.submit(ReconstructionJob(inp=inp, key="object-3"), on_done=lambda job_id, result: ...)
"""

from z123_ros.dispatch.config import DispatchConfig
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
from z123_ros.dispatch.kinds import (
    WorkerKind,
    get_kind,
    kind_names,
    make_worker,
    register_kind,
    unregister_kind,
)
from z123_ros.dispatch.pool import WorkerPoolConfig
from z123_ros.dispatch.supervisor import DispatchProcess, SupervisedDispatcher, make_dispatcher
from z123_ros.dispatch.workers import Job, NovelViewsJob, ReconstructionJob, WorkerReply

__all__ = [
    "DispatchConfig",
    "DispatchProcess",
    "DispatchStats",
    "Dispatcher",
    "DispatcherState",
    "Job",
    "JobFailedError",
    "JobRejectedError",
    "JobResult",
    "JobTimings",
    "NovelViewsJob",
    "ReconstructionJob",
    "SupervisedDispatcher",
    "WorkerInfo",
    "WorkerKind",
    "WorkerPoolConfig",
    "WorkerReply",
    "get_kind",
    "kind_names",
    "make_dispatcher",
    "make_worker",
    "probe_tcp",
    "register_kind",
    "unregister_kind",
]
