"""The agent's private run folder (/tmp/lama-agent-*, its workers' socket): made with the agent's
pid inside, and those of agents that died without cleaning up (SIGKILL) removed at a later start."""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

import psutil

log = logging.getLogger(__name__)

PREFIX = "lama-agent-"
PID_FILE = "agent.pid"
_SAME_START_S = 1.0  # create times closer than this are the same process (not a reused pid)


def make_run_dir() -> Path:
    """A new private folder (mode 0700) that names its owner: pid and process start time."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX))
    me = psutil.Process()
    (path / PID_FILE).write_text(f"{me.pid} {me.create_time()}\n", encoding="ascii")
    return path


def remove_dead_run_dirs(root: Path | None = None) -> list[Path]:
    """Remove the run folders in `root` (the temp folder) whose agent is no longer running.

    Only this user's folders with our prefix and a pid file are considered. A folder whose
    pid file is missing or unreadable is kept: its agent may be starting right now.
    """
    root = Path(tempfile.gettempdir()) if root is None else root
    removed = []
    for path in root.glob(f"{PREFIX}*"):
        if not _ours(path) or _owner_alive(path / PID_FILE):
            continue
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists():
            removed.append(path)
    if removed:
        log.info("removed %d run folder(s) of agents that are gone", len(removed))
    return removed


def _ours(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    getuid = getattr(os, "geteuid", None)
    mine = getuid is None or info.st_uid == getuid()
    return stat.S_ISDIR(info.st_mode) and mine


def _owner_alive(pid_file: Path) -> bool:
    try:
        pid_text, created_text = pid_file.read_text(encoding="ascii").split()
        pid, created = int(pid_text), float(created_text)
    except (OSError, ValueError):
        return True  # unknown owner: never remove what may be a live agent's
    try:
        started = psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:
        return True  # exists, but not ours to inspect
    return abs(started - created) < _SAME_START_S  # else the pid was reused by another process
