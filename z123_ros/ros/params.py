"""ROS parameters derived from the project's config dataclasses: declared once, read back into the dataclass.

Every config field becomes one parameter (nested dataclasses become dotted names, e.g. ``segmentation.min_area_px``,
which is also how nested YAML maps to ROS parameters). The description is the field's documentation (a ``#:``
comment above the field or a string literal below it, the two styles the project uses); ranges and run-time
mutability come from ``dataclasses.field(metadata=...)``:

- ``metadata={"range": (lo, hi)}`` (optionally ``"step"``) -> an integer or floating-point range descriptor;
- ``metadata={"read_only": True}`` -> changing it at run time is refused (topics, backend, Ray address...);
- ``metadata={"choices": (...)}`` -> values outside the choices are refused (ROS has no enum descriptor, so this
  is checked here and listed in the description).

``None`` has no ROS parameter type: an ``X | None`` field is an empty string (str), NaN (float), -1 (int) or an
empty list (lists, tuples) when None.

ROS has no map parameter either (and a nested YAML map would need every key declared in advance): a
``dict[str, bool | int | float | str]`` field is a string array of ``"key=value"`` entries, e.g.
``dispatch.reconstruction.resources: ["gpu_node=1"]``.

A ``dict[str, SomeDataclass]`` field is a group of parameters per key, its entries' fields under
``<field>.<key>.<name>``; with ``metadata={"inline": True}`` the key takes the field's place
(``DispatchConfig.pools`` -> ``dispatch.reconstruction.num_actors``). The keys are those of the default config: the
parameters a node declares are fixed when it starts.

A field of any other type (an optional bool, a dict of lists, an arbitrary object) raises ConfigError when the
parameters are derived: a config field must never silently lose its ROS parameter.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import math
import textwrap
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from z123_ros.errors import ConfigError

_SCALARS = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}
_ARRAYS = {
    bool: ParameterType.PARAMETER_BOOL_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
    str: ParameterType.PARAMETER_STRING_ARRAY,
}


@dataclass
class ParameterSpec:
    """One ROS parameter derived from one dataclass field."""

    #: Dotted parameter name (prefix + nested field path).
    name: str
    #: Path of attribute names from the root config to the field.
    path: tuple[str, ...]
    #: The field's Python element type (bool, int, float, str).
    base_type: type
    #: True for list/tuple fields (ROS array parameters).
    is_array: bool
    #: True when the field also accepts None (encoded as "" or NaN).
    optional: bool
    #: True for tuple fields (read back as tuples).
    is_tuple: bool
    #: The default value in ROS form.
    default: Any
    #: Field documentation.
    description: str
    #: (lo, hi) or None.
    value_range: tuple[float, float] | None
    #: Allowed values or None.
    choices: tuple | None
    #: Refuse run-time changes.
    read_only: bool
    #: True for dict[str, base_type] fields (a ROS string array of "key=value").
    is_mapping: bool = False

    @property
    def ros_type(self) -> int:
        if self.is_mapping:
            return ParameterType.PARAMETER_STRING_ARRAY
        return (_ARRAYS if self.is_array else _SCALARS)[self.base_type]

    def descriptor(self) -> ParameterDescriptor:
        desc = self.description
        if self.choices:
            desc += f" One of: {', '.join(map(str, self.choices))}."
        if self.is_mapping:
            desc += f' Entries "key=value" (value: {self.base_type.__name__}).'
        if self.optional:
            desc += (
                {str: " Empty = unset.", float: " NaN = unset.", int: " -1 = unset."}.get(
                    self.base_type, " Empty = unset."
                )
                if not self.is_array
                else " Empty = unset."
            )
        d = ParameterDescriptor(name=self.name, type=self.ros_type, description=desc, read_only=self.read_only)
        # YAML writes 2 for 2.0; ROS would refuse an integer for a double parameter, so floats accept both and
        # from_ros() converts and checks the type instead.
        d.dynamic_typing = self.base_type is float
        if self.value_range is not None and not self.is_array:
            lo, hi = self.value_range
            if self.base_type is int:
                d.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=0)]
            elif self.base_type is float:
                d.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        return d

    def to_ros(self, value: Any) -> Any:
        """Python field value -> ROS parameter value."""
        if self.is_mapping:
            return [f"{k}={v}" for k, v in sorted((value or {}).items())]
        if value is None:
            if self.is_array:
                return []
            return {str: "", float: math.nan, int: -1}[self.base_type]
        if self.is_array:
            return [self.base_type(v) for v in value]
        return self.base_type(value)

    def from_ros(self, value: Any) -> Any:
        """ROS parameter value -> Python field value, validated (raises ConfigError)."""
        if self.is_mapping:
            return self._mapping(value or [])
        if self.is_array:
            if value is None:
                value = []
            try:
                items = [self._scalar(v) for v in value]
            except TypeError as exc:
                raise ConfigError(f"parameter {self.name} must be a list of {self.base_type.__name__}") from exc
            if self.optional and not items:
                return None
            return tuple(items) if self.is_tuple else items
        if self.optional and (
            (self.base_type is str and value == "")
            or (self.base_type is float and isinstance(value, float) and math.isnan(value))
            or (self.base_type is int and value == -1)
        ):
            return None
        return self._scalar(value)

    def _mapping(self, entries: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for entry in entries:
            key, sep, text = str(entry).partition("=")
            if not sep or not key.strip():
                raise ConfigError(f'parameter {self.name}: entry {entry!r} is not "key=value"')
            out[key.strip()] = self._scalar(_parse_scalar(text.strip(), self.base_type, self.name))
        return out

    def _scalar(self, value: Any) -> Any:
        t = self.base_type
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if t is bool and not isinstance(value, bool) or t is not bool and isinstance(value, bool):
            raise ConfigError(f"parameter {self.name} must be {t.__name__}, got {value!r}")
        if not isinstance(value, t):
            raise ConfigError(f"parameter {self.name} must be {t.__name__}, got {type(value).__name__} {value!r}")
        if self.value_range is not None and t in (int, float):
            lo, hi = self.value_range
            if not lo <= value <= hi:
                raise ConfigError(f"parameter {self.name}={value} is outside [{lo}, {hi}]")
        if self.choices and value not in self.choices:
            raise ConfigError(f"parameter {self.name}={value!r} is not one of {list(self.choices)}")
        return value


def _parse_scalar(text: str, t: type, name: str) -> Any:
    """The value of a "key=value" entry as ``t``."""
    if t is str:
        return text
    if t is bool:
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"parameter {name}: {text!r} is not true or false")
        return text.lower() == "true"
    try:
        return t(text)
    except ValueError as exc:
        raise ConfigError(f"parameter {name}: {text!r} is not a {t.__name__}") from exc


def field_docs(cls: type) -> dict[str, str]:
    """Field name -> documentation, from ``#:`` comments above or a string literal below each field (MRO merged)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            source = textwrap.dedent(inspect.getsource(klass))
        except (OSError, TypeError):
            continue
        lines = source.splitlines()
        tree = ast.parse(source)
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for i, node in enumerate(body):
            if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
                continue
            comment: list[str] = []
            j = node.lineno - 2
            while j >= 0 and lines[j].strip().startswith("#:"):
                comment.insert(0, lines[j].strip()[2:].strip())
                j -= 1
            text = " ".join(comment)
            nxt = body[i + 1] if i + 1 < len(body) else None
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant) and isinstance(nxt.value.value, str):
                text = " ".join(nxt.value.value.split())
            if text:
                docs[node.target.id] = text
    return docs


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """Strip ``| None`` from a type; return (type, optional)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def parameter_specs(config: Any, prefix: str = "") -> list[ParameterSpec]:
    """The parameters of a config dataclass instance (its values are the defaults), nested dataclasses flattened."""
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise ConfigError(f"parameter_specs needs a dataclass instance, got {config!r}")
    specs = list(_specs(config, prefix, ()))
    seen: set[str] = set()
    for spec in specs:
        if spec.name in seen:  # e.g. an inlined dict key equal to a field name of its parent
            raise ConfigError(f"two config fields map to the ROS parameter {spec.name}")
        seen.add(spec.name)
    return specs


def _specs(config: Any, prefix: str, path: tuple[str, ...]):
    cls = type(config)
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for f in dataclasses.fields(cls):
        if not f.init or f.name.startswith("_"):
            continue
        value = getattr(config, f.name)
        name = f"{prefix}.{f.name}" if prefix else f.name
        tp, optional = _unwrap(hints.get(f.name, type(value)))
        if dataclasses.is_dataclass(value):
            yield from _specs(value, name, (*path, f.name))
            continue
        if _is_dataclass_map(tp):
            group = prefix if (f.metadata or {}).get("inline") else name
            for key, entry in value.items():
                yield from _specs(entry, f"{group}.{key}" if group else key, (*path, f.name, key))
            continue
        base, is_array, is_mapping = _field_kind(tp, value)
        if base not in _SCALARS or (optional and not is_array and base is bool):
            raise ConfigError(
                f"config field {name} of type {tp} has no ROS parameter type (supported: bool, int, float, str, "
                "lists and tuples of one of them, dict[str, one of them], X | None except bool | None)"
            )
        meta = f.metadata or {}
        spec = ParameterSpec(
            name=name,
            path=(*path, f.name),
            base_type=base,
            is_array=is_array,
            optional=optional,
            is_tuple=typing.get_origin(tp) is tuple or tp is tuple,
            default=None,
            description=docs.get(f.name, ""),
            value_range=tuple(meta["range"]) if "range" in meta else None,
            choices=tuple(meta["choices"]) if "choices" in meta else None,
            read_only=bool(meta.get("read_only", False)),
            is_mapping=is_mapping,
        )
        spec.default = spec.to_ros(value)
        yield spec


def _is_dataclass_map(tp: Any) -> bool:
    """True for ``dict[str, SomeDataclass]``."""
    args = typing.get_args(tp)
    return typing.get_origin(tp) is dict and len(args) == 2 and args[0] is str and dataclasses.is_dataclass(args[1])


def _field_kind(tp: Any, value: Any) -> tuple[Any, bool, bool]:
    """(element type, is_array, is_mapping) of a field's type (element type None when it has none)."""
    origin = typing.get_origin(tp)
    if origin is dict or tp is dict:
        args = typing.get_args(tp)
        if args and args[0] is not str:
            return None, False, True
        base = args[1] if len(args) == 2 else (type(next(iter(value.values()))) if value else None)
        return base, False, True
    if origin in (list, tuple) or tp in (list, tuple):
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        base = args[0] if args and len(set(args)) == 1 else None
        if base is None and value:
            base = type(next(iter(value)))
        return base, True, False
    return tp, False, False


