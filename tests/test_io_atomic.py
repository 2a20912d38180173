"""Atomic output folders (z123_ros.io.staged_output): old folder whole until one rename swaps in the new one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from z123_ros import io
from z123_ros.errors import InputError
from z123_ros.io import clean_stale_staging, replace_folder, staged_output

REPO = Path(__file__).resolve().parents[1]

#: A writer that keeps replacing ``out`` with generation 1, 2, 3...: 20 files each, written slowly enough that a
#: kill lands anywhere (while writing, just before or after the swap, while deleting the old folder).
WRITER = """
import sys, time
from pathlib import Path
from z123_ros.io import staged_output
out = Path(sys.argv[1])
for gen in range(1, 10**6):
    with staged_output(out, owned=("part_*.txt", "manifest.json")) as tmp:
        names = [f"part_{i:02d}.txt" for i in range(20)]
        for name in names:
            (tmp / name).write_text(str(gen) * 1000)
            time.sleep(0.001)
        (tmp / "manifest.json").write_text('{"gen": %d, "files": %s}' % (gen, str(names).replace("'", '"')))
    print(gen, flush=True)
"""


def _complete_generation(out: Path) -> int:
    """The generation ``out`` holds, asserting it is complete and of one generation only (0 = no folder)."""
    if not out.exists():
        return 0
    manifest = json.loads((out / "manifest.json").read_text())
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*manifest["files"], "manifest.json"]), names
    for name in manifest["files"]:
        assert (out / name).read_text() == str(manifest["gen"]) * 1000, name
    return manifest["gen"]


def test_killed_writer_always_leaves_the_old_or_the_new_complete_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    rng = random.Random(17)  # the kill points are random but the test is repeatable
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    last = 0
    for _ in range(12):  # bounded: 12 kills
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        proc.stdout.readline()  # it has replaced the folder at least once: the kill lands in a later replacement
        time.sleep(rng.uniform(0.0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        gen = _complete_generation(out)
        assert gen >= 1
        last = gen
    # Leftover staging folders of the killed runs are removed by the next run of the same output.
    with staged_output(out, owned=("part_*.txt", "manifest.json")) as tmp:
        (tmp / "manifest.json").write_text('{"gen": 0, "files": []}')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert last >= 1 and _complete_generation(out) == 0
    if os.environ.get("Z123_RELIABILITY_OUT"):
        with open(os.environ["Z123_RELIABILITY_OUT"], "a") as f:
            f.write(json.dumps({"case": "output folder: writer SIGKILLed", "kills": 12, "complete_after_each": 12}))
            f.write("\n")


def test_replacement_is_whole_and_a_failure_keeps_the_old_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out) as tmp:
        (tmp / "a.txt").write_text("old")
        (tmp / "only_old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_output(out) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("the command failed half way")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "only_old.txt"]
    assert (out / "a.txt").read_text() == "old"
    with staged_output(out) as tmp:
        (tmp / "a.txt").write_text("new")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]  # nothing of the old run survives a replacement
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_the_users_files_are_carried_over_and_a_foreign_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "mask_01.png").write_text("an old output")
    with staged_output(out, owned=("mask_*.png", "objects.json")) as tmp:
        (tmp / "objects.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt", "objects.json"]
    assert (out / "notes.txt").read_text() == "mine"
    (out / "thesis").mkdir()
    with pytest.raises(InputError, match="thesis"), staged_output(out, owned=("mask_*.png", "objects.json")):
        pass
    assert (out / "thesis").is_dir() and (out / "objects.json").exists()
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="not a folder"), staged_output(tmp_path / "file"):
        pass


def test_unwritable_location_is_one_input_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="cannot write the output folder"), staged_output(tmp_path / "file" / "out"):
        pass


def test_fallback_swap_and_a_killed_fallback_is_repaired(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    with staged_output(out) as tmp:
        (tmp / "a.txt").write_text("old")
    monkeypatch.setattr(io, "_exchange", lambda a, b: False)  # a filesystem without RENAME_EXCHANGE
    with staged_output(out) as tmp:
        (tmp / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    # Killed between the fallback's two renames: out is missing, the old folder sits aside, whole.
    dead_pid = _dead_pid()
    aside = tmp_path / f".out.z123-old-{dead_pid}-abc123"
    out.rename(aside)
    stale = tmp_path / f".out.z123-staging-{dead_pid}-def456"
    stale.mkdir()
    (stale / "a.txt").write_text("half")
    clean_stale_staging(out)
    assert (out / "a.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staging_of_a_live_run_is_left_alone(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".out.z123-staging-{sleeper.pid}-abc123"
        live.mkdir()
        clean_stale_staging(tmp_path / "out")
        assert live.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()
    clean_stale_staging(tmp_path / "out")
    assert not live.exists()


def test_replace_folder_onto_nothing_is_a_rename(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "x").write_text("1")
    replace_folder(staging, tmp_path / "out")
    assert (tmp_path / "out" / "x").read_text() == "1" and not staging.exists()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid
