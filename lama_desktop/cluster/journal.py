"""SQLite (WAL) journal of batches, jobs and paired nodes, so a crash or restart loses no work.

A job is written DONE only after its output is on disk (atomic rename, fsync), so the journal
may lag the disk but never lead it: on resume, an output that exists and is newer than the
batch is recognised as this batch's own work (see `Journal.unfinished`). A damaged journal is
replaced on open (journal_salvage); a deleted one is noticed (`is_gone`) and `recreate`d.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

from lama_desktop.cluster.events import BatchState, JobState
from lama_desktop.cluster.journal_rows import (
    OPEN_BATCH_STATES,
    StoredBatch,
    StoredJob,
    StoredNode,
    batch_from_row,
    job_from_row,
    job_row,
    node_from_row,
)
from lama_desktop.cluster.journal_salvage import (
    JournalRecovery,
    find_damage,
    move_aside,
    recover_into,
)

__all__ = ["Journal", "MissingRows", "StoredBatch", "StoredJob", "StoredNode"]

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    output_dir TEXT NOT NULL,
    settings TEXT NOT NULL,
    overwrite INTEGER NOT NULL,
    state TEXT NOT NULL,
    paused INTEGER NOT NULL DEFAULT 0,
    position INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    batch_id TEXT NOT NULL REFERENCES batches(batch_id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    image TEXT NOT NULL,
    mask TEXT NOT NULL,
    output TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    crashes INTEGER NOT NULL DEFAULT 0,
    reason TEXT NOT NULL DEFAULT '',
    seconds REAL,
    node TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_batch ON jobs (batch_id, seq);
CREATE TABLE IF NOT EXISTS nodes (
    node_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    address TEXT NOT NULL,
    server_key TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    added REAL NOT NULL
);
"""
log = logging.getLogger(__name__)


class MissingRows(Exception):
    """An UPDATE found no row to change: the journal lost rows it should hold."""

    def __init__(self, table: str, keys: list[str]) -> None:
        more = f" and {len(keys) - 3} more" if len(keys) > 3 else ""
        super().__init__(f"the journal has no {table} row for {', '.join(keys[:3])}{more}")
        self.table = table
        self.keys = keys


def default_journal_path() -> Path:
    """$LAMA_DATA_DIR/journal.sqlite3, else the platform's data folder."""
    from lama_desktop.config import app_dirs

    return app_dirs().journal


