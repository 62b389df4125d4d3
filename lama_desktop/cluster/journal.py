"""SQLite (WAL) journal of batches, jobs and paired nodes, so a crash or restart loses no work.

A job is written DONE only after its output is on disk (atomic rename, fsync), so the journal
may lag the disk but never lead it: on resume, an output that exists and is newer than the
batch is recognised as this batch's own work (see `Journal.unfinished`).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lama_desktop.cluster.events import BatchState, JobState

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
_OPEN_BATCH_STATES = (BatchState.QUEUED, BatchState.RUNNING, BatchState.PAUSED)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredBatch:
    batch_id: str
    name: str
    output_dir: str
    settings: dict[str, Any]
    overwrite: bool
    state: BatchState
    paused: bool = False
    position: int = 0
    created: float = 0.0  # wall-clock time.time() of submission


@dataclass(frozen=True)
class StoredJob:
    job_id: str
    batch_id: str
    seq: int
    image: str
    mask: str
    output: str
    state: JobState = JobState.QUEUED
    attempts: int = 0
    crashes: int = 0
    reason: str = ""
    seconds: float | None = None
    node: str | None = None


@dataclass(frozen=True)
class StoredNode:
    """A paired agent: where it is and the Curve server key it proved it holds."""

    node_id: str
    name: str
    address: str
    server_key: str
    enabled: bool = True
    added: float = 0.0


def default_journal_path() -> Path:
    """$LAMA_DATA_DIR/journal.sqlite3, else the platform's data folder."""
    from lama_desktop.config import app_dirs

    return app_dirs().journal


class Journal:
    """The journal database. Thread-safe: the scheduler calls it from one executor thread."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
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
                    f"{path}: journal schema {row[0]} is not the supported {SCHEMA_VERSION}"
                )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(sql, rows)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # ----- batches and jobs -------------------------------------------------------------------

    def add_batch(self, batch: StoredBatch, jobs: list[StoredJob]) -> None:
        """Record a new batch and all its jobs in one transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO batches VALUES (?,?,?,?,?,?,?,?,?)",
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
                    "INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [_job_row(job) for job in jobs],
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def update_jobs(self, jobs: list[StoredJob]) -> None:
        """Record new states, attempts and reasons of these jobs (one transaction)."""
        self._write(
            "UPDATE jobs SET state=?, attempts=?, crashes=?, reason=?, seconds=?, node=? "
            "WHERE job_id=?",
            [
                (str(j.state), j.attempts, j.crashes, j.reason, j.seconds, j.node, j.job_id)
                for j in jobs
            ],
        )

    def update_batch(self, batch_id: str, state: BatchState, paused: bool, position: int) -> None:
        """Record a batch's state, pause flag and queue position."""
        self._write(
            "UPDATE batches SET state=?, paused=?, position=? WHERE batch_id=?",
            [(str(state), int(paused), position, batch_id)],
        )

    def delete_batch(self, batch_id: str) -> None:
        """Forget a batch and its jobs."""
        self._write("DELETE FROM batches WHERE batch_id=?", [(batch_id,)])

    def prune_finished(self, batch_ids: list[str]) -> None:
        """Forget finished batches with their jobs: every one recorded as finished, and these
        (finished, though their last state may not be written yet)."""
        finished = tuple(str(s) for s in BatchState if s not in _OPEN_BATCH_STATES)
        marks = ",".join("?" * len(finished))
        self._write(f"DELETE FROM batches WHERE state IN ({marks})", [finished])
        self._write("DELETE FROM batches WHERE batch_id=?", [(b,) for b in batch_ids])

    def batch(self, batch_id: str) -> StoredBatch | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM batches WHERE batch_id=?", (batch_id,)).fetchone()
        return None if row is None else _batch(row)

    def jobs(self, batch_id: str) -> list[StoredJob]:
        """The batch's jobs in submission order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM jobs WHERE batch_id=? ORDER BY seq", (batch_id,)
            ).fetchall()
        return [_job(row) for row in rows]

    def unfinished(self) -> list[tuple[StoredBatch, list[StoredJob]]]:
        """Batches still queued, running or paused, oldest first, with their jobs.

        A job not yet DONE here whose output exists and was written after the batch was
        submitted is returned as DONE: the scheduler stopped between the atomic write and the
        journal commit, and redoing it would write that output a second time.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM batches WHERE state IN (?,?,?) ORDER BY position, created",
                tuple(str(s) for s in _OPEN_BATCH_STATES),
            ).fetchall()
        result = []
        for row in rows:
            try:
                batch, stored_jobs = _batch(row), self.jobs(row[0])
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

    def set_node_enabled(self, node_id: str, enabled: bool) -> None:
        self._write("UPDATE nodes SET enabled=? WHERE node_id=?", [(int(enabled), node_id)])

    def remove_node(self, node_id: str) -> None:
        self._write("DELETE FROM nodes WHERE node_id=?", [(node_id,)])

    def nodes(self) -> list[StoredNode]:
        """Every paired node, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM nodes ORDER BY added").fetchall()
        return [StoredNode(r[0], r[1], r[2], r[3], bool(r[4]), r[5]) for r in rows]


def _written_since(path: Path, since: float) -> bool:
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def _job_row(job: StoredJob) -> tuple[Any, ...]:
    return (
        job.job_id,
        job.batch_id,
        job.seq,
        job.image,
        job.mask,
        job.output,
        str(job.state),
        job.attempts,
        job.crashes,
        job.reason,
        job.seconds,
        job.node,
    )


def _batch(row: tuple[Any, ...]) -> StoredBatch:
    return StoredBatch(
        batch_id=row[0],
        name=row[1],
        output_dir=row[2],
        settings=json.loads(row[3]),
        overwrite=bool(row[4]),
        state=BatchState(row[5]),
        paused=bool(row[6]),
        position=row[7],
        created=row[8],
    )


def _job(row: tuple[Any, ...]) -> StoredJob:
    return StoredJob(
        job_id=row[0],
        batch_id=row[1],
        seq=row[2],
        image=row[3],
        mask=row[4],
        output=row[5],
        state=JobState(row[6]),
        attempts=row[7],
        crashes=row[8],
        reason=row[9],
        seconds=row[10],
        node=row[11],
    )
