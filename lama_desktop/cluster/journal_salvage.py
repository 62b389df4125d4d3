"""A damaged journal: found on open (PRAGMA quick_check), moved aside, and its readable rows read.

SQLite's advice for a corrupt database is to stop writing to it, keep the file for a post-mortem
and copy out what can still be read: `find_damage`, `move_aside`, then `recover_into` a fresh
journal, row by row, skipping the rows of damaged pages.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lama_desktop.cluster.journal_rows import (
    OPEN_BATCH_STATES,
    StoredJob,
    batch_from_row,
    job_from_row,
    node_from_row,
)

if TYPE_CHECKING:
    from lama_desktop.cluster.journal import Journal

log = logging.getLogger(__name__)

_DAMAGE_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})
_SIDE_FILES = ("-wal", "-shm")  # SQLite's own companions of a WAL database
# The journal's rows get rowids 1, 2, ... (never negative); rowid gaps count the lost rows.
_FIRST_ROWID, _MAX_ROWID = 0, 2**63 - 1
_CHECK_ROWS = 3  # quick_check lines kept for the message


def is_damage(exc: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file is corrupt or not a database (not locked, not an I/O error)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _DAMAGE_CODES


def find_damage(path: Path) -> str | None:
    """What is wrong with the database at `path` (PRAGMA quick_check), or None when it is sound.

    A locked or unreadable file raises as before: only damage is worth moving a journal aside.
    """
    if not path.exists():
        return None
    db = _read_only(path)
    try:
        rows = db.execute(f"PRAGMA quick_check({_CHECK_ROWS})").fetchall()
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return str(exc)
    finally:
        db.close()
    if rows == [("ok",)]:
        return None
    return "; ".join(str(row[0]) for row in rows)


def _read_only(path: Path) -> sqlite3.Connection:
    # Read-only: closing it never checkpoints the -wal into a damaged file, nor deletes it.
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


def move_aside(path: Path, now: float | None = None) -> Path:
    """Rename the journal (with its -wal and -shm) to NAME.damaged-YYYYmmdd-HHMMSS; returns it.

    The -wal goes along under the matching name, so opening the moved copy still sees the
    commits that were only in the write-ahead log.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    target = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    path.rename(target)
    for suffix in _SIDE_FILES:
        side = path.with_name(path.name + suffix)
        if side.exists():
            side.rename(target.with_name(target.name + suffix))
    return target


@dataclass
class Salvage:
    """The rows read back from a damaged journal, table by table, and how many were lost."""

    tables: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    lost: int = 0  # rows that could not be read (the rowid gaps around damaged pages)
    readable: bool = True  # False: not even the list of tables could be read


def salvage(path: Path, tables: tuple[str, ...]) -> Salvage:
    """Read every row that can still be read from these tables of the database at `path`.

    Rows are read in rowid order; a damaged page stops a scan with an error, so the scan
    resumes at the first rowid past it that reads again (found by doubling, then bisecting).
    """
    found = Salvage()
    try:
        db = _read_only(path)
    except sqlite3.Error as exc:
        log.warning("journal salvage: %s cannot be opened (%s)", path, exc)
        return found
    try:
        try:
            db.execute("SELECT name FROM sqlite_master").fetchall()
        except sqlite3.DatabaseError:
            found.readable = False
            return found
        for table in tables:
            rows, lost = _readable_rows(db, table)
            found.tables[table] = rows
            found.lost += lost
    finally:
        db.close()
    return found


def _readable_rows(db: sqlite3.Connection, table: str) -> tuple[list[tuple[Any, ...]], int]:
    rows: list[tuple[Any, ...]] = []
    lost = 0
    start = _FIRST_ROWID
    while True:
        try:
            cursor = db.execute(
                f"SELECT rowid, * FROM {table} WHERE rowid >= ? ORDER BY rowid", (start,)
            )
            for rowid, *values in cursor:
                rows.append(tuple(values))
                start = rowid + 1
            return rows, lost
        except sqlite3.DatabaseError as exc:
            log.debug("journal salvage: %s unreadable at rowid %d (%s)", table, start, exc)
        resume = _next_readable(db, table, start)
        if resume is None:  # nothing reads after it (or the table's root page is gone)
            return rows, lost + 1
        lost += max(1, resume - start)
        start = resume


_FAILS = object()


def _first_row(db: sqlite3.Connection, table: str, at: int) -> object:
    """The first whole row at or after rowid `at` (None past the end), or _FAILS."""
    try:
        return db.execute(
            f"SELECT rowid, * FROM {table} WHERE rowid >= ? ORDER BY rowid LIMIT 1", (at,)
        ).fetchone()
    except sqlite3.DatabaseError:
        return _FAILS


def _next_readable(db: sqlite3.Connection, table: str, failed: int) -> int | None:
    """The first rowid after `failed` whose row reads again; None when nothing after it does."""
    low, step = failed, 1
    while True:  # double until a seek works: past the damaged page, or past the end
        high = min(low + step, _MAX_ROWID)
        if _first_row(db, table, high) is not _FAILS:
            break
        if high == _MAX_ROWID:
            return None
        low, step = high, step * 2
    while high - low > 1:  # then bisect back to the first rowid that reads
        middle = (low + high) // 2
        if _first_row(db, table, middle) is _FAILS:
            low = middle
        else:
            high = middle
    row = _first_row(db, table, high)
    return None if row is None or row is _FAILS else int(row[0])  # type: ignore[index]


@dataclass(frozen=True)
class JournalRecovery:
    """A damaged journal was replaced on open: where it went and what was carried over."""

    damaged: Path  # the moved-aside copy, kept for a post-mortem
    problem: str  # what quick_check (or SQLite) said
    nodes: int = 0
    batches: int = 0
    jobs: int = 0
    lost: int = 0  # rows that could not be read
    readable: bool = True  # False: nothing at all could be read from the damaged file

    def message(self) -> str:
        """One paragraph for the log and the app's notice."""
        kept = (
            f"Recovered {self.nodes} paired node(s) and {self.batches} unfinished batch(es) "
            f"with {self.jobs} photo(s)"
        )
        lost = f"; about {self.lost} row(s) could not be read" if self.lost else ""
        if not self.readable:
            kept, lost = "Nothing could be read from it (pair the nodes again)", ""
        return (
            f"The job journal was damaged ({self.problem}) and was replaced by a new one; "
            f"the damaged file was kept as {self.damaged}. {kept}{lost}."
        )


def recover_into(journal: Journal, damaged: Path, problem: str) -> JournalRecovery:
    """Copy what still reads from the damaged file: paired nodes first, then open batches."""
    found = salvage(damaged, ("nodes", "batches", "jobs"))
    lost = found.lost
    nodes = 0
    for row in found.tables.get("nodes", []):
        try:
            journal.save_node(node_from_row(row))
            nodes += 1
        except (sqlite3.Error, ValueError, TypeError, IndexError):
            lost += 1
    jobs: dict[str, list[StoredJob]] = {}
    for row in found.tables.get("jobs", []):
        try:
            job = job_from_row(row)
        except (ValueError, TypeError, IndexError):
            lost += 1
            continue
        jobs.setdefault(job.batch_id, []).append(job)
    batches = kept_jobs = 0
    for row in found.tables.get("batches", []):
        try:
            batch = batch_from_row(row)
            if batch.state not in OPEN_BATCH_STATES:
                continue
            these = sorted(jobs.get(batch.batch_id, []), key=lambda j: j.seq)
            journal.add_batch(batch, these)
        except (sqlite3.Error, ValueError, TypeError, IndexError) as exc:
            log.error("journal: batch %r not recovered (%s)", row[:2], exc)
            lost += 1
            continue
        batches += 1
        kept_jobs += len(these)
    return JournalRecovery(damaged, problem, nodes, batches, kept_jobs, lost, found.readable)
