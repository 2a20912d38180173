"""Regenerate the README's reliability table: run the failure drills, measure, write the table between its markers.

    python scripts/reliability_table.py            # all drills (about 10-20 minutes on a loaded 2-core machine)
    python scripts/reliability_table.py --from-file runs.jsonl   # only rewrite the table from earlier results

The drills are the tests that kill things (tests/test_ros_node_ray_faults.py, test_dispatch_supervised.py,
test_dispatch_multinode.py, test_io_atomic.py); run with Z123_RELIABILITY_OUT set, each appends what it measured
(seconds from the kill to DEGRADED, to the job's result, to the next published reconstruction) as one JSON line.
The table is written into README.md between ``<!-- reliability:start -->`` and ``<!-- reliability:end -->``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
DRILLS = [
    "tests/test_ros_node_ray_faults.py",
    "tests/test_dispatch_supervised.py",
    "tests/test_dispatch_multinode.py",
    "tests/test_io_atomic.py::test_killed_writer_always_leaves_the_old_or_the_new_complete_folder",
]

#: case -> what the system does (the measured columns come from the runs).
BEHAVIOUR = {
    "node: raylet killed": "node lives; dispatcher DEGRADED (the dispatch process sees its raylet exit), "
    "segmentation goes on, rejected jobs counted as drop.dispatch_degraded; the standby dispatch process starts a "
    "fresh embedded Ray at once, lost jobs resubmitted",
    "node: gcs_server killed": "as above (GCS exit)",
    "node: driver killed": "as above (the dispatch process's death is seen at once on its socket)",
    "node: worker killed": "Ray restarts the actor, the dispatcher re-runs the job once (retries_on_worker_death); "
    "Ray itself stays up, no DEGRADED",
    "dispatcher: raylet killed under a job": "the job in flight is resubmitted to the restarted Ray and completes",
    "dispatcher: gcs_server killed under a job": "same",
    "dispatcher: driver killed under a job": "same",
    "cluster: worker node killed mid-job": "Ray restarts the actor on the other node offering the pool's custom "
    "resource; the job re-runs there and completes",
    "output folder: writer SIGKILLed": "the old complete folder, or the new complete one (one renameat2 swap); "
    "staging left by the kill removed by the next run",
}


def _run_drills(out: Path) -> int:
    env = {**os.environ, "Z123_RELIABILITY_OUT": str(out), "Z123_SLOW": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *DRILLS]
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def victim_restarted(case: str) -> bool:
    """Cases whose recovery is a new dispatch process with a fresh Ray (the stage breakdown applies)."""
    return any(f"{victim} killed" in case for victim in ("raylet", "gcs_server", "driver"))


def _fmt(value: object) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k.removeprefix('drop.')} {v}" for k, v in value.items()) or "none"
    return "" if value is None else str(value)


def table(records: list[dict]) -> str:
    """Markdown table: one row per case (the latest measurement of each)."""
    by_case = {rec["case"]: rec for rec in records}
    lines = [
        "| case | what happens | DEGRADED after (s) | job done or reconstruction again after (s) | load | notes |",
        "|---|---|---|---|---|---|",
    ]
    for case in [c for c in BEHAVIOUR if c in by_case] + [c for c in by_case if c not in BEHAVIOUR]:
        rec = by_case[case]
        again = rec.get("reconstruction_again_s", rec.get("job_done_s", ""))
        notes = []
        if "dropped" in rec:
            notes.append(f"dropped while degraded: {_fmt(rec['dropped'])}")
        if "job_sleep_s" in rec:
            notes.append(f"includes the job's own {rec['job_sleep_s']} s")
        if rec.get("restart_s") and victim_restarted(case):
            stages = rec["restart_s"]
            shown = [k for k in ("cleanup", "backoff", "python_and_imports", "ray_init", "first_warm") if k in stages]
            notes.append("restart: " + ", ".join(f"{k} {stages[k]:.1f}" for k in shown) + " s")
        if "kills" in rec:
            notes.append(f"{rec['complete_after_each']}/{rec['kills']} kills left a complete folder")
        degraded = _fmt(rec.get("degraded_s")) or "-"
        load = _fmt(rec.get("load")) or "-"
        row = [case, BEHAVIOUR.get(case, ""), degraded, _fmt(again) or "-", load, "; ".join(notes)]
        lines.append("| " + " | ".join(row) + " |")
    lines.append("")
    lines.append(
        f"Measured by `python scripts/reliability_table.py` on a {os.cpu_count()}-core machine shared with other "
        "work (load: 1-minute load average when the case was measured); times from the SIGKILL. Waits in the tests "
        "are event waits, never thresholds. Goals: DEGRADED within 2 s, reconstructions again within 30 s."
    )
    return "\n".join(lines)


def write_readme(text: str) -> None:
    readme = README.read_text()
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the {START} ... {END} markers")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    README.write_text(f"{head}{START}\n{text}\n{END}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from-file", type=Path, help="JSON lines of an earlier run: only rewrite the table")
    args = parser.parse_args()
    source = args.from_file
    status = 0
    if source is None:
        source = Path(tempfile.mkstemp(prefix="z123_reliability_", suffix=".jsonl")[1])
        status = _run_drills(source)
    records = [json.loads(line) for line in source.read_text().splitlines() if line.strip()]
    if not records:
        sys.stderr.write(f"reliability_table: no measurements in {source}\n")
        return 2
    write_readme(table(records))
    sys.stdout.write(f"README.md reliability table: {len(records)} measurements from {source}\n")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
