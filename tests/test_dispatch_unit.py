"""Dispatch layer without a Ray cluster: configuration, jobs and workers in process, rejections, degraded start."""

from __future__ import annotations

import dataclasses
import errno
import gc
import hashlib
import json
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from _dispatch_helpers import ball_input, free_port

from z123_ros import plugins
from z123_ros.dispatch import (
    DispatchConfig,
    Dispatcher,
    DispatcherState,
    DispatchStats,
    JobFailedError,
    JobRejectedError,
    JobResult,
    NovelViewsJob,
    ReconstructionJob,
    WorkerKind,
    WorkerPoolConfig,
    get_kind,
    kind_names,
    make_worker,
    probe_tcp,
    raylet_agents,
    register_kind,
)
from z123_ros.dispatch import kinds as kinds_module
from z123_ros.dispatch.addons import ADDON_LIBRARIES, addons_for_loaded_libraries, in_ray_worker
from z123_ros.dispatch.diagnostics import CpuBurnJob, EchoJob, EchoWorker, cpu_burn
from z123_ros.dispatch.dispatcher import _apply_ray_environment
from z123_ros.dispatch.head import (
    PORT_POLL_MS,
    SKIPPABLE,
    _lean_node_class,
    head_services_to_skip,
    lean_head,
    loopback_node,
    wait_for_registration,
)
from z123_ros.dispatch.host import WorkerHost
from z123_ros.dispatch.timeline import breakdown, process_started_at
from z123_ros.errors import ConfigError, DispatchError


def test_default_pools_are_the_registered_production_kinds() -> None:
    assert kind_names()[:2] == ("reconstruction", "novel_views")
    assert {"echo", "cpu_burn"} <= set(kind_names())  # this module imported the diagnostics
    config = DispatchConfig()
    assert list(config.pools) == [k for k in kind_names() if not get_kind(k).diagnostic]
    assert "echo" not in config.pools and "cpu_burn" not in config.pools
    assert config.embedded and config.pool("reconstruction").num_actors == 1
    assert config.pool("echo").num_actors == 0  # registered, not configured: no actors
    assert config.pools["reconstruction"] is not DispatchConfig().pools["reconstruction"]  # copies, never shared
    with pytest.raises(ConfigError, match="unknown worker kind 'teleport'"):
        config.pool("teleport")
    with pytest.raises(ConfigError, match="unknown worker kind 'teleport'"):
        DispatchConfig(pools={"teleport": WorkerPoolConfig(1)}).validate()


def test_register_kind_refuses_a_mismatched_or_duplicate_kind() -> None:
    with pytest.raises(ConfigError, match="has kind 'echo'"):
        register_kind(WorkerKind("mirror", EchoWorker, EchoJob))
    with pytest.raises(ConfigError, match="already registered"):
        register_kind(WorkerKind("echo", EchoWorker, EchoJob))
    with pytest.raises(ConfigError, match="identifier"):
        register_kind(WorkerKind("not a name", EchoWorker, EchoJob))


