"""A batch's output folders: checked writable before any photo is cleaned, and cleared of the
temporary files that killed writers left behind."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from lama_desktop.engine.imageio import TEMP_NAME, temp_path
from lama_desktop.engine.plan import BatchPlan

log = logging.getLogger(__name__)

# Where a file system has no locks, only a temporary file this old is taken for a leftover.
UNLOCKED_LEFTOVER_AGE_S = 600.0


def unwritable_output(plan: BatchPlan) -> str | None:
    """Why this batch's results could not be written (one reason, naming the folder), or None.

    Writes and removes one small probe file in each output folder (or, for a folder still to
    be created, in the nearest one that exists): permissions, a read-only mount or a full
    quota show up here rather than after every photo was cleaned.
    """
    probed: dict[Path, str | None] = {}
    for folder in sorted({job.output.parent for job in plan.jobs}):
        existing = _nearest_existing(folder)
        if not existing.is_dir():
            return f"cannot create the output folder {folder}: {existing} is not a folder"
        if existing not in probed:
            probed[existing] = _probe(existing)
        problem = probed[existing]
        if problem is not None:
            verb = "write to" if existing == folder else "create"
            return f"cannot {verb} the output folder {folder}: {problem}"
    return None


def _nearest_existing(folder: Path) -> Path:
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return folder  # not reached: "/" or "." exists


def _probe(folder: Path) -> str | None:
    """None when a new file can be made in `folder`, else the system's reason."""
    probe = temp_path(folder / ".lama-desktop-write-check")
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        return exc.strerror or str(exc)
    os.close(fd)
    probe.unlink(missing_ok=True)
    return None


def remove_leftovers(plan: BatchPlan) -> list[Path]:
    """Remove the temporary outputs (`.NAME.<hex>.tmp`) that killed writers left for this plan.

    Only files of write_atomic's exact pattern, named after one of the plan's own outputs and
    in that output's folder, are touched; a file another writer is writing now is locked by
    it and kept.
    """
    names: dict[Path, set[str]] = {}
    for job in (*plan.jobs, *plan.already_done):
        names.setdefault(job.output.parent, set()).add(job.output.name)
    removed = []
    for folder, outputs in names.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # not made yet: nothing was left there
        for entry in entries:
            match = TEMP_NAME.fullmatch(entry.name)
            if match is None or match["name"] not in outputs:
                continue
            if entry.is_file(follow_symlinks=False) and _remove_if_abandoned(Path(entry.path)):
                removed.append(Path(entry.path))
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted run", len(removed))
    return removed


def _remove_if_abandoned(path: Path) -> bool:
    """Remove `path` unless a live writer holds its lock; True when removed."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        if not _lock_is_free(fd, path):
            return False
        path.unlink()  # while holding the lock: no writer can take it meanwhile
        return True
    except OSError:
        return False  # gone already, or in use (Windows)
    finally:
        os.close(fd)


def _lock_is_free(fd: int, path: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # Windows: a file being written cannot be unlinked, which is enough
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a writer is alive and writing it
    except OSError:  # no locks on this file system: go by age
        return time.time() - path.stat().st_mtime > UNLOCKED_LEFTOVER_AGE_S
    return True
