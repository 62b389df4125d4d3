"""The agent's jobs: prefetched from desktops, queued until a worker is free, then answered."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from lama_desktop.cluster.desktop_sessions import AgentStats, DesktopSession, QueuedJob
from lama_desktop.cluster.pool import WorkerExit, WorkerPool
from lama_desktop.cluster.protocol import Cancel, Failed, Job, Result

log = logging.getLogger(__name__)

JOBS_PER_SLOT = 2  # one running + one prefetched

Send = Callable[[bytes, Any, list[Any] | None], bool]


class AgentJobs:
    """The queue and the running jobs of one agent; answers go back to the desktop that asked."""

    def __init__(
        self,
        node: str,
        pool: WorkerPool,
        send: Send,
        still_there: Callable[[QueuedJob], bool],
        stats: AgentStats,
    ) -> None:
        self.node = node
        self.pool = pool
        self.send = send
        self.still_there = still_there
        self.stats = stats
        self.queue: deque[QueuedJob] = deque()
        self.running: dict[str, QueuedJob] = {}
        self.draining = False

    def take(self, session: DesktopSession, msg: Job, payload: list[Any]) -> None:
        """A JOB from a desktop: queue it (and dispatch), or send it straight back."""
        if self.draining:
            self.send(
                session.routing_id,
                Failed(job=msg.job, reason="agent stopping", declined=True),
                None,
            )
            return
        if msg.job in self.running or any(q.job.job == msg.job for q in self.queue):
            log.warning("job %s sent twice; ignoring the copy", msg.job)
            return
        slots = self.pool.slots()
        if len(self.queue) + len(self.running) >= JOBS_PER_SLOT * slots:
            # A scheduler sends at most one running + one prefetched job per slot; more would
            # wait here unseen, so they go straight back.
            reason = (
                f"node {self.node} is full ({slots} slot(s), {JOBS_PER_SLOT} jobs each)"
                if slots
                else f"node {self.node} runs no workers (0 slots)"
            )
            self.send(session.routing_id, Failed(job=msg.job, reason=reason, declined=True), None)
            return
        # Keep the frames: they are zero-copy views of the received buffers.
        self.queue.append(QueuedJob(session.routing_id, session.key, msg, payload))
        self.dispatch()

    def cancel(self, session: DesktopSession, msg: Cancel, started: bool) -> None:
        """Withdraw a queued job or stop a running one, if it is this desktop's own."""

        def own(entry: QueuedJob) -> bool:
            return entry.desktop == session.routing_id and entry.key == session.key

        for queued in list(self.queue):
            if queued.job.job == msg.job and own(queued):
                self.queue.remove(queued)
                reply = Failed(job=msg.job, reason="cancelled", cancelled=True)
                self.send(session.routing_id, reply, None)
                return
        running = self.running.get(msg.job)
        if running is None or not own(running):
            return
        if running.worker is not None and started:
            log.info("cancelling job %s: stopping worker %s", msg.job, running.worker)
            running.cancelled = True
            self.pool.cancel(running.worker, msg.job)

    def discard_from(self, rid: bytes) -> None:
        """Drop the queued jobs of a departed desktop (running ones finish unanswered)."""
        kept = deque(q for q in self.queue if q.desktop != rid)
        if len(kept) != len(self.queue):
            log.info(
                "discarded %d queued job(s) of a departed desktop", len(self.queue) - len(kept)
            )
        self.queue = kept

    def decline_queued(self, reason: str) -> None:
        """Send every queued job back to its desktop (declined: it goes elsewhere)."""
        for queued in list(self.queue):
            reply = Failed(job=queued.job.job, reason=reason, declined=True)
            self.send(queued.desktop, reply, None)
        self.queue.clear()

    def decline_running(self, reason: str) -> None:
        """Send every job still counted as running back to its desktop."""
        for job in list(self.running.values()):
            self.send(job.desktop, Failed(job=job.job.job, reason=reason, declined=True), None)
        self.running.clear()

    def dispatch(self) -> None:
        """Hand queued jobs to free workers, in order."""
        while self.queue:
            queued = self.queue[0]
            worker = self.pool.submit(queued.job, queued.payload)
            if worker is None:
                return  # no free worker (or it could not be reached): the job waits
            self.queue.popleft()
            queued.worker = worker
            self.running[queued.job.job] = queued

    def answered(self, worker: str, msg: Result | Failed, payload: list[Any]) -> bool:
        """A worker's answer; True when it was taken (the worker is free again)."""
        queued = self.running.get(msg.job)
        if queued is None or queued.worker != worker or queued.cancelled:
            return False  # cancelled meanwhile: the cancel answers for it
        del self.running[msg.job]
        if isinstance(msg, Result):
            self.stats.jobs_done += 1
        if self.still_there(queued):
            self.send(queued.desktop, msg, payload)
        else:
            log.info("dropped the answer to job %s: its desktop is gone", msg.job)
        return True

    def exited(self, exit: WorkerExit) -> None:
        """A worker ended: its job, if any, fails back to its desktop."""
        if exit.crashed:
            self.stats.restarts += 1
        if exit.job is None:
            return
        queued = self.running.pop(exit.job, None)
        if queued is None:
            return
        if queued.cancelled or exit.cancelled:
            reply = Failed(job=exit.job, reason="cancelled", cancelled=True)
        else:
            reply = Failed(job=exit.job, reason=exit.reason, crashed=exit.crashed)
        if self.still_there(queued):
            self.send(queued.desktop, reply, None)