def test_a_missing_worker_module_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kinds_module.PLUGINS_ENV, "no_such_worker_module")
    try:
        with pytest.raises(ConfigError, match="Z123_WORKER_MODULES: cannot import worker kind module"):
            get_kind("reconstruction")
    finally:
        plugins.forget(kinds_module.PLUGINS_ENV, "no_such_worker_module")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"job_timeout_s": 0.0}, "job_timeout_s"),
        ({"reconnect_backoff_s": 5.0, "reconnect_backoff_max_s": 1.0}, "reconnect_backoff_max_s"),
        ({"address": "nohostport"}, "address"),
        ({"pools": {"reconstruction": WorkerPoolConfig(num_actors=-1)}}, "reconstruction.num_actors"),
        ({"pools": {"echo": WorkerPoolConfig(num_actors=1, num_gpus=1.5)}}, "echo.num_gpus"),
        ({"pools": {"echo": WorkerPoolConfig(num_actors=1, dtype="fp8")}}, "echo.dtype"),
        ({"pools": {"reconstruction": WorkerPoolConfig(num_actors=0)}}, "num_actors = 0"),
        ({"pools": {}}, "num_actors = 0"),
        ({"object_store_memory_mb": 8}, "object_store_memory_mb"),
        ({"auth_mode": "none"}, "auth_mode"),
        ({"worker_niceness": -1}, "worker_niceness"),
        ({"dashboard_port": 0}, "dashboard_port"),
        ({"connect_retry_ms": 5}, "connect_retry_ms"),
    ],
)
def test_config_validation_names_the_bad_field(changes: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        Dispatcher(DispatchConfig(**changes))


def test_fractional_gpu_is_valid() -> None:
    DispatchConfig(pools={"novel_views": WorkerPoolConfig(num_actors=2, num_gpus=0.5)}).validate()


def test_cpu_burn_is_a_deterministic_hash_chain() -> None:
    expected = (7).to_bytes(8, "little", signed=True)
    for _ in range(3):
        expected = hashlib.sha256(expected).digest()
    assert cpu_burn(3, seed=7) == expected.hex()
    assert make_worker("cpu_burn")(CpuBurnJob(rounds=3, seed=7)) == expected.hex()
    assert cpu_burn(3, seed=8) != cpu_burn(3, seed=7)


def test_rays_serialization_addons_wait_for_their_libraries(monkeypatch: pytest.MonkeyPatch) -> None:
    """In the dispatch process and the actors, Ray's add-ons (which import pydantic and pyarrow, 0.1 CPU-s per
    process) apply only once one of their libraries is loaded; the replacement is made once."""
    from ray.util import serialization_addons

    contexts: list[str] = []
    monkeypatch.setattr(serialization_addons, "apply", contexts.append)
    for name in ADDON_LIBRARIES:
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert addons_for_loaded_libraries()
    assert not addons_for_loaded_libraries(), "already replaced"
    serialization_addons.apply("context without the libraries")
    assert contexts == []
    monkeypatch.setitem(sys.modules, "pyarrow", types.ModuleType("pyarrow"))
    serialization_addons.apply("context of a process that loaded pyarrow")
    assert contexts == ["context of a process that loaded pyarrow"]
    assert not in_ray_worker(), "the test process is no Ray worker: host.py leaves its Ray alone"


def test_reconstruction_warm_up_runs_no_reconstruction(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building the reconstruction worker imports the backends' stack; a reconstruction of a synthetic box at
    warm-up (0.12-0.16 CPU-s per actor, both actors at once during the node's start) made the first real job no
    faster, so warm-up runs none."""
    import z123_ros.reconstruction
    import z123_ros.reconstruction.api as api

    runs: list[object] = []
    # The worker calls it through the package's lazy name. The package first: its lazy name, resolved after api's
    # was patched, would cache the stand-in as the value to restore (later tests' reconstructions returned None).
    for module in (z123_ros.reconstruction, api):
        monkeypatch.setattr(module, "reconstruct", lambda *args, **kwargs: runs.append(args))
    host = WorkerHost(get_kind("reconstruction"), WorkerPoolConfig(num_actors=1))
    reply = host.warmup()
    assert reply.ok and runs == []


def test_a_built_reconstruction_worker_has_imported_what_its_first_job_needs() -> None:
    """What the warm-up relies on, in a fresh interpreter (this one's modules depend on the tests run before): after
    WorkerHost.warmup() the depth backend's stack is imported, so the first job does not pay for it."""
    code = (
        "import sys\n"
        "from z123_ros.dispatch.host import WorkerHost\n"
        "from z123_ros.dispatch.kinds import get_kind\n"
        "from z123_ros.dispatch.pool import WorkerPoolConfig\n"
        "before = {m for m in ('trimesh', 'skimage.measure') if m in sys.modules}\n"
        "assert WorkerHost(get_kind('reconstruction'), WorkerPoolConfig(num_actors=1)).warmup().ok\n"
        "print(sorted(before), sorted(m for m in ('trimesh', 'skimage.measure') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split("\n")[-2] == "[] ['skimage.measure', 'trimesh']", out.stdout + out.stderr


def test_worker_host_reports_job_errors_with_their_reason() -> None:
    host = WorkerHost(get_kind("echo"), WorkerPoolConfig(num_actors=1))
    assert host.warmup().ok
    crop = np.arange(16, dtype=np.uint8).reshape(4, 4)
    reply = host.run(EchoJob(data=crop))
    assert reply.ok and np.array_equal(reply.value, crop) and reply.pid > 0
    # A reconstruction job with a malformed input: the worker's InputError travels back as its reason, not a raise.
    host = WorkerHost(get_kind("reconstruction"), WorkerPoolConfig(num_actors=1, warm_up=False))
    reply = host.run(ReconstructionJob(inp=None))
    assert not reply.ok and reply.reason in ("bad_input", "job_error") and reply.message


def test_reconstruction_worker_decimates_to_the_jobs_max_faces() -> None:
    """The node's face budget is met in the actor (off the node's process); without one the mesh is the backend's."""
    from z123_ros.reconstruction import reconstruct
    from z123_ros.reconstruction.simplify import simplify_result

    host = WorkerHost(get_kind("reconstruction"), WorkerPoolConfig(num_actors=1, warm_up=False))
    inp = ball_input()
    full = reconstruct(inp, "depth")
    budget = len(full.faces) // 3
    reply = host.run(ReconstructionJob(inp=inp, backend="depth", max_faces=budget))
    assert reply.ok, reply.message
    result = reply.value
    assert len(result.faces) <= budget < len(full.faces) and result.watertight and "simplify" in result.timings
    np.testing.assert_array_equal(result.faces, simplify_result(full, budget).faces)
    np.testing.assert_array_equal(result.points, full.points)
    unlimited = host.run(ReconstructionJob(inp=inp, backend="depth")).value
    np.testing.assert_array_equal(unlimited.faces, full.faces)
    assert simplify_result(full, len(full.faces)) is full


class _Payload:
    """A job input that can be weakly referenced (a stand-in for a mesh)."""


@dataclass(kw_only=True)
class _CycleJob(EchoJob):
    kind: ClassVar[str] = "cycle_double"


class _CycleLeavingWorker:
    """Test double: each job leaves its input in a reference cycle (as trimesh meshes and their caches do), which
    only the cyclic garbage collector frees. Proves the host frees a job's cyclic garbage before replying."""

    def __init__(self, pool: WorkerPoolConfig) -> None:
        del pool

    def warmup(self) -> None:
        pass

    def __call__(self, job: EchoJob) -> None:
        node: dict = {"data": job.data}
        node["self"] = node


def test_worker_host_frees_a_jobs_cyclic_garbage() -> None:
    kind = kinds_module.WorkerKind("cycle_double", _CycleLeavingWorker, _CycleJob, diagnostic=True)
    host = WorkerHost(kind, WorkerPoolConfig(num_actors=1))
    payload = _Payload()
    alive = weakref.ref(payload)
    job = _CycleJob(data=payload)
    del payload
    gc.disable()  # no collection by chance: only the host's own can free the cycle
    try:
        assert host.run(job).ok
        del job
        assert alive() is None, "the job's cyclic garbage outlived the job (the actors' ~2 MB/job growth)"
    finally:
        gc.enable()


def test_worker_host_warmup_freezes_without_a_full_collection(monkeypatch: pytest.MonkeyPatch) -> None:
    """warmup() moves what is alive out of the collector's reach (gc.freeze) without a full collection over it
    first: 0.07-0.13 CPU-s of a reconstruction actor's start, right before it reports warm, for 27 objects."""
    collections: list[tuple] = []
    frozen: list[bool] = []
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    assert not get_kind("reconstruction").collect_at_warm_up
    assert WorkerHost(get_kind("echo"), WorkerPoolConfig(num_actors=1)).warmup().ok
    assert frozen == [True] and collections == []


def test_worker_host_warmup_collects_first_for_a_kind_that_loads_a_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kind that loads a model (the default; novel views) collects before the freeze: its loading's cyclic
    garbage is freed, not kept for the actor's life."""
    calls: list[str] = []
    monkeypatch.setattr(gc, "collect", lambda *args: calls.append("collect") or 0)
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))
    assert get_kind("novel_views").collect_at_warm_up
    model_kind = dataclasses.replace(get_kind("echo"), collect_at_warm_up=True)
    assert WorkerHost(model_kind, WorkerPoolConfig(num_actors=1)).warmup().ok
    assert calls == ["collect", "freeze"]


def test_novel_views_worker_without_weights_fails_to_start_with_model_load() -> None:
    reply = WorkerHost(get_kind("novel_views"), WorkerPoolConfig(num_actors=1)).warmup()
    assert not reply.ok and reply.reason == "model_load" and "model_path" in reply.message


def test_make_worker_rejects_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="unknown worker kind"):
        make_worker("teleport")


def test_job_result_unwrap() -> None:
    assert JobResult(1, True, value=3).unwrap() == 3
    with pytest.raises(JobFailedError, match="timeout") as info:
        JobResult(2, False, reason="timeout", error="too slow").unwrap()
    assert info.value.reason == "timeout" and isinstance(info.value, DispatchError)


def test_submit_before_start_is_rejected_as_stopped() -> None:
    dispatcher = Dispatcher(DispatchConfig(pools={"echo": WorkerPoolConfig(num_actors=1)}))
    with pytest.raises(JobRejectedError) as info:
        dispatcher.submit(EchoJob(data=1))
    assert info.value.reason == "stopped"
    with pytest.raises(JobRejectedError) as info:
        dispatcher.submit("not a job")  # type: ignore[arg-type]
    assert info.value.reason == "bad_job"
    assert dispatcher.stats().rejected_by_reason == {"stopped": 1, "bad_job": 1}


def test_probe_tcp() -> None:
    port = free_port()
    assert "refused" in probe_tcp(f"127.0.0.1:{port}").lower()
    assert probe_tcp("not-a-port") != ""


def test_unreachable_cluster_at_start_is_degraded_not_an_exception() -> None:
    """No Ray starts at all: the TCP probe fails first, so this is fast and leaves nothing running."""
    address = f"127.0.0.1:{free_port()}"
    config = DispatchConfig(address=address, pools={"echo": WorkerPoolConfig(num_actors=1)}, reconnect_backoff_s=0.2)
    dispatcher = Dispatcher(config)
    t0 = time.monotonic()
    try:
        state = dispatcher.start(wait_s=10.0)
        assert state is DispatcherState.DEGRADED
        assert time.monotonic() - t0 < 5.0
        assert address in dispatcher.state_reason and "unreachable" in dispatcher.state_reason
        with pytest.raises(JobRejectedError) as info:
            dispatcher.submit(EchoJob(data=1))
        assert info.value.reason == "degraded" and address in str(info.value)
        stats = dispatcher.stats()
        assert isinstance(stats, DispatchStats)
        flat = stats.flat()
        assert flat["state"] == "degraded" and flat["rejected_by_reason.degraded"] == 1
        assert all(isinstance(v, int | float | str) for v in flat.values())
    finally:
        dispatcher.shutdown()
    assert dispatcher.state is DispatcherState.STOPPED


def test_cli_reports_an_unreachable_cluster_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from z123_ros.dispatch.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    address = f"127.0.0.1:{free_port()}"
    args = parser.parse_args(["dispatch-check", "--address", address, "--connect-timeout", "5"])
    assert args.func(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and address in err and "degraded" in err


def test_novel_views_worker_loads_once_and_is_seeded(tmp_path: Path) -> None:
    from z123_ros.novel_views.testing import save_tiny_zero123

    model = str(save_tiny_zero123(tmp_path / "tiny", layout="kxic", seed=0))
    worker = make_worker("novel_views", WorkerPoolConfig(num_actors=1, model_path=model))
    image = np.full((64, 64, 3), 255, np.uint8)
    image[20:44, 16:48] = (40, 90, 200)
    job = NovelViewsJob(image=image, views=[(0.0, 90.0, 0.0)], num_inference_steps=1, seed=5)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # OpenMP spin-waiting on the shared 2-core machine makes 2 threads far slower
    try:
        first, again = worker(job), worker(job)
        other = worker(NovelViewsJob(image=image, views=[(0.0, 90.0, 0.0)], num_inference_steps=1, seed=6))
    finally:
        torch.set_num_threads(threads)
    assert first.images.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.array_equal(first.images, other.images)


def test_timeline_breakdown_of_a_restart_with_a_standby_child() -> None:
    stamps = {"lost": 10.0, "cleaned": 10.1, "spawned": 10.1, "child_started": 2.0, "imported": 3.0}
    stamps |= {"configured": 10.2, "ray_up": 13.2, "actors_created": 13.3, "worker_started": 13.0}
    stamps |= {"worker_built": 14.5, "first_warm": 14.7, "warm": 15.2}
    stages = breakdown(stamps)
    # The standby imported before it was needed: no Python start-up on the restart's path.
    assert stages["python_and_imports"] == 0.0
    assert stages["cleanup"] == 0.1 and stages["backoff"] == 0.0 and stages["ray_init"] == 3.0
    assert stages["worker_process"] == 0.0  # Ray prestarted the worker before the actor was created
    assert stages["worker_build"] == 1.5 and stages["first_warm"] == 1.5 and stages["all_warm"] == 2.0
    assert stages["total"] == 5.2
    assert breakdown({"spawned": 1.0, "imported": 1.5}) == {"python_and_imports": 0.5, "total": 0.5}
    started = process_started_at()
    assert math.isfinite(started) and started <= time.monotonic()  # this process started in the past


def test_embedded_ray_init_arguments_follow_the_dashboard_fields() -> None:
    """Off by default; asked for, the dashboard listens on 127.0.0.1 at the configured port; a joined cluster's
    dashboard is left to the cluster."""
    assert Dispatcher(DispatchConfig())._init_kwargs()["include_dashboard"] is False
    kwargs = Dispatcher(DispatchConfig(dashboard=True, dashboard_port=8300))._init_kwargs()
    dashboard = (kwargs["include_dashboard"], kwargs["dashboard_host"], kwargs["dashboard_port"])
    assert dashboard == (True, "127.0.0.1", 8300)
    joined = Dispatcher(DispatchConfig(address="127.0.0.1:6379", dashboard=True))._init_kwargs()
    assert joined["include_dashboard"] is False and "dashboard_host" not in joined


def test_embedded_head_keeps_its_loopback_node_address() -> None:
    """The embedded head's node address is 127.0.0.1 (its listeners' address): Ray's replacement of a loopback
    address by the machine's external one is off inside loopback_node, and only there; a joined cluster keeps
    Ray's address."""
    import ray._private.services as services

    resolve = services.resolve_ip_for_localhost
    with loopback_node(embedded=True) as node_ip:
        assert node_ip == "127.0.0.1" and services.resolve_ip_for_localhost("127.0.0.1") == "127.0.0.1"
        assert Dispatcher(DispatchConfig())._init_kwargs(node_ip)["_node_ip_address"] == "127.0.0.1"
    assert services.resolve_ip_for_localhost is resolve
    with loopback_node(embedded=False) as node_ip:
        assert node_ip is None and services.resolve_ip_for_localhost is resolve
    joined = Dispatcher(DispatchConfig(address="10.0.0.5:6379"))._init_kwargs("127.0.0.1")
    assert "_node_ip_address" not in joined


def test_head_services_left_out() -> None:
    """The lean head leaves out the API server and the monitor, and the log monitor unless the actors' output goes
    to the driver; Ray's standard head (lean_head off) and a head with the dashboard leave out nothing."""
    assert head_services_to_skip(True, False, False) == ("start_api_server", "start_monitor", "start_log_monitor")
    assert head_services_to_skip(True, False, True) == ("start_api_server", "start_monitor")
    assert head_services_to_skip(True, True, False) == ()
    assert head_services_to_skip(False, False, False) == ()
    assert set(head_services_to_skip(True, False, False)) <= set(SKIPPABLE)


class _FakeNode:
    """Test double of ray._private.node.Node: records which start methods ran (proves the lean subclass skips
    exactly the named ones, and only on a head)."""

    def __init__(self, head: bool) -> None:
        self.head = head
        self.started: list[str] = []

    def start_api_server(self, **kwargs: object) -> None:
        self.started.append("start_api_server")

    def start_monitor(self) -> None:
        self.started.append("start_monitor")

    def start_log_monitor(self) -> None:
        self.started.append("start_log_monitor")


def test_lean_node_skips_the_named_services_on_a_head_only() -> None:
    lean = _lean_node_class(_FakeNode, ("start_api_server", "start_monitor"), poll_registration=False)
    head, worker_node = lean(head=True), lean(head=False)
    for node in (head, worker_node):
        node.start_api_server(include_dashboard=False, raise_on_failure=False)
        node.start_monitor()
        node.start_log_monitor()
    assert head.started == ["start_log_monitor"]
    assert worker_node.started == ["start_api_server", "start_monitor", "start_log_monitor"]


class _FakeNodeId:
    def __init__(self, hex_id: str) -> None:
        self._hex = hex_id

    def hex(self) -> str:
        return self._hex


class _FakeNodeInfo:
    ALIVE, DEAD = 0, 1

    def __init__(self, state: int) -> None:
        self.state = state


class _FakeGcs:
    """Test double of Ray's GcsClient: the first request fails (the GCS still starting), the next ones list no node
    or another one, then this node alive from request ``registered_at`` on (proves the wait polls until then)."""

    def __init__(self, node_id: str, registered_at: int) -> None:
        self.node_id, self.registered_at, self.requests = node_id, registered_at, 0

    def get_all_node_info(self, timeout: float) -> dict:
        self.requests += 1
        if self.requests == 1:
            raise ConnectionError("GCS not ready")
        other = {_FakeNodeId("other"): _FakeNodeInfo(_FakeNodeInfo.ALIVE)}
        if self.requests < self.registered_at:
            return other if self.requests % 2 else {}
        return {**other, _FakeNodeId(self.node_id): _FakeNodeInfo(_FakeNodeInfo.ALIVE)}


class _FakeRayletNode(_FakeNode):
    """Test double of a Node that starts a raylet which registers at the GCS's ``registered_at``-th request."""

    def __init__(self, head: bool, registered_at: int = 5) -> None:
        super().__init__(head)
        self.node_id = "abc123"
        self.gcs = _FakeGcs(self.node_id, registered_at)

    def start_ray_processes(self) -> None:
        self.started.append("start_ray_processes")

    def get_gcs_client(self) -> _FakeGcs:
        return self.gcs


def test_lean_head_waits_for_its_raylets_registration_before_ray_init_asks() -> None:
    """ray.init's own wait for the raylet's registration sleeps a whole second between attempts: the lean head polls
    the GCS until the raylet is listed alive right after starting it (on a head only; a failed request is retried)."""
    lean = _lean_node_class(_FakeRayletNode, (), poll_registration=True)
    head, worker_node = lean(head=True), lean(head=False)
    head.start_ray_processes()
    worker_node.start_ray_processes()
    assert head.started == worker_node.started == ["start_ray_processes"]
    assert head.gcs.requests == 5, "polled until the raylet was listed, not longer"
    assert worker_node.gcs.requests == 0
    assert wait_for_registration(_FakeRayletNode(True, registered_at=10**9), period_s=0.001, limit_s=0.05) is False


class _FakeRayNode:
    """Test double of a Ray Node whose start_raylet starts the raylet (and one other process) through Ray's
    services.start_ray_process, with agent commands as Ray 2.60's services.start_raylet writes them."""

    DASHBOARD = "--dashboard_agent_command=/py /ray/dashboard/agent.py --node-id=ab12 --minimal"
    RUNTIME_ENV = "--runtime_env_agent_command=/py /ray/agent/main.py --runtime-env-agent-port=0"

    def __init__(self, head: bool, session_dir: str) -> None:
        self.head, self.node_id, self._session = head, "ab12", session_dir

    def get_session_dir_path(self) -> str:
        return self._session

    def start_raylet(self) -> None:
        import ray._private.services as services

        raylet = ["/ray/raylet", "--head", self.DASHBOARD, self.RUNTIME_ENV]
        services.start_ray_process([a for a in raylet if a], "raylet", fate_share=False)
        services.start_ray_process(["/ray/gcs_server", self.DASHBOARD], "gcs_server", fate_share=False)


def test_lean_head_starts_the_raylets_agents_lean_on_a_head_only(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The lean head rewrites the raylet's agent commands (a stand-in for the minimal dashboard agent, Ray's
    runtime-env agent behind raylet_agents.py's port-first start), for the raylet of a head only, for that one
    start_raylet call; every other argument and process is Ray's."""
    import ray._private.services as services

    started: list[tuple[str, list[str]]] = []
    monkeypatch.setattr(services, "start_ray_process", lambda cmd, kind, **kw: started.append((kind, cmd)))
    lean = _lean_node_class(_FakeRayNode, (), poll_registration=False, lean_agents=True)
    lean(head=True, session_dir=str(tmp_path)).start_raylet()
    (_, raylet), (_, gcs) = started
    assert raylet[:2] == ["/ray/raylet", "--head"]
    assert gcs == ["/ray/gcs_server", "--dashboard_agent_command=/py /ray/dashboard/agent.py --node-id=ab12 --minimal"]
    dashboard, runtime_env = raylet[2].split("=", 1)[1], raylet[3].split("=", 1)[1]
    script = raylet_agents.__file__
    assert dashboard.endswith(
        f"{script} dashboard {tmp_path} ab12 metrics_agent_port metrics_export_port dashboard_agent_listen_port"
    ), dashboard
    assert runtime_env.endswith(
        f"{script} runtime-env runtime_env_agent_port -- /py /ray/agent/main.py --runtime-env-agent-port=0"
    ), runtime_env
    assert services.start_ray_process.__name__ == "<lambda>", "Ray's function is back after the call"

    started.clear()  # ray[default] installed (no --minimal): Ray's dashboard agent serves its modules, so it stays
    monkeypatch.setattr(_FakeRayNode, "DASHBOARD", "--dashboard_agent_command=/py /ray/dashboard/agent.py --head")
    lean(head=True, session_dir=str(tmp_path)).start_raylet()
    assert started[0][1][2] == "--dashboard_agent_command=/py /ray/dashboard/agent.py --head"
    assert "raylet_agents.py runtime-env" in started[0][1][3]
    started.clear()  # not a head: Ray's commands
    lean(head=False, session_dir=str(tmp_path)).start_raylet()
    assert "raylet_agents" not in " ".join(started[0][1])


def test_lean_head_leaves_each_agent_to_ray_where_this_ray_lacks_a_name_it_needs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Another Ray (private names gone or changed): each piece whose names are missing is left as Ray starts it,
    with one warning naming what is missing; the rest stays lean, and nothing fails."""
    import ray._private.node as ray_node
    import ray._private.services as services
    import ray._raylet as raylet

    started: list[list[str]] = []
    monkeypatch.setattr(services, "start_ray_process", lambda cmd, kind, **kw: started.append(cmd))
    lean = _lean_node_class(_FakeRayNode, (), poll_registration=False, lean_agents=True)
    caplog.set_level(logging.INFO, logger="z123_ros.dispatch.head")

    monkeypatch.delattr(raylet, "RUNTIME_ENV_AGENT_PORT_NAME")
    lean(head=True, session_dir=str(tmp_path)).start_raylet()
    assert started[0][3] == _FakeRayNode.RUNTIME_ENV, "Ray's runtime-env agent"
    assert "raylet_agents.py dashboard" in started[0][2], "the stand-in still"
    assert "RUNTIME_ENV_AGENT_PORT_NAME" in caplog.text
    assert "rewritten: dashboard_agent_command" in caplog.text

    started.clear()
    monkeypatch.delattr(raylet, "METRICS_EXPORT_PORT_NAME")
    lean(head=True, session_dir=str(tmp_path)).start_raylet()
    assert started[0][2:] == [_FakeRayNode.DASHBOARD, _FakeRayNode.RUNTIME_ENV]
    assert "ray._raylet.METRICS_EXPORT_PORT_NAME" in caplog.text

    started.clear()  # an option Ray no longer passes so: said, and the rest still rewritten
    monkeypatch.undo()
    monkeypatch.setattr(services, "start_ray_process", lambda cmd, kind, **kw: started.append(cmd))
    monkeypatch.setattr(_FakeRayNode, "RUNTIME_ENV", "")
    lean(head=True, session_dir=str(tmp_path)).start_raylet()
    assert "raylet_agents.py dashboard" in started[0][2]
    assert "has no runtime_env_agent_command" in caplog.text

    def waiter(gcs_port_file: str, timeout_s: float = 60.0) -> int:  # a Ray without the keyword
        return 0

    monkeypatch.setattr(ray_node, "wait_for_persisted_port", waiter)
    with lean_head(("start_api_server",)) as skipped:
        assert skipped == ("start_api_server",) and ray_node.wait_for_persisted_port is waiter
    assert "poll_interval_ms" in caplog.text


def test_dashboard_stand_in_writes_rays_port_files_and_lives_as_long_as_the_raylet(tmp_path: Path) -> None:
    """raylet_agents.py dashboard: -1 in each port file (as Ray's minimal agent writes), then it runs until its
    raylet (here: this process) is gone; started after its raylet died, it ends at once (no orphan)."""
    script = raylet_agents.__file__
    names = ["metrics_agent_port", "dashboard_agent_listen_port"]
    cmd = [sys.executable, "-I", "-S", script, "dashboard", str(tmp_path), "n1", *names]
    alive = subprocess.Popen(cmd, env={**os.environ, "RAY_RAYLET_PID": str(os.getpid())})
    try:
        files = [tmp_path / f"{name}_n1" for name in names]
        deadline = time.monotonic() + 30
        while not all(f.exists() for f in files) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [f.read_text() for f in files] == ["-1", "-1"]
        assert Path(f"/proc/{alive.pid}/comm").read_text().strip() == raylet_agents.PROCESS_NAME
        time.sleep(2 * raylet_agents.PARENT_POLL_S)
        assert alive.poll() is None, "it must outlive its first checks while the raylet lives"
    finally:
        alive.kill()
        alive.wait()
    orphan = subprocess.run(cmd, env={**os.environ, "RAY_RAYLET_PID": "1"}, timeout=30)
    assert orphan.returncode == 0


def test_dashboard_stand_in_ends_when_its_raylet_is_killed(tmp_path: Path) -> None:
    """The raylet SIGKILLed (no SIGTERM to its agents): the stand-in, re-parented, ends on its next check instead of
    living on as an orphan. Here a Python process stands for the raylet: it starts the stand-in with
    RAY_RAYLET_PID set to itself, as the raylet does."""
    script = raylet_agents.__file__
    stand_in = [sys.executable, "-I", "-S", script, "dashboard", str(tmp_path), "n1", "metrics_agent_port"]
    raylet = (
        "import os, subprocess, sys, time\n"
        f"p = subprocess.Popen({stand_in!r}, env=dict(os.environ, RAY_RAYLET_PID=str(os.getpid())))\n"
        "print(p.pid, flush=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", raylet], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "metrics_agent_port_n1").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert Path(f"/proc/{pid}/comm").read_text().strip() == raylet_agents.PROCESS_NAME, "alive with its raylet"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30  # a liveness bound, not a speed check: it polls every PARENT_POLL_S
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _running(pid), "the stand-in outlived its raylet"
    finally:
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def _running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an ended child that its new parent has not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


_AGENT_PROBE = (
    "import json, os, socket, sys\n"
    "port = int([a for a in sys.argv if a.startswith('--runtime-env-agent-port=')][0].split('=')[1])\n"
    "plain = socket.socket()\n"
    "try:\n"
    "    plain.bind(('127.0.0.1', port)); taken = 'bound'\n"
    "except OSError as exc:\n"
    "    taken = exc.errno\n"
    "agent = socket.socket(); agent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "agent.bind(('127.0.0.1', port)); agent.listen()\n"
    "print(json.dumps({'nice': os.nice(0), 'port': port, 'plain_bind': taken}))\n"
)


def _agent_argv(session: Path) -> list[str]:
    return [sys.executable, "-c", _AGENT_PROBE, "--node-id=n1", "--node-ip-address=127.0.0.1"] + [
        "--runtime-env-agent-port=0",
        f"--session-dir={session}",
    ]


def test_runtime_env_agent_keeps_its_port_from_the_file_to_its_bind_and_runs_nicer(tmp_path: Path) -> None:
    """raylet_agents.py runtime-env: the port written to the agent's file stays held through the exec until the
    agent binds it (another process's bind of it fails; the agent's SO_REUSEADDR bind and listen succeed), and the
    agent runs RUNTIME_ENV_AGENT_NICENESS nicer than the raylet (its parent)."""
    cmd = [sys.executable, "-I", "-S", raylet_agents.__file__, "runtime-env", "runtime_env_agent_port", "--"]
    out = subprocess.run([*cmd, *_agent_argv(tmp_path)], capture_output=True, text=True, timeout=60, check=True)
    agent = json.loads(out.stdout)
    assert agent["port"] == int((tmp_path / "runtime_env_agent_port_n1").read_text())
    assert agent["plain_bind"] == errno.EADDRINUSE, "the port was free for anyone between its file and the agent"
    if os.nice(0) > 19 - raylet_agents.RUNTIME_ENV_AGENT_NICENESS:  # the in-process test below checks the call
        pytest.skip(f"at niceness {os.nice(0)} the agent's extra niceness is clamped at 19: nothing to tell apart")
    assert agent["nice"] == os.nice(0) + raylet_agents.RUNTIME_ENV_AGENT_NICENESS
    plain = [sys.executable, "-c", _AGENT_PROBE, "--runtime-env-agent-port=0"]  # options missing: Ray's start
    out = subprocess.run([*cmd, *plain], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(out.stdout)["nice"] == os.nice(0), "not niced where its port was not written first"


def test_runtime_env_agent_is_niced_only_behind_its_port_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """raylet_agents.main in process (any test niceness): nice + exec with the port written first; exec of Ray's
    command alone, not niced, where an option it needs is missing."""
    niced: list[int] = []
    monkeypatch.setattr(raylet_agents.os, "nice", niced.append)

    def execv(path: str, argv: list[str]) -> None:
        raise SystemExit(argv)

    monkeypatch.setattr(raylet_agents.os, "execv", execv)
    with pytest.raises(SystemExit) as ran:
        raylet_agents.main(["runtime-env", "p", "--", *_agent_argv(tmp_path)])
    assert niced == [raylet_agents.RUNTIME_ENV_AGENT_NICENESS]
    assert ran.value.code[-2] == f"--runtime-env-agent-port={(tmp_path / 'p_n1').read_text()}"
    niced.clear()
    with pytest.raises(SystemExit) as ran:
        raylet_agents.main(["runtime-env", "p", "--", "/py", "main.py", "--runtime-env-agent-port=0"])
    assert niced == [] and ran.value.code == ["/py", "main.py", "--runtime-env-agent-port=0"]


def test_runtime_env_agent_gets_its_port_written_before_it_starts(tmp_path: Path) -> None:
    """raylet_agents.py runtime-env: a free port on the agent's address goes into the agent's port file and its
    command, held (another bind fails, the agent's SO_REUSEADDR bind and listen succeed) until the agent ends; an
    agent command without the options it needs runs unchanged."""
    argv = [
        "/py",
        "main.py",
        "--node-id=n1",
        "--node-ip-address=127.0.0.1",
        "--runtime-env-agent-port=0",
        f"--session-dir={tmp_path}",
        "--log-dir=/x",
    ]
    out, held = raylet_agents.runtime_env_with_port_first("runtime_env_agent_port", argv)
    assert held is not None and held.get_inheritable()
    port = int((tmp_path / "runtime_env_agent_port_n1").read_text())
    assert 0 < port < 65536 and held.getsockname()[1] == port
    assert out == [*argv[:4], f"--runtime-env-agent-port={port}", *argv[5:]]
    with held, socket.socket() as other, socket.socket() as agent:
        with pytest.raises(OSError) as taken:
            other.bind(("127.0.0.1", port))
        assert taken.value.errno == errno.EADDRINUSE
        agent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        agent.bind(("127.0.0.1", port))
        agent.listen()
    fixed = [a.replace("=0", "=6123") for a in argv]
    assert raylet_agents.runtime_env_with_port_first("p", fixed) == (fixed, None)
    assert (tmp_path / "p_n1").read_text() == "6123"
    assert raylet_agents.runtime_env_with_port_first("q", argv[:3]) == (argv[:3], None)
    assert not (tmp_path / "q_n1").exists()


def test_lean_head_swaps_rays_node_class_only_inside() -> None:
    import ray._private.node as ray_node

    original, waiter = ray_node.Node, ray_node.wait_for_persisted_port
    with lean_head(("start_api_server",)) as skipped:
        assert skipped == ("start_api_server",)
        assert ray_node.Node is not original and issubclass(ray_node.Node, original)
        assert ray_node.Node.start_ray_processes is not original.start_ray_processes, "the registration wait"
        assert ray_node.wait_for_persisted_port.func is waiter  # the GCS's port file: polled every 10 ms, not 100
        assert ray_node.wait_for_persisted_port.keywords == {"poll_interval_ms": PORT_POLL_MS} and PORT_POLL_MS < 100
    assert ray_node.Node is original and ray_node.wait_for_persisted_port is waiter
    with lean_head(()) as skipped:
        assert skipped == () and ray_node.Node is original
    with pytest.raises(ValueError, match="unknown head services"), lean_head(("start_gcs_server",)):
        pass
    assert ray_node.Node is original


def test_retry_and_prestart_reach_rays_environment_unless_the_user_set_them(monkeypatch: pytest.MonkeyPatch) -> None:
    names = ("RAY_raylet_client_connect_timeout_milliseconds", "RAY_raylet_client_num_connect_attempts")
    saved = dict(os.environ)
    try:
        for name in names:
            monkeypatch.delenv(name, raising=False)
        _apply_ray_environment(DispatchConfig(connect_retry_ms=50))
        assert [os.environ[name] for name in names] == ["50", "200"]  # 10 s of attempts, as Ray's defaults
        os.environ[names[0]] = "700"
        os.environ.pop(names[1])
        _apply_ray_environment(DispatchConfig())
        assert [os.environ[name] for name in names] == ["700", "100"]
        prestart = "RAY_enable_worker_prestart"  # Ray's own spelling
        os.environ.pop(prestart, None)
        _apply_ray_environment(DispatchConfig(prestart_workers=False))
        assert prestart not in os.environ
        _apply_ray_environment(DispatchConfig())
        assert os.environ[prestart] == "1"
    finally:
        os.environ.clear()
        os.environ.update(saved)


class _RecordingChannel:
    """Test double of the child's socket channel: records what the child sends; recv() blocks forever (the
    supervisor sends nothing in this test)."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.lock = threading.Condition()

    def send(self, message: tuple) -> None:
        with self.lock:
            self.sent.append(message)
            self.lock.notify_all()

    def recv(self) -> tuple:
        threading.Event().wait()
        raise EOFError


class _WarmingChildDispatcher:
    """Test double of the child's Dispatcher: READY at once, its actors warm when the test says so, then Ray "lost"
    when the test says so (proves when the child reports the warm actors)."""

    def __init__(self) -> None:
        self.config = DispatchConfig()
        self.warm, self.lost = threading.Event(), threading.Event()
        self.timeline: dict[str, float] = {"configured": 1.0}
        self.state_reason = "raylet gone"

    def start(self, wait_s: float | None = None) -> DispatcherState:
        return DispatcherState.CONNECTING

    def wait_while(self, state: DispatcherState, timeout_s: float | None = None) -> DispatcherState:
        if state is DispatcherState.READY:
            self.lost.wait()
            return DispatcherState.DEGRADED
        return DispatcherState.READY

    def wait_ready(self, timeout_s: float) -> bool:
        self.warm.wait()
        self.timeline["warm"] = 2.0
        return True

    def stats(self) -> str:
        return "warm" if "warm" in self.timeline else "warming"

    def workers(self) -> list:
        return []


def test_the_dispatch_child_reports_warm_actors_at_once_not_at_the_next_heartbeat(monkeypatch) -> None:
    """The node learns that the actors are warm from the child's messages: with the heartbeat slowed to an hour, the
    "warm" stamp and then the stats saying so still arrive right after the actors are warm."""
    from z123_ros.dispatch import child as child_module

    monkeypatch.setattr(child_module, "HEARTBEAT_S", 3600.0)
    monkeypatch.setattr(child_module, "ray_info", lambda: {})
    monkeypatch.setattr(child_module.ChildServer, "_import_job_inputs", lambda self: None)
    chan = _RecordingChannel()
    server = child_module.ChildServer(chan, DispatchConfig())
    double = server._dispatcher = _WarmingChildDispatcher()
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    with chan.lock:
        assert chan.lock.wait_for(lambda: any(m[0] == "ray" for m in chan.sent), 60.0)
        assert not any(m == ("stats", "warm", []) for m in chan.sent)
    double.warm.set()
    with chan.lock:
        assert chan.lock.wait_for(lambda: ("stats", "warm", []) in chan.sent, 60.0), chan.sent
        warm_at = chan.sent.index(("stats", "warm", []))
        stamps = [m[1] for m in chan.sent[:warm_at] if m[0] == "timeline"]
        assert stamps and stamps[-1]["warm"] == 2.0, "the stamps go before the stats that show the actors warm"
    double.lost.set()
    thread.join(60.0)
    assert ("lost", "raylet gone") in chan.sent


def test_the_standby_dispatch_process_waits_until_the_warm_dispatcher_is_idle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The standby's start (Python, Ray, the job inputs' imports) must not run beside the first jobs after the
    warm-up: it starts only once no job has been in flight for a while. ``_popen_child`` is replaced by a recording
    test double (no process is started); the dispatcher's state is set as the child's messages would set it."""
    from z123_ros.dispatch import supervisor

    started: list[list[str]] = []
    monkeypatch.setattr(supervisor, "_popen_child", lambda preload=None: started.append(preload) or ("p", "c"))
    clock = [100.0]
    monkeypatch.setattr(supervisor.time, "monotonic", lambda: clock[0])
    d = supervisor.SupervisedDispatcher(DispatchConfig())
    d._state = DispatcherState.READY
    d._child_workers = [supervisor.WorkerInfo("reconstruction", 0, "idle", 1, 0, 0)]
    d._records[1] = supervisor._Pending(1, EchoJob(data=np.zeros(2)), None, 100.0, 200.0)
    for _ in range(3):
        clock[0] += 1.0
        d._maybe_start_standby()
    assert started == []  # a job is in flight: not beside it
    del d._records[1]
    d._maybe_start_standby()
    clock[0] += 0.5
    d._maybe_start_standby()
    assert started == []  # idle, but not for long yet
    clock[0] += supervisor._STANDBY_IDLE_S
    d._maybe_start_standby()
    assert started == [d.config.job_input_modules()]
    d._standby = None  # the recorded "process" is not one: nothing to end


def _frame_jobs(count: int = 3) -> tuple[np.ndarray, np.ndarray, list[ReconstructionJob]]:
    """``count`` jobs of one VGA frame as the node builds them: the same colour and depth arrays, a mask each."""
    from z123_ros.camera import CameraIntrinsics
    from z123_ros.reconstruction import ReconstructionInput

    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    depth = rng.random((480, 640), dtype=np.float32)
    intrinsics = CameraIntrinsics.from_fov(60.0, 640, 480)
    jobs = []
    for k in range(count):
        mask = np.zeros((480, 640), bool)
        mask[100 + 50 * k : 140 + 50 * k, 200:260] = True
        inp = ReconstructionInput(rgb=rgb, mask=mask, intrinsics=intrinsics, depth_m=depth, occluder_mask=~mask)
        jobs.append(ReconstructionJob(inp=inp, key=str(k)))
    return rgb, depth, jobs


def test_a_packed_job_unpacks_to_an_equal_job_with_each_large_array_once() -> None:
    from z123_ros.dispatch.payload import SHARED_MIN_BYTES, pack, unpack

    rgb, depth, jobs = _frame_jobs(1)
    job = jobs[0]
    job.inp.occluder_mask = job.inp.mask  # the same array twice in one job: named twice, carried once
    head, arrays = pack(job)
    assert [a is b for a, b in zip(arrays, [rgb, job.inp.mask, depth], strict=True)] == [True] * 3
    assert len(head) < SHARED_MIN_BYTES  # the pickle names the large arrays, it does not hold them
    # As Ray hands them to the actor: read-only views.
    views = [np.frombuffer(a.tobytes(), a.dtype).reshape(a.shape) for a in arrays]
    back = unpack(head, views)
    assert back.key == job.key and back.backend == job.backend
    for name in ("rgb", "mask", "depth_m", "occluder_mask"):
        assert np.array_equal(getattr(back.inp, name), getattr(job.inp, name)), name
    assert back.inp.mask is back.inp.occluder_mask
    assert back.inp.intrinsics == job.inp.intrinsics


def test_a_frames_colour_and_depth_are_put_once_for_its_three_jobs() -> None:
    """SharedArrays with a recording test double for ray.put: 3 jobs of one frame put the frame's 2 images once and
    their own 2 masks each (8 puts, not 12); nothing stays once the jobs are done; a later job puts again."""
    from z123_ros.dispatch.payload import SharedArrays, pack

    rgb, depth, jobs = _frame_jobs(3)
    shared, put = SharedArrays(), []
    packed = [pack(job)[1] for job in jobs]
    for arrays in packed:
        shared.acquire(arrays)
    for arrays in packed:  # one at a time, as the actors get free
        refs = shared.refs(shared.entries(arrays), lambda a: put.append(a) or len(put))
        assert len(refs) == 4
    assert shared.puts == len(put) == 2 + 3 * 2
    assert sum(a is rgb for a in put) == 1 and sum(a is depth for a in put) == 1
    assert shared.bytes_put == rgb.nbytes + depth.nbytes + 6 * 480 * 640
    for arrays in packed:
        shared.release(arrays)
    assert len(shared) == 0
    again = pack(jobs[0])[1]
    shared.acquire(again)
    shared.refs(shared.entries(again), lambda a: put.append(a) or len(put))
    assert shared.puts == 8 + 4


def test_a_batch_of_jobs_goes_to_the_dispatch_process_as_one_message_with_shared_arrays_once() -> None:
    """SupervisedDispatcher.batch: the jobs submitted inside it leave as one message (the channel is a stand-in
    object here; the message goes through a real socket pair below), whose pickle carries the frame's colour and
    depth once, and which arrives with the jobs sharing those arrays again."""
    import pickle
    import socket

    from z123_ros.dispatch.supervisor import SupervisedDispatcher
    from z123_ros.dispatch.wire import Channel

    rgb, depth, jobs = _frame_jobs(3)
    d = SupervisedDispatcher(DispatchConfig())
    d._chan = chan = object()
    with d.batch():
        for k, job in enumerate(jobs):
            d._post(("submit", k, job))
        assert d._outq.empty()  # held until the end of the batch
    target, message = d._outq.get_nowait()
    assert target is chan and message[0] == "batch" and [m[1] for m in message[1]] == [0, 1, 2]
    assert d._outq.empty()
    buffers: list = []
    pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    assert len(buffers) == 2 + 3 * 2  # colour and depth once, each job's mask and occluders
    a, b = socket.socketpair()
    sender, receiver = Channel(a), Channel(b)
    threading.Thread(target=sender.send, args=(message,), daemon=True).start()
    got = receiver.recv()
    sender.close()
    receiver.close()
    received = [m[2] for m in got[1]]
    assert all(j.inp.rgb is received[0].inp.rgb and j.inp.depth_m is received[0].inp.depth_m for j in received)
    assert np.array_equal(received[2].inp.rgb, rgb) and np.array_equal(received[2].inp.mask, jobs[2].inp.mask)
    d._post(("cancel", 1))  # outside a batch: at once
    assert d._outq.get_nowait() == (chan, ("cancel", 1))
