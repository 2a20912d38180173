"""Run every benchmark of the project and print one Markdown report with the machine's description.

    python bench/run_all.py [--quick] [--only NAME ...] [--out FILE]

Each bench/bench_<area>.py exposes ``run(quick: bool) -> list[dict]``; rows are printed per benchmark as a table.
A benchmark that fails is reported as failed with its error, and the others still run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import traceback
from pathlib import Path

from _table import markdown_table  # bench/ is sys.path[0] when a bench script runs

HERE = Path(__file__).resolve().parent
# Explicit order: the pipeline from camera frame to mesh, then the system around it.
BENCHMARKS = (
    "segmentation",
    "novel_views",
    "reconstruction",
    "eval",
    "dispatch",
    "dispatch_startup",
    "isolation",
    "node",
    "training",
)


def machine_description() -> str:
    import numpy
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB, {gpu}; Python {platform.python_version()}, "
        f"torch {torch.__version__}, numpy {numpy.__version__}, {platform.system()} {platform.release()}"
    )


def load(name: str):
    path = HERE / f"bench_{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes and shorter runs")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, help="run only these")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    sys.path.insert(0, str(HERE.parent))

    report = ["# z123_ros benchmarks", "", f"Machine: {machine_description()}", ""]
    failed = 0
    for name in args.only or BENCHMARKS:
        if not (HERE / f"bench_{name}.py").is_file():
            continue
        t0 = time.monotonic()
        try:
            rows = load(name).run(quick=args.quick)
            body = markdown_table(rows)
        except Exception:  # noqa: BLE001 - one failing benchmark must not hide the others' figures
            failed += 1
            body = "FAILED:\n```\n" + traceback.format_exc(limit=5) + "```"
        report += [f"## {name} ({time.monotonic() - t0:.0f} s{', quick' if args.quick else ''})", "", body, ""]
        print("\n".join(report[-4:]), flush=True)
    text = "\n".join(report)
    if args.out:
        args.out.write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
