"""RViz2 config and the launch file's rviz:=true (neither RViz nor launch runs here: both are checked statically)."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_rviz_config_shows_the_node_outputs() -> None:
    config = yaml.safe_load((ROOT / "rviz" / "z123.rviz").read_text())
    displays = {d["Class"]: d for d in config["Visualization Manager"]["Displays"]}
    assert {
        "rviz_default_plugins/Image",
        "rviz_default_plugins/MarkerArray",
        "rviz_default_plugins/PointCloud2",
        "rviz_default_plugins/TF",
    } <= set(displays)
    # The topics the node and the camera publish by default (z123_node's ~/markers and ~/objects_cloud).
    assert displays["rviz_default_plugins/Image"]["Topic"]["Value"] == "/camera/color/image_raw"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Value"] == "/z123_node/markers"
    assert displays["rviz_default_plugins/PointCloud2"]["Topic"]["Value"] == "/z123_node/objects_cloud"
    # QoS that can match: best-effort camera, latched node outputs.
    assert displays["rviz_default_plugins/Image"]["Topic"]["Reliability Policy"] == "Best Effort"
    assert displays["rviz_default_plugins/MarkerArray"]["Topic"]["Durability Policy"] == "Transient Local"


def test_rviz_config_is_installed_to_share() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    data_files = next(
        kw.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        for kw in node.keywords
        if kw.arg == "data_files"
    )
    text = ast.unparse(data_files)
    assert "share/{PACKAGE}/rviz" in text and "glob('rviz/*.rviz')" in text
    assert list((ROOT / "rviz").glob("*.rviz")) == [ROOT / "rviz" / "z123.rviz"]


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == name]


def test_launch_file_declares_rviz_and_starts_rviz2_only_when_asked() -> None:
    tree = ast.parse((ROOT / "launch" / "z123.launch.py").read_text())
    declared = {ast.literal_eval(c.args[0]): c for c in _calls(tree, "DeclareLaunchArgument")}
    assert {"rviz", "rviz_config", "fixed_frame"} <= set(declared)
    assert ast.literal_eval(next(k.value for k in declared["rviz"].keywords if k.arg == "default_value")) == "false"
    assert "z123.rviz" in ast.unparse(declared["rviz_config"])
    rviz = [
        c
        for c in _calls(tree, "Node")
        if any(k.arg == "package" and ast.literal_eval(k.value) == "rviz2" for k in c.keywords)
    ]
    assert len(rviz) == 1
    keywords = {k.arg: ast.unparse(k.value) for k in rviz[0].keywords}
    assert keywords["condition"] == "IfCondition(LaunchConfiguration('rviz'))"
    assert "LaunchConfiguration('rviz_config')" in keywords["arguments"] and "'-f'" in keywords["arguments"]