def declare_parameters(node: Any, config: Any, prefix: str = "") -> list[ParameterSpec]:
    """Declare one ROS parameter per config field on ``node`` (defaults from ``config``); return the specs.

    Values given on the command line or in a ``--params-file`` override the defaults, as usual in ROS.
    """
    specs = parameter_specs(config, prefix)
    for spec in specs:
        if (spec.is_array or spec.is_mapping) and not spec.default:
            # An empty list has no ROS type of its own; the descriptor carries it. rclpy refuses dynamic typing
            # together with a given type, so an empty float array takes doubles only (not YAML's 2 for 2.0).
            descriptor = spec.descriptor()
            descriptor.dynamic_typing = False
            node.declare_parameter(spec.name, Parameter.Type(spec.ros_type), descriptor)
        else:
            node.declare_parameter(spec.name, spec.default, spec.descriptor())
    return specs


def build_config(template: Any, specs: list[ParameterSpec], values: dict[str, Any]) -> Any:
    """A copy of ``template`` with ``values`` (parameter name -> ROS value) applied and validated.

    Raises ConfigError naming the parameter when a value has the wrong type or lies out of range, and whatever the
    dataclass's own ``__post_init__`` raises for inconsistent combinations.
    """
    by_name = {s.name: s for s in specs}
    updates: dict[tuple[str, ...], Any] = {}
    for name, value in values.items():
        if name not in by_name:
            continue
        updates[by_name[name].path] = by_name[name].from_ros(value)
    return _replace_nested(template, (), updates)


