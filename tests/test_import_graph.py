"""No import circles in the package: every ``z123_ros`` module's imports of other ``z123_ros`` modules, read from the
source (also those inside functions, which is where circles hide; not ``if TYPE_CHECKING:`` blocks), form a graph
without cycles. A circle means two modules are one module split in two files, or that one of them holds something
both need: move that to its own module instead of importing inside a function."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "z123_ros"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return getattr(test, "id", None) == "TYPE_CHECKING" or getattr(test, "attr", None) == "TYPE_CHECKING"


def _imported_names(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Dotted names an import statement loads (``from a import b`` as ``a.b``, which may name a module or not)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: resolve against this module's package
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
    else:
        source = node.module or ""
    # ``from a import b``: the module ``a.b`` when there is one (resolved by the caller), else something of ``a``.
    return [f"{source}.{a.name}" for a in node.names]


def import_graph(root: Path, package: str) -> dict[str, dict[str, int]]:
    """module -> {imported package module: line of the first such import}."""
    files = {_module_name(p, root): p for p in sorted((root / package).rglob("*.py"))}

    def resolve(name: str) -> str | None:
        while name and name not in files:  # ``a.b.function`` -> the module ``a.b``
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        edges: dict[str, int] = {}
        stack: list[ast.AST] = [ast.parse(path.read_text(), filename=str(path))]
        while stack:
            node = stack.pop()
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and _is_type_checking(child):
                    continue
                if isinstance(child, ast.Import | ast.ImportFrom):
                    for name in _imported_names(child, module, path.name == "__init__.py"):
                        target = resolve(name) if name.split(".")[0] == package else None
                        if target and target != module:
                            edges.setdefault(target, child.lineno)
                stack.append(child)
        graph[module] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(graph.get(w, {}))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return sorted(found)


def _describe(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    inside = set(component)
    edges = [f"{a} -> {b} (line {line})" for a in component for b, line in graph[a].items() if b in inside]
    return "; ".join(edges)


def test_package_has_no_import_cycles() -> None:
    graph = import_graph(ROOT, PACKAGE)
    assert len(graph) > 50 and f"{PACKAGE}.ros.node" in graph, "the package's modules were not found"
    found = cycles(graph)
    assert not found, "import cycles:\n" + "\n".join(_describe(graph, c) for c in found)


def test_cycle_finder_finds_circles_through_functions_and_relative_imports(tmp_path) -> None:
    pkg = tmp_path / "toy"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .a import f\n")
    (pkg / "sub" / "a.py").write_text("from toy.sub.b import g\n\ndef f():\n    return g()\n")
    (pkg / "sub" / "b.py").write_text("def g():\n    from . import c\n    return c.h()\n")
    (pkg / "sub" / "c.py").write_text("import toy.sub.a\n\ndef h():\n    return 1\n")
    (pkg / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from toy import e\n")
    (pkg / "e.py").write_text("from toy import d\n")
    graph = import_graph(tmp_path, "toy")
    assert graph["toy.sub"] == {"toy.sub.a": 1}
    assert cycles(graph) == [["toy.sub.a", "toy.sub.b", "toy.sub.c"]], "d <-> e only under TYPE_CHECKING"
