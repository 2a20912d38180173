"""ROS parameters derived from config dataclasses: declared once with descriptors, read back, validated."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

rclpy = pytest.importorskip("rclpy")

from rcl_interfaces.msg import ParameterType  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402

from z123_ros.errors import ConfigError  # noqa: E402
from z123_ros.ros.params import (  # noqa: E402
    build_config,
    declare_parameters,
    field_docs,
    make_set_parameters_callback,
    parameter_specs,
    read_parameters,
    to_yaml_dict,
)

pytestmark = pytest.mark.ros


@dataclass
class _Inner:
    #: Number of things,
    #: on two comment lines.
    count: int = field(default=3, metadata={"range": (0, 10)})
    names: list[str] = field(default_factory=list)


@dataclass
class _Config:
    rate_hz: float = field(default=2.0, metadata={"range": (0.1, 50.0)})
    """Rate, Hz."""
    topic: str = field(default="camera/image", metadata={"read_only": True})
    """Input topic."""
    mode: str = field(default="a", metadata={"choices": ("a", "b")})
    """Mode."""
    model_path: str | None = None
    """Optional path."""
    scale: float | None = None
    """Optional scale."""
    window: tuple[float, float] = (0.2, 0.8)
    """Window."""
    workers: int | None = None
    """Optional count."""
    inner: _Inner = field(default_factory=_Inner)


@pytest.fixture
def ros_context():
    context = rclpy.context.Context()
    rclpy.init(
        context=context,
        args=[
            "--ros-args",
            "-p",
            "rate_hz:=5",
            "-p",
            "inner.count:=7",
            "-p",
            "inner.names:=[cup,box]",
            "-p",
            "model_path:=/m",
        ],
    )
    yield context
    rclpy.shutdown(context=context)


def test_specs_docs_types_ranges() -> None:
    specs = {s.name: s for s in parameter_specs(_Config())}
    assert list(specs) == [
        "rate_hz",
        "topic",
        "mode",
        "model_path",
        "scale",
        "window",
        "workers",
        "inner.count",
        "inner.names",
    ]
    assert specs["workers"].default == -1 and "-1 = unset" in specs["workers"].descriptor().description
    assert specs["rate_hz"].description == "Rate, Hz."
    assert specs["inner.count"].description == "Number of things, on two comment lines."
    assert specs["window"].ros_type == ParameterType.PARAMETER_DOUBLE_ARRAY and specs["window"].is_tuple
    assert specs["inner.names"].ros_type == ParameterType.PARAMETER_STRING_ARRAY
    d = specs["inner.count"].descriptor()
    assert (d.integer_range[0].from_value, d.integer_range[0].to_value) == (0, 10)
    assert specs["topic"].descriptor().read_only
    assert "One of: a, b" in specs["mode"].descriptor().description
    assert specs["model_path"].default == "" and math.isnan(specs["scale"].default)
    assert field_docs(_Inner)["count"].startswith("Number")


def test_declare_and_read_back_with_overrides(ros_context) -> None:
    node = rclpy.create_node("params_test", context=ros_context)
    try:
        specs = declare_parameters(node, _Config())
        assert node.describe_parameter("rate_hz").description == "Rate, Hz."
        cfg = read_parameters(node, _Config(), specs)
        # YAML/CLI "5" for a float parameter is accepted and converted.
        assert cfg.rate_hz == 5.0 and isinstance(cfg.rate_hz, float)
        assert cfg.inner.count == 7 and cfg.inner.names == ["cup", "box"]
        assert cfg.model_path == "/m" and cfg.scale is None and cfg.window == (0.2, 0.8)
        # Out of range values are refused by ROS itself thanks to the descriptor.
        result = node.set_parameters([Parameter("inner.count", value=11)])[0]
        assert not result.successful
    finally:
        node.destroy_node()


def test_build_config_validation() -> None:
    specs = parameter_specs(_Config())
    with pytest.raises(ConfigError, match="rate_hz"):
        build_config(_Config(), specs, {"rate_hz": 100.0})
    with pytest.raises(ConfigError, match="mode"):
        build_config(_Config(), specs, {"mode": "c"})
    with pytest.raises(ConfigError, match="must be int"):
        build_config(_Config(), specs, {"inner.count": "three"})
    cfg = build_config(_Config(), specs, {"scale": 2, "inner.count": 1, "workers": 4})
    assert cfg.scale == 2.0 and cfg.inner.count == 1 and cfg.inner.names == [] and cfg.workers == 4
    assert build_config(cfg, specs, {"workers": -1, "scale": math.nan}).workers is None


def test_set_parameters_callback(ros_context) -> None:
    node = rclpy.create_node("params_cb_test", context=ros_context)
    try:
        specs = declare_parameters(node, _Config())
        state = {"cfg": read_parameters(node, _Config(), specs), "changed": []}

        def apply(new, changed):
            state["cfg"], state["changed"] = new, changed

        node.add_on_set_parameters_callback(make_set_parameters_callback(specs, lambda: state["cfg"], apply))
        assert node.set_parameters([Parameter("mode", value="b")])[0].successful
        assert state["cfg"].mode == "b" and state["changed"] == ["mode"]
        bad = node.set_parameters([Parameter("mode", value="zzz")])[0]
        assert not bad.successful and "mode" in bad.reason and state["cfg"].mode == "b"
        assert not node.set_parameters([Parameter("topic", value="other")])[0].successful
    finally:
        node.destroy_node()


def test_yaml_dict_nests() -> None:
    out = to_yaml_dict(_Config(), "n")
    params = out["n"]["ros__parameters"]
    assert params["inner"]["count"] == 3 and params["rate_hz"] == 2.0 and params["window"] == [0.2, 0.8]


@dataclass
class _WithMaps:
    resources: dict[str, float] = field(default_factory=lambda: {"gpu_node": 1.0})
    """Custom resources."""
    labels: dict[str, str] = field(default_factory=dict)
    """Labels."""


def test_dict_fields_are_key_value_string_arrays() -> None:
    specs = {s.name: s for s in parameter_specs(_WithMaps())}
    assert specs["resources"].ros_type == ParameterType.PARAMETER_STRING_ARRAY
    assert specs["resources"].default == ["gpu_node=1.0"] and specs["labels"].default == []
    assert '"key=value"' in specs["resources"].descriptor().description
    cfg = build_config(_WithMaps(), list(specs.values()), {"resources": ["a=2", " b = 0.5 "], "labels": ["x=y=z"]})
    assert cfg.resources == {"a": 2.0, "b": 0.5} and cfg.labels == {"x": "y=z"}
    with pytest.raises(ConfigError, match="not a float"):
        build_config(_WithMaps(), list(specs.values()), {"resources": ["a=lots"]})
    with pytest.raises(ConfigError, match='not "key=value"'):
        build_config(_WithMaps(), list(specs.values()), {"resources": ["a"]})


def test_dict_field_declared_and_read_from_the_command_line() -> None:
    context = rclpy.context.Context()
    rclpy.init(context=context, args=["--ros-args", "-p", "resources:=[node_b=2.0]"])
    node = rclpy.create_node("params_map_test", context=context)
    try:
        specs = declare_parameters(node, _WithMaps())
        assert read_parameters(node, _WithMaps(), specs).resources == {"node_b": 2.0}
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)


@dataclass
class _Unsupported:
    flag: bool | None = None
    """Optional bool: no ROS encoding."""


@dataclass
class _NestedUnsupported:
    table: dict[str, list[int]] = field(default_factory=dict)
    """A dict of lists."""


@pytest.mark.parametrize("config", [_Unsupported(), _NestedUnsupported()], ids=["optional_bool", "dict_of_lists"])
def test_unsupported_field_types_are_refused_loudly(config) -> None:
    with pytest.raises(ConfigError, match="has no ROS parameter type"):
        parameter_specs(config)


@dataclass
class _OptionalFloatPair:
    window_end: tuple[float, float] | None = None
    """An optional pair of floats (empty array when None)."""


def test_optional_float_tuple_declares_and_reads_back() -> None:
    context = rclpy.context.Context()
    rclpy.init(context=context, args=["--ros-args", "-p", "window_end:=[0.1, 0.5]"])
    node = rclpy.create_node("params_optional_pair", context=context)
    try:
        specs = declare_parameters(node, _OptionalFloatPair())
        assert read_parameters(node, _OptionalFloatPair(), specs).window_end == (0.1, 0.5)
    finally:
        node.destroy_node()
        rclpy.shutdown(context=context)
    assert build_config(_OptionalFloatPair(), specs, {"window_end": []}).window_end is None


@dataclass
class _WithGroups:
    #: Top-level field next to the inlined groups.
    count: int = 1
    groups: dict[str, _Inner] = field(default_factory=lambda: {"a": _Inner(), "b": _Inner(count=5)})
    """Named groups of parameters (a dict of dataclasses)."""
    inline: dict[str, _Inner] = field(default_factory=lambda: {"c": _Inner()}, metadata={"inline": True})
    """Groups whose keys take the field's place in the names (as DispatchConfig.pools)."""


def test_dict_of_dataclasses_is_one_parameter_group_per_key() -> None:
    specs = {s.name: s for s in parameter_specs(_WithGroups())}
    assert {"groups.a.count", "groups.b.count", "groups.b.names", "c.count", "c.names"} <= set(specs)
    assert specs["groups.b.count"].default == 5 and specs["groups.b.count"].value_range == (0, 10)
    cfg = build_config(_WithGroups(), list(specs.values()), {"groups.b.count": 7, "c.names": ["x"]})
    assert cfg.groups["b"].count == 7 and cfg.groups["a"].count == 3 and cfg.inline["c"].names == ["x"]
    assert _WithGroups().groups["b"].count == 5  # the template is not changed
    with pytest.raises(ConfigError, match=r"groups\.a\.count=11 is outside"):
        build_config(_WithGroups(), list(specs.values()), {"groups.a.count": 11})


def test_an_inlined_key_that_collides_with_a_field_is_refused() -> None:
    with pytest.raises(ConfigError, match="two config fields map to the ROS parameter count"):
        parameter_specs(_WithGroups(inline={"": _Inner()}))
