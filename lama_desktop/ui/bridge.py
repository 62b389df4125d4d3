"""ClusterBridge: re-emits the scheduler's plain events as Qt signals and keeps the latest views."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal, Slot

from lama_desktop.cluster.events import (
    BatchChanged,
    BatchView,
    Event,
    EventBus,
    JobChanged,
    JobView,
    NodeChanged,
    NodeView,
    Notice,
    QueuePaused,
    Snapshot,
)
from lama_desktop.ui.async_slot import async_slot


@async_slot
async def _finish(command: Awaitable[Any]) -> None:
    await command


def run_command(result: Any) -> None:
    """Finish a scheduler command: a coroutine is scheduled, and its failure logged and shown."""
    if inspect.isawaitable(result):
        _finish(result)


def toggle_queue(bridge: ClusterBridge, scheduler: Any) -> None:
    """Pause the whole queue (running jobs finish), or resume it when it is paused.

    The menu, the Queue panel and the tray all offer this one command.
    """
    run_command(scheduler.resume() if bridge.is_paused() else scheduler.pause())


class ClusterBridge(QObject):
    """Subscribes to an EventBus and turns each event into a Qt signal on the GUI thread.

    The bus calls listeners on whatever thread publishes; the bridge hands every event to
    its own thread through a queued signal when that differs, so panels only ever see
    events on the thread the bridge lives in. It also keeps the latest view of every node,
    batch and job so a panel created late can fill itself from `nodes()` / `batches()`.
    """

    nodeChanged = Signal(object)  # NodeChanged
    batchChanged = Signal(object)  # BatchChanged
    jobsChanged = Signal(object)  # list[JobView]: the jobs of one flush, each once (latest)
    pausedChanged = Signal(bool)
    snapshotReady = Signal(object)  # Snapshot
    noticeRaised = Signal(str, str)  # title, text
    _incoming = Signal(object)

    def __init__(
        self, events: EventBus, parent: QObject | None = None, *, coalesce_ms: int = 0
    ) -> None:
        """`coalesce_ms` > 0: events are gathered and handed on once per that many ms, each
        node, batch and job once with its latest view (the app: a 100,000-photo batch makes
        one update per frame, not one per dispatch). 0: each event at once (tests)."""
        super().__init__(parent)
        self._pending: dict[tuple[str, str], Event] = {}
        self._flush_timer = QTimer(self)
        self._flush_timer.setSingleShot(True)
        self._flush_timer.setInterval(coalesce_ms)
        self._flush_timer.timeout.connect(self.flush)
        self._coalesce = coalesce_ms > 0
        self._flush_due = False  # the flush timer runs
        self._serial = 0
        self._nodes: dict[str, NodeView] = {}
        self._batches: dict[str, BatchView] = {}
        self._jobs: dict[str, JobView] = {}
        self._batch_jobs: dict[str, list[str]] = {}
        self._paused = False
        # Events published on this thread (the scheduler's, on the app's GUI loop) are taken
        # directly; from any other thread they come through a queued signal. A Qt emit per
        # event cost the GUI loop up to half a second per thousand jobs while the local
        # agent's thread was busy: each one gives the GIL away and waits to get it back.
        self._incoming.connect(self._receive, Qt.ConnectionType.QueuedConnection)
        self._thread = threading.get_ident()
        self._apply(events.snapshot())

        def incoming(event: Event) -> None:
            if threading.get_ident() == self._thread:
                self._receive(event)
            else:
                self._incoming.emit(event)

        unsubscribe = events.subscribe(incoming)
        self._unsubscribe: Callable[[], None] | None = unsubscribe
        # A lambda holding only the bus handle: the Python side may be gone by then.
        self.destroyed.connect(lambda *_: unsubscribe())

    # -- state ---------------------------------------------------------------------------

    def nodes(self) -> list[NodeView]:
        """The latest view of every known node, in the order they first appeared."""
        return list(self._nodes.values())

    def batches(self) -> list[BatchView]:
        """The latest view of every known batch, in queue order."""
        return sorted(self._batches.values(), key=lambda b: b.position)

    def jobs(self, batch_id: str) -> list[JobView]:
        """The latest view of each job of one batch, in the order they were first seen."""
        return [self._jobs[j] for j in self._batch_jobs.get(batch_id, ())]

    def node(self, node_id: str) -> NodeView | None:
        """One node's latest view, or None when unknown."""
        return self._nodes.get(node_id)

    def job(self, job_id: str) -> JobView | None:
        """One batch job's latest view, or None when unknown."""
        return self._jobs.get(job_id)

    def node_name(self, node_id: str | None) -> str:
        """The name a user knows a node by (its id while the node is unknown)."""
        if node_id is None:
            return ""
        node = self._nodes.get(node_id)
        return node.name if node is not None else node_id

    def batch(self, batch_id: str) -> BatchView | None:
        """One batch's latest view, or None when unknown."""
        return self._batches.get(batch_id)

    def is_paused(self) -> bool:
        """Whether the whole queue is paused."""
        return self._paused

    def close(self) -> None:
        """Stop listening to the bus (also done when the bridge is destroyed)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._flush_timer.stop()

    # -- event handling ------------------------------------------------------------------

    @Slot(object)
    def _receive(self, event: Event) -> None:
        if not self._coalesce:
            self._handle(event, [])
            return
        if isinstance(event, Snapshot):  # it holds everything the others said, notices aside
            self._pending = {k: e for k, e in self._pending.items() if isinstance(e, Notice)}
        self._serial += 1
        key = _coalesce_key(event, self._serial)
        self._pending.pop(key, None)  # moved to the end: events keep their latest order
        self._pending[key] = event
        if not self._flush_due:  # a Python flag: no call into Qt per event
            self._flush_due = True
            self._flush_timer.start()

    def flush(self) -> None:
        """Hand on the gathered events now (the timer does it every `coalesce_ms`)."""
        self._flush_timer.stop()
        self._flush_due = False
        pending, self._pending = self._pending, {}
        jobs: list[JobView] = []
        for event in pending.values():
            self._handle(event, jobs)
        if jobs:
            self.jobsChanged.emit(jobs)

    def _handle(self, event: Event, jobs: list[JobView]) -> None:
        if isinstance(event, JobChanged):
            self._remember_job(event.job)
            if self._coalesce:
                jobs.append(event.job)
            else:
                self.jobsChanged.emit([event.job])
        elif isinstance(event, Snapshot):
            self._apply(event)
            self.snapshotReady.emit(event)
        elif isinstance(event, NodeChanged):
            if event.removed:
                self._nodes.pop(event.node.node_id, None)
            else:
                self._nodes[event.node.node_id] = event.node
            self.nodeChanged.emit(event)
        elif isinstance(event, BatchChanged):
            if event.removed:
                self._batches.pop(event.batch.batch_id, None)
                for job_id in self._batch_jobs.pop(event.batch.batch_id, []):
                    self._jobs.pop(job_id, None)
            else:
                self._batches[event.batch.batch_id] = event.batch
            self.batchChanged.emit(event)
        elif isinstance(event, Notice):
            self.noticeRaised.emit(event.title, event.text)
        elif isinstance(event, QueuePaused) and event.paused != self._paused:
            self._paused = event.paused
            self.pausedChanged.emit(event.paused)

    def _apply(self, snapshot: Snapshot) -> None:
        self._nodes = {n.node_id: n for n in snapshot.nodes}
        self._batches = {b.batch_id: b for b in snapshot.batches}
        self._jobs.clear()
        self._batch_jobs.clear()
        for job in snapshot.jobs:
            self._remember_job(job)
        self._paused = snapshot.paused

    def _remember_job(self, job: JobView) -> None:
        if job.batch_id is None:
            return  # interactive edits show in the status bar, not in the queue
        if job.job_id not in self._jobs:
            self._batch_jobs.setdefault(job.batch_id, []).append(job.job_id)
        self._jobs[job.job_id] = job


def _coalesce_key(event: Event, serial: int) -> tuple[str, str]:
    """Events with one key replace each other while gathered; a notice is never dropped."""
    if isinstance(event, JobChanged):
        return "job", event.job.job_id
    if isinstance(event, BatchChanged):
        return "batch", event.batch.batch_id
    if isinstance(event, NodeChanged):
        return "node", event.node.node_id
    if isinstance(event, (QueuePaused, Snapshot)):
        return type(event).__name__, ""
    return "notice", str(serial)
