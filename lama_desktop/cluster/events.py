"""Events the scheduler publishes: the Nodes and Queue panels, the tray and the CLI subscribe."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

log = logging.getLogger(__name__)


class NodeState(StrEnum):
    STARTING = "starting"
    IDLE = "idle"
    BUSY = "busy"
    OFFLINE = "offline"
    REFUSED = "refused"
    VERSION_MISMATCH = "version-mismatch"
    DISABLED = "disabled"


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    POISON = "poison"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class BatchState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    DONE = "done"
    FAILED = "failed"  # finished, some jobs failed
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class NodeView:
    """What a panel shows of one node; `reason` explains every non-working state."""

    node_id: str
    name: str
    address: str
    device: str  # GPU name or "CPU (model, N cores)"
    state: NodeState
    reason: str = ""
    slots: int = 0
    busy_slots: int = 0
    local: bool = False
    enabled: bool = True
    cpu_percent: float | None = None
    ram_used: int | None = None
    ram_total: int | None = None
    gpu_util: float | None = None
    vram_used: int | None = None
    vram_total: int | None = None
    gpu_temp: float | None = None
    jobs_done: int = 0
    current_jobs: tuple[str, ...] = ()
    throughput: float = 0.0  # jobs per second over the last minute
    models: tuple[str, ...] = ()


@dataclass(frozen=True)
class JobView:
    job_id: str
    batch_id: str | None  # None for an interactive edit
    image: str
    output: str | None
    state: JobState
    node: str | None = None
    attempts: int = 0
    reason: str = ""
    seconds: float | None = None


@dataclass(frozen=True)
class BatchView:
    batch_id: str
    name: str
    output_dir: str
    state: BatchState
    total: int
    done: int = 0
    failed: int = 0
    cancelled: int = 0
    running: int = 0
    eta_seconds: float | None = None
    resumed: bool = False
    position: int = 0  # order in the queue, 0 first
    waiting: str = ""  # why its queued jobs wait ("queue paused", "no node has model lama"...)
    missing_model: str = ""  # set when no node has the batch's model: it can be downloaded


@dataclass(frozen=True)
class NodeChanged:
    """A node joined, changed state or metrics, or left (state OFFLINE, removed=True when gone)."""

    node: NodeView
    removed: bool = False


@dataclass(frozen=True)
class BatchChanged:
    batch: BatchView
    removed: bool = False


@dataclass(frozen=True)
class JobChanged:
    job: JobView


@dataclass(frozen=True)
class QueuePaused:
    paused: bool


@dataclass(frozen=True)
class Notice:
    """Something the user must hear of that no panel shows (e.g. the journal was replaced)."""

    title: str
    text: str


@dataclass(frozen=True)
class Snapshot:
    """Everything at once, for a late subscriber."""

    nodes: tuple[NodeView, ...]
    batches: tuple[BatchView, ...]
    jobs: tuple[JobView, ...]
    paused: bool


Event = NodeChanged | BatchChanged | JobChanged | QueuePaused | Snapshot | Notice
Listener = Callable[[Event], None]


@dataclass
class EventBus:
    """Synchronous fan-out; a failing listener is logged and never stops the others."""

    _listeners: list[Listener] = field(default_factory=list)
    # Set by the Scheduler: what `snapshot()` returns to a late subscriber.
    snapshot_source: Callable[[], Snapshot] | None = None

    def snapshot(self) -> Snapshot:
        """Everything the publisher knows now (empty before a scheduler is attached)."""
        if self.snapshot_source is None:
            return Snapshot(nodes=(), batches=(), jobs=(), paused=False)
        return self.snapshot_source()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %r", listener, event)
