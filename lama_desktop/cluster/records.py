"""The state machine's vocabulary: records of jobs, batches and nodes, and the actions it emits."""

from __future__ import annotations

import functools
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from lama_desktop.cluster.events import (
    BatchState,
    BatchView,
    Event,
    JobState,
    JobView,
    NodeState,
    NodeView,
)
from lama_desktop.cluster.protocol import Metrics
from lama_desktop.engine.base import EngineError, get_spec

if TYPE_CHECKING:
    from lama_desktop.cluster.state import SchedulerState

FINAL = frozenset(
    {JobState.DONE, JobState.FAILED, JobState.POISON, JobState.CANCELLED, JobState.SKIPPED}
)
THROUGHPUT_WINDOW = 60.0  # seconds of completions a node's jobs/s is measured over
# Why a node cannot take a job: no such model, no GPU, the photo is larger than the node's
# memory, or the memory is taken right now ("" = it can).
Unfit = Literal["", "model", "gpu", "size", "memory"]


@functools.lru_cache(maxsize=32)
def cpu_only(model: str) -> bool:
    """True for a model that runs only on the CPU (read from its spec, importing no engine)."""
    if model in ("", "auto"):
        return False  # the node picks; it may be LaMa on the GPU
    try:
        return get_spec(model).devices == ("cpu",)
    except EngineError:
        return False


@dataclass(frozen=True)
class JobSpec:
    """What the state machine needs to know of a job to route it (the shell keeps the data)."""

    job_id: str
    image: str
    output: str | None = None
    model: str = ""  # "" or "auto": any node
    device: str = "auto"  # "cuda..." needs a GPU node
    memory: int = 0  # estimated peak bytes on the worker; 0 = unknown
    state: JobState = JobState.QUEUED  # DONE/SKIPPED/... when restored from the journal
    attempts: int = 0
    crashes: int = 0
    reason: str = ""


@dataclass(slots=True)  # one per job ever queued: 100,000 of them in a large batch
class JobRecord:
    job_id: str
    batch_id: str | None
    image: str
    output: str | None
    model: str
    device: str
    memory: int
    seq: int  # submission order; a re-queued job keeps its place
    state: JobState = JobState.QUEUED
    attempts: int = 0
    crashes: int = 0
    node_losses: int = 0
    lease: int = 0  # how many times the job was handed out
    reason: str = ""
    node: str | None = None
    dispatched_at: float = 0.0
    seconds: float | None = None
    writing: bool = False  # result accepted, output being written

    @classmethod
    def from_spec(cls, spec: JobSpec, batch_id: str | None, seq: int) -> JobRecord:
        return cls(
            spec.job_id,
            batch_id,
            spec.image,
            spec.output,
            spec.model,
            spec.device,
            spec.memory,
            seq,
            # A job that was running when the scheduler stopped is queued again.
            state=JobState.QUEUED if spec.state == JobState.RUNNING else spec.state,
            attempts=spec.attempts,
            crashes=spec.crashes,
            reason=spec.reason,
        )

    def view(self) -> JobView:
        return JobView(
            job_id=self.job_id,
            batch_id=self.batch_id,
            image=self.image,
            output=self.output,
            state=self.state,
            node=self.node,
            attempts=self.attempts,
            reason=self.reason,
            seconds=self.seconds,
        )


@dataclass
class BatchRecord:
    batch_id: str
    name: str
    output_dir: str
    position: int = 0
    resumed: bool = False
    paused: bool = False
    cancelled: bool = False
    finished: bool = False
    started_at: float | None = None
    job_ids: list[str] = field(default_factory=list)
    total: int = 0  # jobs it will have; fewer are in job_ids while a large one is fed in
    counts: Counter[JobState] = field(default_factory=Counter)
    done_since_start: int = 0
    waiting: str = ""  # why its queued jobs wait, as last published ("" when none wait)
    missing_model: str = ""  # the model no node has, when that is why

    def state(self, paused_queue: bool) -> BatchState:
        total = self.total
        final = sum(self.counts[s] for s in FINAL)
        if final == total:
            if self.counts[JobState.CANCELLED] and self.cancelled:
                return BatchState.CANCELLED
            if self.counts[JobState.FAILED] or self.counts[JobState.POISON]:
                return BatchState.FAILED
            if self.counts[JobState.CANCELLED] == total and total:
                return BatchState.CANCELLED
            return BatchState.DONE
        if self.paused or paused_queue:
            return BatchState.PAUSED
        return BatchState.RUNNING if self.counts[JobState.RUNNING] else BatchState.QUEUED

    def view(self, owner: SchedulerState, now: float) -> BatchView:
        total = self.total
        done = self.counts[JobState.DONE] + self.counts[JobState.SKIPPED]
        eta = None
        if self.started_at is not None and self.done_since_start and now > self.started_at:
            rate = self.done_since_start / (now - self.started_at)
            remaining = total - sum(self.counts[s] for s in FINAL)  # queued, running, to come
            eta = remaining / rate if rate > 0 else None
        return BatchView(
            batch_id=self.batch_id,
            name=self.name,
            output_dir=self.output_dir,
            state=self.state(owner.paused),
            total=total,
            done=done,
            failed=self.counts[JobState.FAILED] + self.counts[JobState.POISON],
            cancelled=self.counts[JobState.CANCELLED],
            running=self.counts[JobState.RUNNING],
            eta_seconds=eta,
            resumed=self.resumed,
            position=self.position,
            waiting=self.waiting,
            missing_model=self.missing_model,
        )


