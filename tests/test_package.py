"""The package as a user installs it: metadata, share files in the ament index, entry points, lint."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", ["package.xml", "msg/package.xml"])
def test_package_xml_is_valid_format_3(path):
    from catkin_pkg.package import parse_package

    pkg = parse_package(ROOT / path)
    pkg.validate()
    assert pkg.package_format == 3
    if path == "package.xml":
        assert pkg.name == "z123_ros"
        assert "z123_interfaces" in {d.name for d in pkg.build_depends + pkg.exec_depends}
        assert pkg.get_build_type() == "ament_python"
    else:
        assert pkg.name == "z123_interfaces"  # must not clash with the Python package z123_ros


def test_share_dir_found_through_ament_index():
    from z123_ros.resources import package_share_dir

    share = package_share_dir()
    assert (share / "package.xml").is_file()
    assert (share / "config" / "z123_node.yaml").is_file()
    assert any((share / "launch").glob("*.launch.py"))


def test_console_scripts_point_at_real_functions():
    tree = ast.parse((ROOT / "setup.py").read_text())
    scripts = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = z123_ros." in node.value
    ]
    assert {s.split(" = ")[0] for s in scripts} == {"z123", "z123-node", "z123-sim-camera"}
    import importlib

    for spec in scripts:
        module, func = spec.split(" = ")[1].split(":")
        assert callable(getattr(importlib.import_module(module), func)), spec


def test_z123_cli_help_lists_every_subcommand():
    out = subprocess.run([sys.executable, "-m", "z123_ros.cli", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("segment", "views", "reconstruct", "eval", "demo", "dispatch-check", "render-dataset", "train", "info"):
        assert cmd in out.stdout


def test_ruff_lint_and_format_clean():
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    lint = subprocess.run([ruff, "check", "."], cwd=ROOT, capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout[-3000:]
    fmt = subprocess.run([ruff, "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout[-3000:]
