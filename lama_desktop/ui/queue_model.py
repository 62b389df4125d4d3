"""QueueModel: batches and their jobs as a two-level tree, updated in place from bridge events."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from PySide6.QtCore import QAbstractItemModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QColor

from lama_desktop.cluster.events import (
    BatchChanged,
    BatchState,
    BatchView,
    JobChanged,
    JobState,
    JobView,
    Snapshot,
)
from lama_desktop.ui.bridge import ClusterBridge

COLUMNS = ("Name", "State", "Progress", "ETA", "Node", "Time", "Reason")
PROGRESS_COLUMN = COLUMNS.index("Progress")
REASON_COLUMN = COLUMNS.index("Reason")
NODE_COLUMN = COLUMNS.index("Node")
PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 1  # int 0-100 for a batch's progress bar
FAILED_ROLE = Qt.ItemDataRole.UserRole + 2  # int 0-100: the share of a batch that failed
_BAD_JOBS = (JobState.FAILED, JobState.POISON)
JOB_COLOURS = {
    JobState.QUEUED: QColor("#757575"),  # its reason repeats the batch's: grey, not loud
    JobState.RUNNING: QColor("#1565c0"),
    JobState.DONE: QColor("#2e7d32"),
    JobState.FAILED: QColor("#c62828"),
    JobState.POISON: QColor("#8e0000"),
    JobState.CANCELLED: QColor("#757575"),
    JobState.SKIPPED: QColor("#757575"),
}
BATCH_COLOURS = {
    BatchState.RUNNING: QColor("#1565c0"),
    BatchState.PAUSED: QColor("#c98a00"),
    BatchState.DONE: QColor("#2e7d32"),
    BatchState.FAILED: QColor("#c62828"),
    BatchState.CANCELLED: QColor("#757575"),
}


def format_eta(seconds: float | None) -> str:
    """A remaining time as people say it: "45 s", "3 min", "1 h 20 min"."""
    if seconds is None:
        return ""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)  # round up: a remaining time should not promise too much
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def unique_batch_name(name: str, taken: set[str], now: datetime) -> str:
    """The name with the time it was queued ("holiday 14:05"), unique among `taken`."""
    for stamp in (f"{now:%H:%M}", f"{now:%H:%M:%S}"):
        candidate = f"{name} {stamp}"
        if candidate not in taken:
            return candidate
    number = 2
    while f"{name} {now:%H:%M:%S} ({number})" in taken:
        number += 1
    return f"{name} {now:%H:%M:%S} ({number})"


def finished_jobs(batch: BatchView) -> int:
    """Jobs of a batch that will not run again (done, failed or cancelled)."""
    return batch.done + batch.failed + batch.cancelled


def batch_percent(batch: BatchView) -> int:
    """Whole-percent progress of a batch: the photos it got through.

    Cancelled photos were not done, so a cancelled batch shows how far it got, never a full
    bar; photos cancelled one by one in a batch that went on leave its total instead.
    """
    total = batch.total if batch.state == BatchState.CANCELLED else batch.total - batch.cancelled
    return 100 if total <= 0 else int(100 * (batch.done + batch.failed) / total)


def batch_state_text(batch: BatchView) -> str:
    """ "done, 1 failed" rather than "failed": the other photos of the batch are there."""
    if batch.state in (BatchState.DONE, BatchState.FAILED):
        return f"done, {batch.failed} failed" if batch.failed else "done"
    if batch.state == BatchState.CANCELLED:
        not_run = batch.cancelled
        return f"cancelled, {not_run} not run" if not_run else "cancelled"
    return batch.state.value


def waiting_text(batch: BatchView | None) -> str:
    """Why a batch's queued photos wait, as the Reason column says it."""
    return f"waiting: {batch.waiting}" if batch is not None and batch.waiting else ""


def _batch_cell(batch: BatchView, column: int) -> str:
    name = COLUMNS[column]
    if name == "Name":
        return f"{batch.name} (resumed)" if batch.resumed else batch.name
    if name == "State":
        return batch_state_text(batch)
    if name == "Progress":
        failed = f", {batch.failed} failed" if batch.failed else ""
        return f"{batch.done + batch.failed} / {batch.total}{failed}"
    if name == "ETA":
        active = batch.state in (BatchState.RUNNING, BatchState.QUEUED)
        return format_eta(batch.eta_seconds) if active else ""
    if name == "Reason":
        failed = f"{batch.failed} photo(s) failed" if batch.failed else ""
        # A running batch's queued photos wait for a free slot: no news worth a column.
        quiet = batch.state == BatchState.RUNNING and batch.waiting == "all nodes busy"
        waiting = "" if quiet else waiting_text(batch)
        return "; ".join(t for t in (failed, waiting) if t)
    return ""