@dataclass
class NodeRecord:
    node_id: str
    name: str
    address: str
    local: bool = False
    enabled: bool = True
    state: NodeState = NodeState.STARTING
    reason: str = ""
    slots: int = 0
    models: tuple[str, ...] = ()
    missing_models: set[str] = field(default_factory=set)
    device: str = ""
    has_gpu: bool = False
    ram_total: int = 0
    vram_total: int = 0
    metrics: Metrics | None = None
    last_seen: float = 0.0
    assigned: set[str] = field(default_factory=set)  # leased jobs: running or prefetched
    jobs_done: int = 0
    declined_until: float = 0.0  # no new jobs before this time (it declined one)
    done_times: deque[float] = field(default_factory=deque)

    def can_run(self, job: JobRecord) -> bool:
        """Capability routing: model present, device kind, memory for this image size."""
        return not self.unfit(job)

    def unfit(self, job: JobRecord) -> Unfit:
        """Why this node cannot take the job now ("" when it can), for routing and reasons."""
        wants_model = job.model not in ("", "auto")
        if wants_model and (job.model not in self.models or job.model in self.missing_models):
            return "model"
        # A CPU-only model (OpenCV) runs in host memory even on a GPU node: never VRAM.
        use_gpu = self.has_gpu and not job.device.startswith("cpu") and not cpu_only(job.model)
        if job.device.startswith("cuda") and not self.has_gpu:
            return "gpu"
        if job.memory <= 0:
            return ""
        total, free = self._memory(use_gpu)
        if total and job.memory > total:
            return "size"
        # A busy node must have the room free now; an idle one may try with what it has.
        return "memory" if free is not None and job.memory > free and self.assigned else ""

    def _memory(self, use_gpu: bool) -> tuple[int, int | None]:
        metrics = self.metrics
        if use_gpu:
            free = None
            if metrics is not None and metrics.gpus:
                free = max((g.vram_free or 0) for g in metrics.gpus)
            return self.vram_total, free
        if metrics is None:
            return self.ram_total, None
        return self.ram_total or metrics.ram_total, metrics.ram_total - metrics.ram_used

    def throughput(self, now: float) -> float:
        """Jobs per second over the last minute."""
        while self.done_times and now - self.done_times[0] > THROUGHPUT_WINDOW:
            self.done_times.popleft()
        if len(self.done_times) < 2:
            return 0.0
        span = self.done_times[-1] - self.done_times[0]
        return (len(self.done_times) - 1) / span if span > 0 else 0.0

    def view(self, now: float) -> NodeView:
        m = self.metrics
        gpu = m.gpus[0] if m is not None and m.gpus else None
        return NodeView(
            node_id=self.node_id,
            name=self.name,
            address=self.address,
            device=self.device,
            state=self.state,
            reason=self.reason,
            slots=self.slots,
            busy_slots=min(len(self.assigned), self.slots),
            local=self.local,
            enabled=self.enabled,
            cpu_percent=m.cpu_percent if m else None,
            ram_used=m.ram_used if m else None,
            ram_total=(m.ram_total if m else None) or self.ram_total or None,
            gpu_util=gpu.util if gpu else None,
            vram_used=gpu.vram_used if gpu else None,
            vram_total=self.vram_total or None,
            gpu_temp=gpu.temp if gpu else None,
            jobs_done=self.jobs_done,
            current_jobs=tuple(sorted(self.assigned)),
            throughput=self.throughput(now) if now else 0.0,
            models=self.models,
        )


# ----- actions: what SchedulerState asks its shell to do ----------------------------------------


@dataclass(frozen=True)
class Dispatch:
    """Send this job to this node."""

    node_id: str
    job_id: str
    attempt: int
    lease: int  # unique per hand-out: answers about an older lease are recognised as stale


@dataclass(frozen=True)
class CancelOnNode:
    """Ask the node to stop the job (it kills the worker if the job is running)."""

    node_id: str
    job_id: str


@dataclass(frozen=True)
class WriteOutput:
    """Write the result payload that just arrived; then call output_written or output_failed."""

    job_id: str


@dataclass(frozen=True)
class Publish:
    event: Event


@dataclass(frozen=True)
class JournalJob:
    """Persist this job's state, attempts and reason."""

    job_id: str


@dataclass(frozen=True)
class JournalBatch:
    """Persist this batch's state, pause flag and position."""

    batch_id: str


@dataclass(frozen=True)
class BatchFinished:
    """Every job of the batch reached a final state."""

    batch_id: str


@dataclass(frozen=True)
class NodeLost:
    """The node missed its heartbeats (or was removed); the shell may drop its connection."""

    node_id: str
    reason: str


Action = (
    Dispatch | CancelOnNode | WriteOutput | Publish | JournalJob | JournalBatch | BatchFinished
) | NodeLost
