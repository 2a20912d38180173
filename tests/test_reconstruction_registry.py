"""The backend registry: a toy backend (tests/_toy_backend.py, a test double) registered without touching any other
file runs through ``reconstruct()``, ``z123 reconstruct``, the dispatcher's actors and the node's configuration."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._dispatch_helpers import Results
from tests._reconstruction_helpers import render_object_view
from tests.test_reconstruction_cli import args_for, run_cli
from z123_ros import plugins
from z123_ros.dispatch import DispatchConfig, Dispatcher, DispatcherState, ReconstructionJob, WorkerPoolConfig
from z123_ros.errors import ConfigError
from z123_ros.io import CameraModel, save_camera, save_depth_png, save_mask, save_rgb
from z123_ros.reconstruction import backend_names, get_backend, reconstruct, registry, unregister_backend

TOY = "tests._toy_backend"


@pytest.fixture
def toy(monkeypatch):
    """The toy backend announced through the environment, as a deployment would; removed again afterwards."""
    monkeypatch.setenv(registry.PLUGINS_ENV, TOY)
    yield "toy_box"
    unregister_backend("toy_box")
    plugins.forget(registry.PLUGINS_ENV, TOY)
    sys.modules.pop(TOY, None)


@pytest.fixture(scope="module")
def view():
    return render_object_view("005_tomato_soup_can", width=160, height=120)


def test_builtin_backends_are_registered_with_what_they_need():
    assert backend_names()[:4] == ("depth", "multiview", "zero123", "hull")
    assert get_backend("depth").needs_depth and not get_backend("depth").needs_model
    assert get_backend("zero123").needs_model and not get_backend("zero123").needs_depth
    with pytest.raises(ConfigError, match="unknown backend 'nope'; choose one of depth, multiview"):
        get_backend("nope")


def test_toy_backend_runs_through_reconstruct(toy, view):
    assert toy in backend_names()
    result = reconstruct(view.inp, toy)
    visible, _ = view.inp.intrinsics.backproject(view.inp.depth_m, view.inp.mask)
    assert result.backend == toy and result.watertight
    np.testing.assert_allclose(result.extent_m, np.ptp(visible, axis=0), atol=1e-6)


def test_toy_backend_runs_through_the_cli(toy, view, tmp_path, capsys):
    folder = tmp_path / "frame"
    folder.mkdir()
    save_rgb(folder / "rgb.png", view.inp.rgb)
    save_mask(folder / "mask.png", view.inp.mask)
    save_depth_png(folder / "depth.png", view.inp.depth_m)
    save_camera(folder / "camera.json", CameraModel(view.inp.intrinsics, view.T_cam_from_world, "mm"))
    assert run_cli(args_for(folder, tmp_path / "out", backend=toy)) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "result.json").read_text())["backend"] == toy


def test_a_missing_backend_module_is_one_clear_error(monkeypatch):
    monkeypatch.setenv(registry.PLUGINS_ENV, "no_such_backend_module")
    try:
        with pytest.raises(ConfigError, match="cannot import backend module 'no_such_backend_module'"):
            get_backend("depth")
    finally:
        plugins.forget(registry.PLUGINS_ENV, "no_such_backend_module")


def test_node_configuration_accepts_the_toy_backend(toy):
    from z123_ros.ros.config import NodeConfig, validate_node_config

    validate_node_config(NodeConfig(backend=toy))
    with pytest.raises(ConfigError, match="unknown backend"):
        validate_node_config(NodeConfig(backend="nope"))


@pytest.mark.ray
def test_toy_backend_runs_in_a_dispatcher_actor(toy, view):
    import ray

    config = DispatchConfig(
        num_cpus=1,
        object_store_memory_mb=96,
        pools={"reconstruction": WorkerPoolConfig(num_actors=1, num_cpus=0.25)},
        job_timeout_s=120.0,
    )
    assert not ray.is_initialized(), "another test left Ray running in this process"
    d = Dispatcher(config)
    try:
        assert d.start(wait_s=240.0) is DispatcherState.READY, d.state_reason
        results = Results()
        # The actor is another process: it knows toy_box only through the environment it inherited.
        done = results.wait(d.submit(ReconstructionJob(inp=view.inp, backend=toy, key="toy"), on_done=results), 240.0)
        assert done.ok, done
        assert done.value.backend == toy
    finally:
        d.shutdown()


#: The backends' stack: what the built-in backends' module (z123_ros.reconstruction.api) imports and the node's
#: configuration and the dispatch process do not need.
BACKEND_STACK = ("z123_ros.reconstruction.api", "trimesh", "skimage", "networkx")


def _imported_after(code: str) -> list[str]:
    """The BACKEND_STACK modules loaded after running ``code`` in a fresh interpreter."""
    probe = f"import sys\n{code}\nprint(','.join(m for m in {BACKEND_STACK!r} if m in sys.modules))"
    root = str(Path(__file__).resolve().parent.parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120, cwd=root, env=env
    )
    return [m for m in out.stdout.rstrip("\n").split("\n")[-1].split(",") if m]


def test_reading_the_registry_and_the_types_does_not_import_the_backends() -> None:
    """The node's configuration (NodeConfig, validate_node_config: the registry's needs_model), the job types and
    the dispatch process's modules load without trimesh and scikit-image: 0.5 s of the node's import before
    (docs/node/latency.md). Running a backend imports them."""
    light = (
        "from z123_ros.ros.config import NodeConfig, validate_node_config\n"
        "from z123_ros.reconstruction import ReconstructionConfig, ReconstructionInput, ReconstructionResult\n"
        "import z123_ros.dispatch.child, z123_ros.reconstruction.base\n"
        "validate_node_config(NodeConfig())\n"
        "from z123_ros.reconstruction import get_backend\n"
        "assert get_backend('depth').needs_depth and get_backend('zero123').needs_model"
    )
    assert _imported_after(light) == []
    run = (
        "from tests._reconstruction_helpers import render_object_view\n"
        "from z123_ros.reconstruction import get_backend, reconstruct\n"
        "view = render_object_view('005_tomato_soup_can', width=80, height=60)\n"
        "assert reconstruct(view.inp, 'depth').backend == 'depth'"
    )
    loaded = _imported_after(run)
    assert "z123_ros.reconstruction.api" in loaded and "trimesh" in loaded
