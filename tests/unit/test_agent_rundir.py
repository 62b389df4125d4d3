"""Run folders of dead agents are removed; a live (or unknown) agent's folder is kept."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from lama_desktop.cluster.agent_rundir import (
    PID_FILE,
    PREFIX,
    make_run_dir,
    remove_dead_run_dirs,
)


def _run_dir(root: Path, name: str, pid_line: str | None) -> Path:
    path = root / f"{PREFIX}{name}"
    path.mkdir()
    (path / "workers.sock").write_bytes(b"")
    if pid_line is not None:
        (path / PID_FILE).write_text(pid_line)
    return path


def test_dead_agents_folders_go_and_live_or_unknown_ones_stay(tmp_path: Path) -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_pid, dead_start = child.pid, psutil.Process(child.pid).create_time()
    child.wait(10)
    me = psutil.Process()
    dead = _run_dir(tmp_path, "dead", f"{dead_pid} {dead_start}\n")
    reused = _run_dir(tmp_path, "reused", f"{me.pid} {me.create_time() - 3600}\n")
    live = _run_dir(tmp_path, "live", f"{me.pid} {me.create_time()}\n")
    starting = _run_dir(tmp_path, "starting", None)  # pid not written yet
    garbled = _run_dir(tmp_path, "garbled", "not a pid")
    other = tmp_path / "lama-other-x"
    other.mkdir()
    (tmp_path / f"{PREFIX}file").write_text("1 1.0")  # not a folder
    removed = remove_dead_run_dirs(tmp_path)
    assert sorted(removed) == sorted([dead, reused])
    assert not dead.exists() and not reused.exists()
    assert all(p.exists() for p in (live, starting, garbled, other, tmp_path / f"{PREFIX}file"))


def test_a_new_run_dir_is_private_and_names_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = make_run_dir()
    assert path.parent == tmp_path and path.name.startswith(PREFIX)
    assert (path.stat().st_mode & 0o777) == 0o700
    pid, started = (path / PID_FILE).read_text().split()
    assert int(pid) == os.getpid()
    assert abs(float(started) - psutil.Process().create_time()) < 0.01
    assert remove_dead_run_dirs() == [] and path.exists()  # this agent is alive
