"""``z123 bag``: record and play rosbag2 bags without a ROS 2 install (``ros2 bag`` has no pip wheel).

    z123 bag record --out sim.bag --sim --frames 30                 # the simulated camera (and /tf) into a bag
    z123 bag record --out sim.bag --sim --sim-param trajectory:=orbit --frames 60
    z123 bag record --out robot.bag --duration 20                   # whatever publishes the camera topics now
    z123 bag play sim.bag [--rate 0.5] [--loop]                     # original timing, /clock
    z123 bag info sim.bag

Bags are standard rosbag2 (sqlite3 by default, ``--storage mcap``): ``ros2 bag play`` on a full ROS 2 install plays
them, and this command plays theirs. Exit code 0 on success, 2 with one line on stderr for bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from z123_ros.errors import Z123Error


def _parse_param(text: str) -> tuple[str, object]:
    name, sep, value = text.partition(":=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME:=VALUE")
    # YAML typing, as ROS parameter overrides: 160 -> int, 0.5 -> float, [a, b] -> list, true -> bool.
    return name, yaml.safe_load(value)


def _parse_remap(text: str) -> tuple[str, str]:
    source, sep, target = text.partition(":=")
    if not sep or not source.startswith("/") or not target.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} is not /FROM:=/TO")
    return source, target


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bag",
        help="record / play rosbag2 bags (sim camera, /tf) without ROS installed",
        description=__doc__.split("\n\n")[0],
    )
    sub = parser.add_subparsers(dest="bag_command", required=True, metavar="ACTION")
    rec = sub.add_parser("record", help="record camera topics and /tf into a new bag")
    rec.add_argument("--out", required=True, type=Path, help="bag folder to create (must not exist)")
    rec.add_argument("--topics", nargs="+", help="topics to record (default: the camera topics, /tf, /tf_static)")
    rec.add_argument("--storage", default="sqlite3", choices=("sqlite3", "mcap"))
    rec.add_argument("--frames", type=int, default=0, help="stop after this many colour images (0 = no limit)")
    rec.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (0 = Ctrl-C)")
    rec.add_argument("--sim", action="store_true", help="run the simulated camera in this process and record it")
    rec.add_argument(
        "--sim-param",
        action="append",
        type=_parse_param,
        default=[],
        metavar="NAME:=VALUE",
        help="simulated camera parameter, e.g. trajectory:=orbit or scene.width:=320 (repeatable)",
    )
    rec.set_defaults(func=_record)
    play = sub.add_parser("play", help="publish a bag's topics with their original timing (and /clock)")
    play.add_argument("bag", type=Path)
    play.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1)")
    play.add_argument("--loop", action="store_true", help="start again at the end, until Ctrl-C")
    play.add_argument("--topics", nargs="+", help="only these topics")
    play.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    play.add_argument(
        "--remap",
        action="append",
        type=_parse_remap,
        default=[],
        metavar="FROM:=TO",
        help="publish topic FROM as TO (absolute names; repeatable)",
    )
    play.add_argument("--delay", type=float, default=1.0, help="seconds to let subscribers discover the publishers")
    play.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=0.0,
        metavar="S",
        help="wait up to S seconds until every topic has a subscriber",
    )
    play.set_defaults(func=_play)
    info = sub.add_parser("info", help="topics, message counts and duration of a bag")
    info.add_argument("bag", type=Path)
    info.set_defaults(func=_info)


def _print(summary: object) -> None:
    lines = [f"{summary.path}: {summary.duration_s:.2f} s"]
    lines += [f"  {topic}: {n}" for topic, n in sorted(summary.counts.items())]
    sys.stdout.write("\n".join(lines) + "\n")


def _record(args: argparse.Namespace) -> int:
    # rclpy and rosbags only when a bag command runs: `z123 --help` stays fast.
    from z123_ros.ros import bag

    config = bag.RecordConfig(
        out=args.out,
        storage=args.storage,
        frames=args.frames,
        duration_s=args.duration,
        sim=args.sim,
        sim_parameters=dict(args.sim_param),
    )
    if args.topics:
        config.topics = tuple(args.topics)
    return _run("record", lambda: bag.record(config))


def _play(args: argparse.Namespace) -> int:
    from z123_ros.ros import bag

    config = bag.PlayConfig(
        bag=args.bag,
        rate=args.rate,
        loop=args.loop,
        clock=not args.no_clock,
        topics=tuple(args.topics or ()),
        delay_s=args.delay,
        wait_for_subscribers_s=args.wait_for_subscribers,
        remap=dict(args.remap),
    )
    return _run("play", lambda: bag.play(config))


def _info(args: argparse.Namespace) -> int:
    from z123_ros.ros import bag

    return _run("info", lambda: bag.summarise(args.bag))


def _run(action: str, fn) -> int:
    try:
        summary = fn()
    except Z123Error as exc:
        sys.stderr.write(f"z123 bag {action}: {exc}\n")
        return 2
    _print(summary)
    return 0