def _job_cell(job: JobView, column: int, batch: BatchView | None) -> str:
    name = COLUMNS[column]
    if name == "Name":
        return job.image.replace("\\", "/").rsplit("/", 1)[-1]
    if name == "State":
        retry = f" (attempt {job.attempts})" if job.attempts > 1 else ""
        return job.state.value + retry
    if name == "Time":
        return "" if job.seconds is None else f"{job.seconds:.1f} s"
    if name == "Reason":
        if job.state == JobState.QUEUED:
            # A retried job keeps its last error; the wait comes first, it is what happens now.
            waiting = waiting_text(batch)
            return (
                f"{waiting} (last try: {job.reason})"
                if waiting and job.reason
                else (waiting or job.reason)
            )
        return job.reason
    return ""


class QueueModel(QAbstractItemModel):
    """Top level: one row per batch in queue order; children: that batch's jobs.

    A job index carries its batch's stable key as internal id (0 marks a batch row), so an
    index stays meaningful while batches move up and down.
    """

    def __init__(self, bridge: ClusterBridge, parent: Any = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._keys: dict[str, int] = {}  # batch id -> stable key (> 0)
        self._by_key: dict[int, str] = {}
        self._load(bridge.batches(), [j for b in bridge.batches() for j in bridge.jobs(b.batch_id)])
        bridge.batchChanged.connect(self.on_batch_changed)
        bridge.jobChanged.connect(self.on_job_changed)
        bridge.snapshotReady.connect(self.on_snapshot)

    def _load(self, batches: list[BatchView], jobs: list[JobView]) -> None:
        self._batches: list[BatchView] = sorted(batches, key=lambda b: b.position)
        self._jobs: dict[str, list[JobView]] = {}
        self._job_rows: dict[str, dict[str, int]] = {}
        for batch in self._batches:
            self._key(batch.batch_id)
        for job in jobs:
            self._store_job(job)

    def _key(self, batch_id: str) -> int:
        if batch_id not in self._keys:
            key = len(self._keys) + 1
            self._keys[batch_id], self._by_key[key] = key, batch_id
        return self._keys[batch_id]

    def _batch_row(self, batch_id: str) -> int | None:
        return next((i for i, b in enumerate(self._batches) if b.batch_id == batch_id), None)

    def _store_job(self, job: JobView) -> tuple[int, bool]:
        """Record a job; returns its row under the batch and whether it is new."""
        assert job.batch_id is not None
        jobs = self._jobs.setdefault(job.batch_id, [])
        rows = self._job_rows.setdefault(job.batch_id, {})
        row = rows.get(job.job_id)
        if row is None:
            rows[job.job_id] = len(jobs)
            jobs.append(job)
            return len(jobs) - 1, True
        jobs[row] = job
        return row, False

    # -- tree structure ------------------------------------------------------------------

    def index(
        self,
        row: int,
        column: int,
        parent: QModelIndex | QPersistentModelIndex = QModelIndex(),  # noqa: B008
    ) -> QModelIndex:
        if not self.hasIndex(row, column, parent):
            return QModelIndex()
        if not parent.isValid():
            return self.createIndex(row, column, 0)
        batch = self._batches[parent.row()]
        return self.createIndex(row, column, self._keys[batch.batch_id])

    def parent(self, index: QModelIndex | QPersistentModelIndex = QModelIndex()) -> Any:  # noqa: B008
        if not index.isValid() or index.internalId() == 0:
            return QModelIndex()
        row = self._batch_row(self._by_key[index.internalId()])
        return QModelIndex() if row is None else self.createIndex(row, 0, 0)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        if not parent.isValid():
            return len(self._batches)
        if parent.internalId() != 0 or parent.column() != 0:
            return 0
        return len(self._jobs.get(self._batches[parent.row()].batch_id, ()))

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def item(self, index: QModelIndex | QPersistentModelIndex) -> BatchView | JobView | None:
        """The batch or job an index shows."""
        if not index.isValid():
            return None
        if index.internalId() == 0:
            return self._batches[index.row()]
        jobs = self._jobs.get(self._by_key[index.internalId()], [])
        return jobs[index.row()] if index.row() < len(jobs) else None

    def batch_index(self, batch_id: str) -> QModelIndex:
        """The index of a batch's row (first column), invalid when unknown."""
        row = self._batch_row(batch_id)
        return QModelIndex() if row is None else self.createIndex(row, 0, 0)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        item = self.item(index)
        if item is None:
            return None
        col = index.column()
        if isinstance(item, BatchView):
            if role == Qt.ItemDataRole.DisplayRole:
                return _batch_cell(item, col)
            if role == PROGRESS_ROLE and col == PROGRESS_COLUMN:
                return batch_percent(item)
            if role == FAILED_ROLE and col == PROGRESS_COLUMN:
                return 0 if item.total == 0 else int(100 * item.failed / item.total)
            if role == Qt.ItemDataRole.ForegroundRole and col == 1:
                return BATCH_COLOURS.get(item.state)
            if role == Qt.ItemDataRole.ToolTipRole:
                resumed = "\nResumed from the journal after a restart." if item.resumed else ""
                return f"{item.name}: {item.state.value}, output in {item.output_dir}{resumed}"
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            if col == NODE_COLUMN:
                return self._bridge.node_name(item.node)
            batch = self._bridge.batch(item.batch_id) if item.batch_id else None
            return _job_cell(item, col, batch)
        if role == Qt.ItemDataRole.ForegroundRole and col in (1, REASON_COLUMN):
            return JOB_COLOURS.get(item.state)
        if role == Qt.ItemDataRole.ToolTipRole:
            node = self._bridge.node_name(item.node) or "no node yet"
            lines = [item.image, f"{item.state.value} on {node}"]
            if item.output:
                lines.append(f"→ {item.output}")
            if item.reason:
                lines.append(f"Reason: {item.reason}")
            return "\n".join(lines)
        return None

    # -- events --------------------------------------------------------------------------

    def on_batch_changed(self, event: BatchChanged) -> None:
        """Add, update in place, move or remove a batch row."""
        batch = event.batch
        row = self._batch_row(batch.batch_id)
        if event.removed:
            if row is not None:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._batches[row]
                self._jobs.pop(batch.batch_id, None)
                self._job_rows.pop(batch.batch_id, None)
                self.endRemoveRows()
            return
        if row is None:
            self._key(batch.batch_id)
            row = len(self._batches)
            self.beginInsertRows(QModelIndex(), row, row)
            self._batches.append(batch)
            self.endInsertRows()
        else:
            old_waiting = self._batches[row].waiting
            self._batches[row] = batch
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))
            count = len(self._jobs.get(batch.batch_id, ()))
            if batch.waiting != old_waiting and count:
                # Queued photos show their batch's reason for waiting: one range for them all.
                parent = self.index(row, 0)
                self.dataChanged.emit(
                    self.index(0, REASON_COLUMN, parent),
                    self.index(count - 1, REASON_COLUMN, parent),
                )
        self._reorder()

    def _reorder(self) -> None:
        """Move rows one by one until they follow `position` (a move is one or two steps)."""
        wanted = sorted(self._batches, key=lambda b: b.position)
        for target, batch in enumerate(wanted):
            row = self._batch_row(batch.batch_id)
            if row is None or row == target:
                continue
            # Qt's destination is the row *before which* the moved row lands, in old numbering.
            self.beginMoveRows(QModelIndex(), row, row, QModelIndex(), target)
            self._batches.insert(target, self._batches.pop(row))
            self.endMoveRows()

    def on_job_changed(self, event: JobChanged) -> None:
        """Add a job under its batch or update its row in place."""
        job = event.job
        if job.batch_id is None:
            return
        parent = self.batch_index(job.batch_id)
        if not parent.isValid():
            self._store_job(job)  # its batch shows up later with the job already known
            return
        existing = self._job_rows.get(job.batch_id, {}).get(job.job_id)
        if existing is None:
            row = len(self._jobs.get(job.batch_id, ()))
            self.beginInsertRows(parent, row, row)
            self._store_job(job)
            self.endInsertRows()
        else:
            self._store_job(job)
            self.dataChanged.emit(
                self.index(existing, 0, parent), self.index(existing, len(COLUMNS) - 1, parent)
            )

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """Start over from a full snapshot (rare: once when the scheduler starts)."""
        self.beginResetModel()
        self._load(list(snapshot.batches), [j for j in snapshot.jobs if j.batch_id is not None])
        self.endResetModel()


def is_bad(job: JobView) -> bool:
    """Whether a job ended in failure (shown in red, counted by Retry failed)."""
    return job.state in _BAD_JOBS