def _replace_nested(config: Any, path: tuple[str, ...], updates: dict[tuple[str, ...], Any]) -> Any:
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        p = (*path, f.name)
        if p in updates:
            changes[f.name] = updates[p]
        elif dataclasses.is_dataclass(value) and any(k[: len(p)] == p for k in updates):
            changes[f.name] = _replace_nested(value, p, updates)
        elif isinstance(value, dict) and any(k[: len(p)] == p for k in updates):
            changes[f.name] = {key: _replace_nested(entry, (*p, key), updates) for key, entry in value.items()}
    if not changes:
        return config
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"invalid {type(config).__name__}: {exc}") from exc


def read_parameters(node: Any, template: Any, specs: list[ParameterSpec]) -> Any:
    """Read the declared parameters back from ``node`` into a copy of ``template`` (raises ConfigError)."""
    values = {}
    for spec in specs:
        if not node.has_parameter(spec.name):
            continue
        try:
            param = node.get_parameter(spec.name)
        except ParameterUninitializedException:
            continue  # an empty-list parameter nobody set: the dataclass default stands
        if param.type_ == Parameter.Type.NOT_SET:
            continue
        values[spec.name] = param.value
    return build_config(template, specs, values)


def make_set_parameters_callback(
    specs: list[ParameterSpec], current: Callable[[], Any], apply: Callable[[Any, list[str]], None]
) -> Callable[[list], Any]:
    """An ``add_on_set_parameters_callback`` hook: validates a change by building the new config; refuses read-only
    parameters; on success calls ``apply(new_config, changed_names)``."""
    from rcl_interfaces.msg import SetParametersResult

    by_name = {s.name: s for s in specs}

    def callback(params: list) -> SetParametersResult:
        values = {}
        for p in params:
            spec = by_name.get(p.name)
            if spec is None:
                continue
            if spec.read_only:
                return SetParametersResult(successful=False, reason=f"{p.name} is read-only at run time")
            values[p.name] = p.value
        if not values:
            return SetParametersResult(successful=True)
        try:
            new = build_config(current(), specs, values)
        except ConfigError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        apply(new, list(values))
        return SetParametersResult(successful=True)

    return callback


def to_yaml_dict(config: Any, node_name: str, prefix: str = "") -> dict:
    """The ``--params-file`` YAML structure of a config (``{node_name: {ros__parameters: {...}}}``), nested maps."""
    params: dict[str, Any] = {}
    for spec in parameter_specs(config, prefix):
        cursor = params
        parts = spec.name.split(".")
        for part in parts[:-1]:
            cursor = cursor.setdefault(part, {})
        cursor[parts[-1]] = spec.default
    return {node_name: {"ros__parameters": params}}