class Journal:
    """The journal database. Thread-safe: the scheduler calls it from one executor thread."""

    def __init__(self, path: Path) -> None:
        """Open (or create) the journal; a damaged one is moved aside and what reads is kept.

        `recovery` then says so (the scheduler and the app show it); otherwise it is None.
        """
        self.path = Path(path)
        self.recovery: JournalRecovery | None = None
        self._lock = threading.Lock()
        problem = find_damage(self.path)
        damaged = move_aside(self.path) if problem is not None else None
        self._connect()
        # Paired nodes, mirrored: a deleted journal is written again from this and the queue.
        self._nodes = {node.node_id: node for node in self.nodes()}
        if damaged is not None and problem is not None:
            self.recovery = recover_into(self, damaged, problem)
            log.warning("journal: %s", self.recovery.message())

    def _connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss too, so DONE is never ahead of the disk's truth.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA busy_timeout=5000")
        with self._lock:
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if row is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                self._db.close()
                raise RuntimeError(
                    f"{self.path}: journal schema {row[0]} is not the supported {SCHEMA_VERSION}"
                )
        stat = self.path.stat()
        self._identity = (stat.st_dev, stat.st_ino)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ----- a journal deleted under us --------------------------------------------------------

    def is_gone(self) -> bool:
        """Whether the file was deleted or replaced since it was opened (writes would be lost)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return True
        return (stat.st_dev, stat.st_ino) != self._identity

    def recreate(self, batches: list[tuple[StoredBatch, list[StoredJob]]]) -> None:
        """Start a fresh journal at the same path with the paired nodes and these batches."""
        with self._lock:
            self._db.close()  # the last connection: SQLite removes its -wal and -shm
            if not self.path.exists():
                for suffix in ("-wal", "-shm"):  # never replayed into the new file
                    Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        self._connect()
        for node in list(self._nodes.values()):
            self.save_node(node)
        for batch, jobs in batches:
            self.add_batch(batch, jobs, replace=True)

    # ----- writing -------------------------------------------------------------------------

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _update(self, table: str, sql: str, rows: list[tuple[Any, ...]]) -> None:
        """Run an UPDATE per row (the key last); rows it finds nothing for raise MissingRows.

        The rows that exist are committed: their news is true whatever happened to the others.
        """
        missing = []
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for row in rows:
                    if self._db.execute(sql, row).rowcount == 0:
                        missing.append(str(row[-1]))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        if missing:
            raise MissingRows(table, missing)

    # ----- batches and jobs -------------------------------------------------------------------

    def add_batch(
        self, batch: StoredBatch, jobs: list[StoredJob], *, replace: bool = False
    ) -> None:
        """Record a new batch and all its jobs in one transaction (`replace`: over old rows)."""
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    f"{verb} INTO batches VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        batch.batch_id,
                        batch.name,
                        batch.output_dir,
                        json.dumps(batch.settings),
                        int(batch.overwrite),
                        str(batch.state),
                        int(batch.paused),
                        batch.position,
                        batch.created,
                    ),
                )
                self._db.executemany(
                    f"{verb} INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [job_row(job) for job in jobs],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def update_jobs(self, jobs: list[StoredJob]) -> None:
        """Record new states, attempts and reasons of these jobs (one transaction)."""
        self._update(
            "job",
            "UPDATE jobs SET state=?, attempts=?, crashes=?, reason=?, seconds=?, node=? "
            "WHERE job_id=?",
            [
                (str(j.state), j.attempts, j.crashes, j.reason, j.seconds, j.node, j.job_id)
                for j in jobs
            ],
        )

    def update_batch(self, batch_id: str, state: BatchState, paused: bool, position: int) -> None:
        """Record a batch's state, pause flag and queue position."""
        self._update(
            "batch",
            "UPDATE batches SET state=?, paused=?, position=? WHERE batch_id=?",
            [(str(state), int(paused), position, batch_id)],
        )

    def delete_batch(self, batch_id: str) -> None:
        """Forget a batch and its jobs."""
        self._write("DELETE FROM batches WHERE batch_id=?", [(batch_id,)])

    def prune_finished(self, batch_ids: list[str]) -> None:
        """Forget finished batches with their jobs: every one recorded as finished, and these
        (finished, though their last state may not be written yet)."""
        finished = tuple(str(s) for s in BatchState if s not in OPEN_BATCH_STATES)
        marks = ",".join("?" * len(finished))
        self._write(f"DELETE FROM batches WHERE state IN ({marks})", [finished])
        self._write("DELETE FROM batches WHERE batch_id=?", [(b,) for b in batch_ids])

    def batch(self, batch_id: str) -> StoredBatch | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
        return None if row is None else batch_from_row(row)

    def jobs(self, batch_id: str) -> list[StoredJob]:
        """The batch's jobs in submission order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE batch_id=? ORDER BY seq", (batch_id,)
            ).fetchall()
        return [job_from_row(row) for row in rows]

    def unfinished(self) -> list[tuple[StoredBatch, list[StoredJob]]]:
        """Batches still queued, running or paused, oldest first, with their jobs.

        A job not yet DONE here whose output exists and was written after the batch was
        submitted is returned as DONE: the scheduler stopped between the atomic write and the
        journal commit, and redoing it would write that output a second time.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM batches WHERE state IN (?,?,?) ORDER BY position, created",
                tuple(str(s) for s in OPEN_BATCH_STATES),
            ).fetchall()
        result = []
        for row in rows:
            try:
                batch, stored_jobs = batch_from_row(row), self.jobs(row[0])
            except (ValueError, KeyError, TypeError) as exc:  # json errors are ValueErrors
                # A damaged row (or one from another version) is named and left alone; the
                # other batches still resume and the app still starts.
                log.error("journal: batch %s cannot be read (%s); not resumed", row[0], exc)
                continue
            jobs = []
            for job in stored_jobs:
                if job.state in (JobState.QUEUED, JobState.RUNNING) and _written_since(
                    Path(job.output), batch.created
                ):
                    job = StoredJob(**{**job.__dict__, "state": JobState.DONE})
                jobs.append(job)
            result.append((batch, jobs))
        return result

    # ----- paired nodes -----------------------------------------------------------------------

    def save_node(self, node: StoredNode) -> None:
        """Add or replace a paired node."""
        self._write(
            "INSERT OR REPLACE INTO nodes VALUES (?,?,?,?,?,?)",
            [
                (
                    node.node_id,
                    node.name,
                    node.address,
                    node.server_key,
                    int(node.enabled),
                    node.added,
                )
            ],
        )
        self._nodes[node.node_id] = node

    def set_node_enabled(self, node_id: str, enabled: bool) -> None:
        self._update(
            "node", "UPDATE nodes SET enabled=? WHERE node_id=?", [(int(enabled), node_id)]
        )
        if node_id in self._nodes:
            self._nodes[node_id] = replace(self._nodes[node_id], enabled=enabled)

    def remove_node(self, node_id: str) -> None:
        self._write("DELETE FROM nodes WHERE node_id=?", [(node_id,)])
        self._nodes.pop(node_id, None)

    def has_node(self, node_id: str) -> bool:
        """Whether this paired node has a row (as far as this journal wrote or read it)."""
        return node_id in self._nodes

    def nodes(self) -> list[StoredNode]:
        """Every paired node, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM nodes ORDER BY added").fetchall()
        return [node_from_row(r) for r in rows]


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False
