"""``z123 train-segmenter``: train the learned depth-only segmenter (``segmentation.method: learned``) on simulated
scenes, on the CPU.

    z123 train-segmenter --out RUN [--seed S] [--data CACHE] [--steps N] [--train-scenes N] ...

The scenes are rendered once into the cache folder (seeded: the same seed gives the same scenes) and reused by later
runs. RUN/checkpoints/step-NNNNNN/ holds each checkpoint (learned_seg.safetensors + learned_seg.json: the configs,
the command, the validation figures), RUN/best/ the one with the highest mean IoU on the held-out SIMULATED
validation scenes, RUN/history.json the loss and validation curve. Use it with ``segmentation.learned_weights`` (or
$Z123_LEARNED_SEG_WEIGHTS), or copy best/* to z123_ros/segmentation/weights/ to ship it. Every field of
TrainSegmenterConfig and NetConfig is a flag, with the field's documentation as help. Bad input exits 2 with one line.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import logging
import sys

from z123_ros.errors import Z123Error
from z123_ros.segmentation.learned_config import NetConfig, TrainSegmenterConfig
from z123_ros.segmentation.learned_train import train

logger = logging.getLogger(__name__)

_ALIASES = {"out_dir": "--out", "data_dir": "--data"}


def _field_docs(cls: type) -> dict[str, str]:
    """The string right after each field of a dataclass (its documentation), read from the source."""
    body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr):
            docs[node.target.id] = " ".join(str(getattr(nxt.value, "value", "")).split())
    return docs


def _add_fields(p: argparse.ArgumentParser, cls: type, prefix: str = "") -> None:
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):
        if f.type not in ("int", "float", "str"):
            continue
        flag = _ALIASES.get(f.name, "--" + f.name.replace("_", "-"))
        kind = {"int": int, "float": float, "str": str}[f.type]
        p.add_argument(flag, dest=prefix + f.name, type=kind, default=None, help=f"{docs.get(f.name, '')} "
                       f"(default {getattr(cls(), f.name)!r})")  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-segmenter`` subcommand to the ``z123`` tool."""
    p = subparsers.add_parser(
        "train-segmenter",
        help="train the learned depth-only segmenter on simulated scenes (CPU)",
        description=__doc__.split("\n\n")[0],
    )
    _add_fields(p, TrainSegmenterConfig)
    _add_fields(p, NetConfig, prefix="net.")
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> TrainSegmenterConfig:
    values = {k: v for k, v in vars(args).items() if v is not None}
    net = NetConfig(**{k[4:]: v for k, v in values.items() if k.startswith("net.")})
    own = {f.name for f in dataclasses.fields(TrainSegmenterConfig)} - {"net"}
    config = TrainSegmenterConfig(**{k: v for k, v in values.items() if k in own}, net=net)
    config.check()
    return config


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        history = train(config)
    except Z123Error as exc:
        sys.stderr.write(f"z123 train-segmenter: {exc}\n")
        return 2
    best = history["val"][[v["step"] for v in history["val"]].index(int(history["best"].split("-")[1]))]
    sys.stdout.write(f"best: {config.out_dir}/best ({history['best']}, simulated validation mean IoU "
                     f"{best['mean_iou']:.3f}, found {best['found']}/{best['objects']})\n")  # fmt: skip
    return 0
