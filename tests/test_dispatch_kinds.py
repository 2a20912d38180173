"""The worker-kind registry: a toy kind (tests/_toy_worker.py, a test double) registered without touching any other
file gets a default pool, node parameters and a real dispatcher actor; the diagnostic kinds never become node
parameters."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._dispatch_helpers import Results
from z123_ros import plugins
from z123_ros.dispatch import (
    DispatchConfig,
    DispatcherState,
    SupervisedDispatcher,
    WorkerPoolConfig,
    get_kind,
    kind_names,
    make_worker,
    unregister_kind,
)
from z123_ros.dispatch import kinds as kinds_module

TOY = "tests._toy_worker"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch):
    """The toy kind announced through the environment, as a deployment would; removed again afterwards."""
    monkeypatch.setenv(kinds_module.PLUGINS_ENV, TOY)
    yield "toy_reverse"
    unregister_kind("toy_reverse")
    plugins.forget(kinds_module.PLUGINS_ENV, TOY)
    sys.modules.pop(TOY, None)


def test_a_kind_named_in_the_environment_gets_a_default_pool(toy) -> None:
    assert toy in kind_names()
    pool = DispatchConfig().pools[toy]
    assert pool == get_kind(toy).default_pool and pool is not get_kind(toy).default_pool
    assert make_worker(toy, WorkerPoolConfig(model_path="m"))(get_kind(toy).job(items=[1, 2, 3]))["items"] == [3, 2, 1]


def test_node_parameters_have_the_toy_pool_and_no_diagnostic_pool(toy) -> None:
    pytest.importorskip("rclpy")
    import z123_ros.dispatch.diagnostics  # noqa: F401  (registered in this process: still no node parameter)
    from z123_ros.ros.config import NodeConfig
    from z123_ros.ros.params import build_config, parameter_specs

    specs = parameter_specs(NodeConfig())
    names = {s.name for s in specs}
    assert {"dispatch.reconstruction.num_actors", "dispatch.novel_views.model_path"} <= names
    assert "dispatch.toy_reverse.num_actors" in names
    assert not [n for n in names if n.startswith(("dispatch.echo.", "dispatch.cpu_burn."))]
    config = build_config(NodeConfig(), specs, {"dispatch.toy_reverse.num_actors": 3})
    assert config.dispatch.pool(toy).num_actors == 3 and NodeConfig().dispatch.pool(toy).num_actors == 1


def test_the_production_node_process_has_no_diagnostic_parameters() -> None:
    """A fresh process, as ``z123-node`` starts: whatever the test process imported does not leak in."""
    pytest.importorskip("rclpy")
    code = (
        "from z123_ros.ros.config import NodeConfig\n"
        "from z123_ros.ros.params import parameter_specs\n"
        "print('\\n'.join(s.name for s in parameter_specs(NodeConfig())))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != kinds_module.PLUGINS_ENV}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    pools = {name.split(".")[1] for name in out.split() if name.endswith(".num_actors")}
    assert pools == {"reconstruction", "novel_views"}


@pytest.fixture
def toy_imported():
    """The toy kind registered by importing its module in this process only (no environment variable)."""
    import importlib

    module = importlib.import_module(TOY)
    yield module
    unregister_kind(module.NAME)
    sys.modules.pop(TOY, None)


@pytest.mark.ray
def test_toy_kind_runs_in_a_supervised_dispatcher_actor(toy_imported, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Registered only in this process: the dispatch process and its actor learn the kind from the config the
    supervisor sends (the path the node uses), and the actor runs it like a built-in kind."""
    TOY_KIND, ToyReverseJob = toy_imported.TOY_KIND, toy_imported.ToyReverseJob  # noqa: N806
    config = DispatchConfig(
        num_cpus=1,
        object_store_memory_mb=96,
        temp_dir=str(tmp_path_factory.mktemp("ray")),  # short: Ray's socket paths must stay under 107 bytes
        pools={TOY_KIND.name: WorkerPoolConfig(num_actors=1, num_cpus=0.25, model_path="tagged")},
        job_timeout_s=240.0,
        connect_timeout_s=240.0,
    )
    d = SupervisedDispatcher(config)
    try:
        assert d.start(wait_s=240.0) is DispatcherState.READY, d.state_reason
        assert d.wait_ready(240.0), d.state_reason
        results = Results()
        done = results.wait(d.submit(ToyReverseJob(items=["a", 2, None], key="toy"), on_done=results), 240.0)
        assert done.ok, done
        assert done.value["items"] == [None, 2, "a"] and done.value["tag"] == "tagged"
        assert done.value["calls"] == 2  # the warm-up job ran first in the same worker
        assert done.value["pid"] not in (os.getpid(), 0)
        assert [w.kind for w in d.workers()] == [TOY_KIND.name]
    finally:
        d.shutdown()
