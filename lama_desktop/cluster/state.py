"""The scheduler's queue, leases, retries and poison: a pure state machine, events in, actions out.

No sockets, no asyncio, no clock: every method that needs the time takes `now`. The Scheduler
shell feeds it what the network says and carries out the actions it returns.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from lama_desktop.cluster.events import (
    BatchChanged,
    BatchState,
    JobChanged,
    JobState,
    NodeChanged,
    NodeState,
    QueuePaused,
    Snapshot,
)
from lama_desktop.cluster.protocol import Metrics
from lama_desktop.cluster.records import (
    FINAL,
    Action,
    BatchFinished,
    BatchRecord,
    CancelOnNode,
    Dispatch,
    JobRecord,
    JobSpec,
    JournalBatch,
    JournalJob,
    NodeLost,
    NodeRecord,
    Publish,
    WriteOutput,
)
from lama_desktop.cluster.waiting import Memo, batch_waiting

__all__ = [
    "Action",
    "BatchFinished",
    "CancelOnNode",
    "Dispatch",
    "JobSpec",
    "JournalBatch",
    "JournalJob",
    "NodeLost",
    "Publish",
    "SchedulerState",
    "WriteOutput",
]

MAX_ATTEMPTS = 3
MAX_CRASHES = 3
MAX_NODE_LOSSES = 3
# How many queued jobs one pass looks past when the head ones fit no node (bounds dispatch cost).
SCAN_LIMIT = 64
DECLINE_PAUSE_S = 1.0  # a node that declined a job gets no new one for this long
INTERACTIVE = "\x00interactive"  # queue key of interactive jobs: sorts before every batch


@dataclass
class SchedulerState:
    """All scheduling decisions. Each public method returns the actions the shell must carry out."""

    dead_after: float = 3.0
    job_timeout: float = 600.0
    prefetch: int = 1  # extra jobs queued on a node per slot, to hide transfer time
    nodes: dict[str, NodeRecord] = field(default_factory=dict)
    batches: dict[str, BatchRecord] = field(default_factory=dict)
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    paused: bool = False
    _queues: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    # Jobs handed to a node (RUNNING), kept by `_set_state`: `tick` times out only these, so
    # its cost follows the active jobs, not every job ever submitted (100,000-photo batches).
    _running: dict[str, JobRecord] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _out: list[Action] = field(default_factory=list)
    _now: float = 0.0  # time of the event being handled, for views (throughput, ETA)
    # Set when a node, a pause or the set of queued jobs changed: why batches wait may differ.
    _waiting_stale: bool = False
    _waiting_memo: Memo = field(default_factory=dict)  # per kind of job, until that happens

    # ----- submitting -------------------------------------------------------------------------

    def submit_batch(
        self,
        batch_id: str,
        name: str,
        output_dir: str,
        jobs: Iterable[JobSpec],
        now: float,
        *,
        resumed: bool = False,
        paused: bool = False,
        total: int | None = None,
    ) -> list[Action]:
        """Queue a batch (jobs already final, e.g. skipped or done before a restart, stay so).

        With a `total` larger than the jobs given, the rest come through `add_jobs`: the shell
        feeds a large batch a chunk per loop turn, so queuing 100,000 photos never holds its
        loop (the GUI's) for seconds. The batch counts all `total` jobs from the start and
        cannot finish before the last has come.
        """
        jobs = list(jobs)
        position = max((b.position for b in self.batches.values()), default=-1) + 1
        batch = BatchRecord(batch_id, name, output_dir, position=position, resumed=resumed)
        batch.total = len(jobs) if total is None else total
        batch.paused = paused
        self.batches[batch_id] = batch
        self._queues[batch_id] = []
        self._journal_batch(batch)
        return self.add_jobs(batch_id, jobs, now)

    def add_jobs(self, batch_id: str, jobs: Iterable[JobSpec], now: float) -> list[Action]:
        """More jobs of a batch submitted with a larger `total` (those of a cancelled batch
        arrive cancelled)."""
        self._now = now
        batch = self.batches[batch_id]
        jobs = list(jobs)
        if len(batch.job_ids) + len(jobs) > batch.total:  # checked before anything changes
            count = len(batch.job_ids) + len(jobs)
            raise ValueError(f"batch {batch_id} got {count} of {batch.total} jobs")
        for spec in jobs:
            job = self._add_job(spec, batch_id, cancelled=batch.cancelled)
            batch.job_ids.append(job.job_id)
        self._update_batch(batch, now)
        self._dispatch(now)
        return self._flush()

    def missing_jobs(self, batch_id: str) -> int:
        """How many jobs of the batch `add_jobs` has still to bring."""
        batch = self.batches.get(batch_id)
        return batch.total - len(batch.job_ids) if batch is not None else 0

    def submit_interactive(self, spec: JobSpec, now: float) -> list[Action]:
        """Queue one interactive edit ahead of every batch job (runs even while paused)."""
        self._now = now
        self._queues.setdefault(INTERACTIVE, [])
        self._add_job(spec, None)  # queued ahead of every batch job
        self._dispatch(now)
        return self._flush()

    def _add_job(
        self, spec: JobSpec, batch_id: str | None, *, cancelled: bool = False
    ) -> JobRecord:
        job = JobRecord.from_spec(spec, batch_id, next(self._seq))
        self.jobs[job.job_id] = job
        if cancelled and job.state not in FINAL:
            job.state, job.reason = JobState.CANCELLED, "cancelled"
            self._out.append(JournalJob(job.job_id))
        if batch_id is not None:
            self.batches[batch_id].counts[job.state] += 1
        self._emit_job(job)
        if job.state == JobState.QUEUED:
            self._enqueue(job)
        return job

    def _set_state(self, job: JobRecord, state: JobState) -> None:
        if job.state == state:
            return
        if job.batch_id is not None:
            batch = self.batches[job.batch_id]
            batch.counts[job.state] -= 1
            batch.counts[state] += 1
            if state == JobState.DONE and batch.started_at is not None:
                batch.done_since_start += 1
        if state == JobState.RUNNING:
            self._running[job.job_id] = job
        else:
            self._running.pop(job.job_id, None)
        job.state = state

    def _enqueue(self, job: JobRecord) -> None:
        self._stale()
        self._set_state(job, JobState.QUEUED)
        job.node = None
        key = job.batch_id if job.batch_id is not None else INTERACTIVE
        heapq.heappush(self._queues[key], (job.seq, job.job_id))

    # ----- nodes ------------------------------------------------------------------------------

    def add_node(
        self, node_id: str, name: str, address: str, now: float, *, local: bool = False
    ) -> list[Action]:
        """A node we are connecting to; it counts once its READY arrives."""
        self._now = now
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = NodeRecord(node_id, name, address, local=local)
        node.state = NodeState.STARTING if node.enabled else NodeState.DISABLED
        node.last_seen = now
        self._emit_node(node)
        return self._flush()

    def node_ready(
        self,
        node_id: str,
        now: float,
        *,
        slots: int,
        models: list[str],
        device: str,
        has_gpu: bool = False,
        ram_total: int = 0,
        vram_total: int = 0,
    ) -> list[Action]:
        """READY: the node's slots, models and memory are (now) these."""
        self._now = now
        node = self.nodes.get(node_id)
        if node is None:
            return []
        node.slots = max(0, slots)
        node.models = tuple(models)
        node.missing_models.difference_update(models)
        node.device = device
        node.has_gpu = has_gpu
        node.ram_total = ram_total
        node.vram_total = vram_total
        node.last_seen = now
        if node.enabled:
            node.state = NodeState.BUSY if node.assigned else NodeState.IDLE
            node.reason = ""
        self._emit_node(node)
        self._dispatch(now)
        return self._flush()

    def node_seen(self, node_id: str, now: float, metrics: Metrics | None = None) -> None:
        """Any message from the node is a heartbeat; metrics update the free-memory picture."""
        self._now = now
        node = self.nodes.get(node_id)
        if node is None:
            return
        node.last_seen = now
        if metrics is not None:
            node.metrics = metrics
            self._emit_node(node)

    def node_refused(self, node_id: str, reason: str, *, version: bool = False) -> list[Action]:
        """The node refused us (unpaired key, other protocol version)."""
        node = self.nodes.get(node_id)
        if node is None:
            return []
        node.state = NodeState.VERSION_MISMATCH if version else NodeState.REFUSED
        node.reason = reason
        self._release_node_jobs(node, count_loss=False, now=self._now)
        self._emit_node(node)
        return self._flush()

    def node_down(self, node_id: str, reason: str, now: float) -> list[Action]:
        """The node left or died: its jobs go back to the queue at once (the lease ends)."""
        self._now = now
        node = self.nodes.get(node_id)
        if node is None or node.state == NodeState.OFFLINE:
            return []
        node.state = NodeState.OFFLINE
        node.reason = reason
        self._release_node_jobs(node, count_loss=True, now=now)
        self._out.append(NodeLost(node_id, reason))
        self._emit_node(node)
        self._dispatch(now)
        return self._flush()

    def remove_node(self, node_id: str, now: float) -> list[Action]:
        """Forget the node; its jobs are re-queued."""
        self._now = now
        node = self.nodes.pop(node_id, None)
        if node is None:
            return []
        self._release_node_jobs(node, count_loss=False, now=now)
        self._out.append(NodeLost(node_id, "removed"))
        self._out.append(Publish(NodeChanged(node.view(now), removed=True)))
        self._dispatch(now)
        return self._flush()

    def set_node_enabled(self, node_id: str, enabled: bool, now: float) -> list[Action]:
        """A disabled node gets no new jobs; the ones it runs finish."""
        self._now = now
        node = self.nodes.get(node_id)
        if node is None:
            return []
        node.enabled = enabled
        if not enabled:
            node.state = NodeState.DISABLED
        elif node.state == NodeState.DISABLED:
            node.state = NodeState.BUSY if node.assigned else NodeState.IDLE
        self._emit_node(node)
        self._dispatch(now)
        return self._flush()

    def _release_node_jobs(self, node: NodeRecord, *, count_loss: bool, now: float) -> None:
        for job_id in list(node.assigned):
            node.assigned.discard(job_id)
            job = self.jobs[job_id]
            if job.state != JobState.RUNNING or job.node != node.node_id:
                continue
            job.attempts -= 1  # the job did not fail; its node did
            job.node_losses += count_loss
            if job.node_losses >= MAX_NODE_LOSSES:
                self._finish(
                    job, JobState.FAILED, f"lost {job.node_losses} nodes while running", now
                )
            else:
                self._enqueue(job)
                self._emit_job(job)

    # ----- job outcomes -----------------------------------------------------------------------

    def job_result(self, node_id: str, job_id: str, seconds: float, now: float) -> list[Action]:
        """A RESULT arrived. Accepted (-> WriteOutput) unless the job is already done or over."""
        self._now = now
        node = self.nodes.get(node_id)
        if node is not None:
            node.assigned.discard(job_id)
            node.declined_until = 0.0  # it has room again
            node.jobs_done += 1
            node.done_times.append(now)
            self._node_load_changed(node)
        job = self.jobs.get(job_id)
        if job is None or job.state in FINAL or job.writing:
            self._dispatch(now)
            return self._flush()  # exactly once: a duplicate or late result is dropped
        if job.state == JobState.RUNNING and job.node not in (None, node_id):
            other = self.nodes.get(job.node)
            if other is not None:
                other.assigned.discard(job_id)
                self._out.append(CancelOnNode(job.node, job_id))
        job.node = node_id
        self._set_state(job, JobState.RUNNING)
        job.writing = True
        job.seconds = seconds
        self._out.append(WriteOutput(job_id))
        self._dispatch(now)
        return self._flush()

    def output_written(self, job_id: str, now: float) -> list[Action]:
        """The output is on disk (atomically): only now the job counts as done."""
        self._now = now
        job = self.jobs.get(job_id)
        if job is None or not job.writing:
            return []
        job.writing = False
        self._finish(job, JobState.DONE, "", now)
        return self._flush()

    def output_failed(self, job_id: str, reason: str, now: float) -> list[Action]:
        """Writing the output failed (disk full, permissions): the job fails with that reason."""
        self._now = now
        job = self.jobs.get(job_id)
        if job is None or not job.writing:
            return []
        job.writing = False
        self._finish(job, JobState.FAILED, reason, now)
        return self._flush()

    def job_failed(
        self,
        node_id: str,
        job_id: str,
        reason: str,
        now: float,
        *,
        crashed: bool = False,
        cancelled: bool = False,
        missing_model: bool = False,
        declined: bool = False,
        permanent: bool = False,
        lease: int | None = None,
    ) -> list[Action]:
        """A FAILED arrived: retry, route around a missing model, or give up (failed/poison)."""
        self._now = now
        node = self.nodes.get(node_id)
        if node is not None:
            node.assigned.discard(job_id)
            self._node_load_changed(node)
        job = self.jobs.get(job_id)
        stale = lease is not None and lease != job.lease if job is not None else True
        if job is None or stale or job.state != JobState.RUNNING or job.node != node_id:
            self._dispatch(now)
            return self._flush()  # stale: cancelled, timed out, or already done elsewhere
        if (missing_model or declined) and node is not None:
            if missing_model:
                node.missing_models.add(job.model)
            else:
                # The node is fuller than we thought (e.g. still busy for a crashed scheduler
                # run): give it a moment instead of bouncing the job straight back to it.
                node.declined_until = now + DECLINE_PAUSE_S
            job.attempts -= 1  # not the job's fault
            self._enqueue(job)
            self._emit_job(job)
        elif cancelled:
            self._finish(job, JobState.CANCELLED, reason or "cancelled", now)
        elif permanent:
            self._finish(job, JobState.FAILED, reason, now)
        else:
            self._failed_attempt(job, reason, crashed, now)
        self._dispatch(now)
        return self._flush()

    def _failed_attempt(self, job: JobRecord, reason: str, crashed: bool, now: float) -> None:
        job.reason = reason
        job.crashes += crashed
        if job.crashes >= MAX_CRASHES:
            self._finish(
                job, JobState.POISON, f"killed its worker {job.crashes} times: {reason}", now
            )
        elif job.attempts >= MAX_ATTEMPTS:
            self._finish(job, JobState.FAILED, reason, now)
        else:
            self._enqueue(job)
            self._emit_job(job)
            self._out.append(JournalJob(job.job_id))

    def _finish(
        self, job: JobRecord, state: JobState, reason: str, now: float, *, release: bool = True
    ) -> None:
        if release and job.node is not None and state != JobState.DONE:
            node = self.nodes.get(job.node)
            if node is not None:
                node.assigned.discard(job.job_id)
                self._node_load_changed(node)
        self._set_state(job, state)
        job.reason = reason
        self._emit_job(job)
        self._out.append(JournalJob(job.job_id))
        if job.batch_id is not None:
            self._update_batch(self.batches[job.batch_id], now)

    # ----- user commands ----------------------------------------------------------------------

    def cancel_job(self, job_id: str, now: float) -> list[Action]:
        """Cancel a queued job, or interrupt a running one on its node. A write in flight wins."""
        self._now = now
        self._cancel(job_id, now)
        self._dispatch(now)
        return self._flush()

    def cancel_batch(self, batch_id: str, now: float) -> list[Action]:
        """Cancel every job of the batch that has not finished."""
        self._now = now
        batch = self.batches.get(batch_id)
        if batch is None:
            return []
        batch.cancelled = True
        for job_id in batch.job_ids:
            self._cancel(job_id, now)
        self._update_batch(batch, now)
        self._dispatch(now)
        return self._flush()

    def _cancel(self, job_id: str, now: float) -> None:
        job = self.jobs.get(job_id)
        if job is None or job.state in FINAL or job.writing:
            return
        running_on = job.node if job.state == JobState.RUNNING else None
        if running_on is not None:
            # The slot stays leased until the node confirms (FAILED cancelled), so the node
            # is not handed a new job while its worker is still being stopped.
            self._out.append(CancelOnNode(running_on, job_id))
        self._finish(job, JobState.CANCELLED, "cancelled", now, release=running_on is None)

    def pause(self, paused: bool, now: float) -> list[Action]:
        """Pause or resume the whole queue (running jobs finish; interactive edits still run)."""
        self._now = now
        self.paused = paused
        self._stale()
        self._out.append(Publish(QueuePaused(paused)))
        for batch in self.batches.values():
            self._update_batch(batch, now)
        self._dispatch(now)
        return self._flush()

    def pause_batch(self, batch_id: str, paused: bool, now: float) -> list[Action]:
        """Pause or resume one batch."""
        self._now = now
        batch = self.batches.get(batch_id)
        if batch is None:
            return []
        batch.paused = paused
        self._journal_batch(batch)
        self._update_batch(batch, now)
        self._dispatch(now)
        return self._flush()

    def retry_failed(self, batch_id: str, now: float) -> list[Action]:
        """Queue the batch's failed jobs again with fresh attempts (poison stays poison)."""
        self._now = now
        batch = self.batches.get(batch_id)
        if batch is None:
            return []
        for job_id in batch.job_ids:
            job = self.jobs[job_id]
            if job.state == JobState.FAILED:
                job.attempts = job.node_losses = 0
                job.reason = ""
                self._enqueue(job)
                self._emit_job(job)
                self._out.append(JournalJob(job_id))
        batch.finished = False
        self._journal_batch(batch)  # open again: a crash from here on resumes it
        self._update_batch(batch, now)
        self._dispatch(now)
        return self._flush()

    def move_batch(self, batch_id: str, delta: int, now: float) -> list[Action]:
        """Move the batch `delta` places in the queue (negative = sooner)."""
        self._now = now
        if batch_id not in self.batches:
            return []
        order = sorted(self.batches.values(), key=lambda b: b.position)
        index = next(i for i, b in enumerate(order) if b.batch_id == batch_id)
        batch = order.pop(index)
        order.insert(max(0, min(len(order), index + delta)), batch)
        for position, item in enumerate(order):
            if item.position != position:
                item.position = position
                self._journal_batch(item)
                self._update_batch(item, now)
        return self._flush()

    def forget_batch(self, batch_id: str, now: float) -> list[Action]:
        """Drop a finished batch and its jobs (the user cleared it); unfinished ones stay."""
        self._now = now
        batch = self.batches.get(batch_id)
        if batch is None or not batch.finished:
            return []
        del self.batches[batch_id]
        self._queues.pop(batch_id, None)
        for job_id in batch.job_ids:
            self.jobs.pop(job_id, None)  # a late answer about one of them is dropped as stale
        self._out.append(Publish(BatchChanged(batch.view(self, now), removed=True)))
        return self._flush()

    def forget_job(self, job_id: str) -> None:
        """Drop a finished interactive job from memory."""
        job = self.jobs.get(job_id)
        if job is not None and job.batch_id is None and job.state in FINAL:
            del self.jobs[job_id]
            self._running.pop(job_id, None)

    # ----- time -------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """Declare silent nodes dead and time out jobs that ran too long (leased jobs only)."""
        self._now = now
        self._stale()  # a node's pause after declining a job may have ended
        for node in list(self.nodes.values()):
            silent = now - node.last_seen
            alive = node.state in (NodeState.IDLE, NodeState.BUSY, NodeState.DISABLED)
            if alive and silent > self.dead_after:
                # Evaluate first: node_down swaps self._out when it flushes.
                lost = self.node_down(node.node_id, f"silent for {silent:.1f} s", now)
                self._out.extend(lost)
        for job in list(self._running.values()):
            if (
                job.state == JobState.RUNNING
                and not job.writing
                and job.node is not None
                and now - job.dispatched_at > self.job_timeout
            ):
                node_id = job.node
                self._out.append(CancelOnNode(node_id, job.job_id))
                holder = self.nodes.get(node_id)
                if holder is not None:
                    holder.assigned.discard(job.job_id)
                    self._node_load_changed(holder)
                job.node = None
                self._failed_attempt(job, f"timed out after {self.job_timeout:.0f} s", False, now)
        self._dispatch(now)
        return self._flush()

    # ----- dispatch ---------------------------------------------------------------------------

    def _capacity(self, node: NodeRecord) -> int:
        return node.slots * (1 + self.prefetch) - len(node.assigned)

    def _dispatch(self, now: float) -> None:
        """Hand queued jobs to nodes: least-loaded first, so idle nodes fill before prefetch."""
        open_nodes = [
            n
            for n in self.nodes.values()
            if n.state in (NodeState.IDLE, NodeState.BUSY)
            and n.enabled
            and self._capacity(n) > 0
            and n.declined_until <= now
        ]
        if not open_nodes:
            return
        keys = [INTERACTIVE] if self._queues.get(INTERACTIVE) else []
        if not self.paused:
            keys += [
                b.batch_id
                for b in sorted(self.batches.values(), key=lambda b: b.position)
                if not b.paused and self._queues.get(b.batch_id)
            ]
        for key in keys:
            queue = self._queues[key]
            skipped: list[tuple[int, str]] = []
            while queue and open_nodes and len(skipped) < SCAN_LIMIT:
                entry = heapq.heappop(queue)
                job = self.jobs.get(entry[1])
                if job is None or job.state != JobState.QUEUED:
                    continue  # cancelled or re-queued twice: lazy deletion
                node = self._pick_node(job, open_nodes)
                if node is None:
                    skipped.append(entry)
                    continue
                self._assign(job, node, now)
                if self._capacity(node) <= 0:
                    open_nodes.remove(node)
            for entry in skipped:
                heapq.heappush(queue, entry)
            if not open_nodes:
                return

    def _pick_node(self, job: JobRecord, nodes: list[NodeRecord]) -> NodeRecord | None:
        best: NodeRecord | None = None
        best_load = 0.0
        for node in nodes:
            if not node.can_run(job):
                continue
            load = len(node.assigned) / node.slots
            if best is None or load < best_load:
                best, best_load = node, load
        return best

    def _assign(self, job: JobRecord, node: NodeRecord, now: float) -> None:
        if job.batch_id is not None:
            batch = self.batches[job.batch_id]
            if batch.started_at is None:
                batch.started_at = now
        self._set_state(job, JobState.RUNNING)
        job.node = node.node_id
        job.attempts += 1
        job.lease += 1
        job.dispatched_at = now
        node.assigned.add(job.job_id)
        self._out.append(Dispatch(node.node_id, job.job_id, job.attempts, job.lease))
        self._emit_job(job)
        self._node_load_changed(node)
        if job.batch_id is not None:
            self._update_batch(self.batches[job.batch_id], now)

    # ----- views and events -------------------------------------------------------------------

    def _node_load_changed(self, node: NodeRecord) -> None:
        if node.state in (NodeState.IDLE, NodeState.BUSY):
            state = NodeState.BUSY if node.assigned else NodeState.IDLE
            if state != node.state:
                node.state = state
                self._emit_node(node)

    def _update_batch(self, batch: BatchRecord, now: float) -> None:
        batch.waiting, batch.missing_model = self._waiting(batch, now)
        view = batch.view(self, now)
        self._out.append(Publish(BatchChanged(view)))
        over = view.state in (BatchState.DONE, BatchState.FAILED, BatchState.CANCELLED)
        if over and not batch.finished:
            batch.finished = True
            self._journal_batch(batch)
            self._out.append(BatchFinished(batch.batch_id))

    def _journal_batch(self, batch: BatchRecord) -> None:
        self._out.append(JournalBatch(batch.batch_id))

    def _emit_job(self, job: JobRecord) -> None:
        self._out.append(Publish(JobChanged(job.view())))

    def _emit_node(self, node: NodeRecord) -> None:
        self._stale()
        self._out.append(Publish(NodeChanged(node.view(self._now))))

    def _stale(self) -> None:
        self._waiting_stale = True
        if self._waiting_memo:  # called per job queued: 100,000 times for a large batch
            self._waiting_memo.clear()

    def _waiting(self, batch: BatchRecord, now: float) -> tuple[str, str]:
        if not batch.counts[JobState.QUEUED]:
            return "", ""  # the common case, and no scan of a cancelled batch's stale entries
        queue = self._queues.get(batch.batch_id, [])
        # Entries of cancelled jobs linger in the heap (lazy deletion): skip those.
        head = next(
            (j for _, i in queue if (j := self.jobs.get(i)) and j.state == JobState.QUEUED), None
        )
        return batch_waiting(
            batch,
            head,
            self.nodes.values(),
            queue_paused=self.paused,
            now=now,
            memo=self._waiting_memo,
        )

    def _flush(self) -> list[Action]:
        # Nodes coming and going change why jobs wait: every batch whose reason changed says so.
        for batch in self.batches.values() if self._waiting_stale else ():
            if self._waiting(batch, self._now) != (batch.waiting, batch.missing_model):
                self._update_batch(batch, self._now)
        self._waiting_stale = False
        out, self._out = self._out, []
        return out

    def snapshot(self, now: float) -> Snapshot:
        """Everything at once, for a late subscriber."""
        return Snapshot(
            nodes=tuple(n.view(now) for n in self.nodes.values()),
            batches=tuple(
                b.view(self, now) for b in sorted(self.batches.values(), key=lambda b: b.position)
            ),
            jobs=tuple(j.view() for j in self.jobs.values()),
            paused=self.paused,
        )
