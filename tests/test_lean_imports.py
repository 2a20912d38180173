"""z123_ros._lean_imports: scipy's import-time docstring notes and numpy's f2py / testing left out of the node's and
the actors' start-up, with scipy and numpy working as before. Each case runs in a fresh interpreter (this one's
modules depend on the tests run before)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import types

import pytest

from z123_ros._lean_imports import _DocstringAsWritten, _keep_docstrings

_PROBE = (
    "import json, sys\n"
    "import numpy as np\n"
    "{setup}\n"
    "import scipy.ndimage, scipy.optimize, scipy.spatial, scipy.sparse.csgraph\n"
    "import z123_ros.reconstruction.api\n"
    "from scipy._lib._array_api import xp_capabilities_table\n"
    "lazy = [type(sys.modules.get(m)).__name__ for m in ('numpy.f2py', 'numpy.testing')]\n"
    "note = '**Array API Standard Support**' in scipy.ndimage.gaussian_filter.__doc__\n"
    "np.testing.assert_equal(np.arange(3), [0, 1, 2])\n"
    "from numpy.testing import assert_allclose\n"
    "assert_allclose(1.0, 1.0)\n"
    "print(json.dumps({{'note': note, 'lazy': lazy, 'capabilities': len(xp_capabilities_table),\n"
    "    'f2py': np.f2py.__name__, 'doc': scipy.ndimage.gaussian_filter.__doc__.split()[:3]}}))\n"
)


def _probe(setup: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(setup=setup)], capture_output=True, text=True, timeout=180, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_scipy_docstrings_stay_as_written_and_numpy_extras_load_on_use() -> None:
    plain = _probe("")
    lean = _probe("from z123_ros._lean_imports import lean_scientific_imports\nlean_scientific_imports()")
    assert plain["note"] and plain["lazy"] == ["module", "module"]
    assert not lean["note"], "scipy's generated note is not added"
    assert lean["doc"] == plain["doc"] == ["Multidimensional", "Gaussian", "filter."]
    assert lean["capabilities"] == plain["capabilities"] > 0, "scipy still records what each function supports"
    # Loaded by scipy's clone of numpy's namespace as lazy modules, executed when used: numpy.testing ran (the
    # assertions above); numpy.f2py was only named.
    assert lean["lazy"][0] == "_LazyModule" and lean["f2py"] == "numpy.f2py"


def test_an_actor_process_gets_them_before_its_stack_loads() -> None:
    """An actor's WorkerHost applies them when constructed, before its worker loads the reconstruction stack."""
    setup = (
        "import ray._private.worker as w\n"
        "w.global_worker.mode = w.WORKER_MODE\n"
        "from z123_ros.dispatch import WorkerPoolConfig, get_kind\n"
        "from z123_ros.dispatch.host import WorkerHost\n"
        "WorkerHost(get_kind('reconstruction'), WorkerPoolConfig())\n"
        "assert 'scipy' not in sys.modules\n"
    )
    assert _probe(setup)["note"] is False


def test_a_ray_task_importing_the_dispatch_layer_keeps_its_imports() -> None:
    """Any other Ray worker (a user's task) that imports z123_ros.dispatch keeps scipy's and numpy's imports as
    they are: only an actor's WorkerHost changes them."""
    setup = (
        "import ray._private.worker as w\n"
        "w.global_worker.mode = w.WORKER_MODE\n"
        "import z123_ros.dispatch, z123_ros.dispatch.host\n"
    )
    assert _probe(setup)["note"] is True


def test_importing_the_node_module_leaves_scipy_for_main() -> None:
    """The node's ``main()`` applies the lean imports before its constructor loads scipy; they do nothing when
    importing ``z123_ros.ros.node`` (the console script's first step) already loaded scipy's array-API layer."""
    pytest.importorskip("rclpy", reason="the node module needs ROS 2 (rclpy)")
    probe = (
        "import json, sys\n"
        "import z123_ros.ros.node\n"
        "print(json.dumps([m for m in ('scipy._lib._array_api', 'numpy.testing', 'numpy.f2py') if m in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=180, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def _fake_array_api(call: str) -> types.ModuleType:
    """A module shaped like scipy._lib._array_api whose xp_capabilities decorator builds its FunctionDoc by
    ``call`` (a Python expression of ``FunctionDoc`` and ``f``) and then does what scipy 1.17's does."""
    module = types.ModuleType("fake_array_api")

    class FunctionDoc:  # scipy's own (here: one that adds the note)
        def __init__(self, func, role="func", doc=None, config=None):
            self.text, self.notes = func.__doc__, []

        def __getitem__(self, section):
            return self.notes

        def __str__(self):
            return "sig\n" + self.text + "".join(self.notes)

        def extend_notes(self, note):
            self.notes.append(note)

    def xp_capabilities(*, capabilities_table=None):
        def decorator(f):
            doc = eval(call, {"FunctionDoc": module.FunctionDoc, "f": f})
            doc["Notes"].append("NOTE")
            f.__doc__ = str(doc).split("\n", 1)[1].lstrip(" \n")
            return f

        return decorator

    module.FunctionDoc, module.xp_capabilities = FunctionDoc, xp_capabilities
    return module


def test_the_docstring_stand_in_is_kept_only_where_scipys_decorator_takes_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """FunctionDoc's arguments, positional or named, are taken; a decorator that uses FunctionDoc otherwise
    (another scipy) gets scipy's own FunctionDoc back, with a log line, instead of failing at scipy's import."""
    caplog.set_level(logging.INFO, logger="z123_ros._lean_imports")
    for call in ("FunctionDoc(f)", "FunctionDoc(func=f, role='func')", "FunctionDoc(f, 'func', None, None)"):
        module = _fake_array_api(call)
        _keep_docstrings(module)
        assert module.FunctionDoc is _DocstringAsWritten, call
    assert not caplog.records
    for call in ("FunctionDoc(f).extend_notes('x') or FunctionDoc(f)", "FunctionDoc(f, config={})['Notes'] and 1"):
        module = _fake_array_api(call)
        original = module.FunctionDoc
        _keep_docstrings(module)
        assert module.FunctionDoc is original, call
    assert len(caplog.records) == 2 and "docstring notes stay" in caplog.text
