"""Dirty tracking and the flush loop that writes job and batch changes to the journal."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from lama_desktop.cluster.jobfiles import BatchEntry
from lama_desktop.cluster.journal import Journal, StoredJob
from lama_desktop.cluster.state import SchedulerState

log = logging.getLogger(__name__)

JOURNAL_FLUSH_S = 0.1


class JournalWriter:
    """Collects the jobs and batches that changed; writes them on the one journal thread."""

    def __init__(
        self, state: SchedulerState, batches: dict[str, BatchEntry], db: ThreadPoolExecutor
    ) -> None:
        self.state = state
        self.batches = batches
        self.db = db
        self.journal: Journal | None = None
        self.dirty_jobs: set[str] = set()
        self.dirty_batches: set[str] = set()

    async def run(self) -> None:
        """Flush every JOURNAL_FLUSH_S until cancelled."""
        while True:
            await asyncio.sleep(JOURNAL_FLUSH_S)
            await self.flush()

    async def flush(self) -> None:
        """Write every dirty job and batch of a durable batch; failed writes stay dirty."""
        journal = self.journal
        if journal is None or not (self.dirty_jobs or self.dirty_batches):
            self.dirty_jobs.clear()
            self.dirty_batches.clear()
            return
        jobs, self.dirty_jobs = self.dirty_jobs, set()
        batches, self.dirty_batches = self.dirty_batches, set()
        rows = []
        for job_id in jobs:
            job = self.state.jobs.get(job_id)
            if job is None or job.batch_id is None or not self.batches[job.batch_id].durable:
                continue
            planned = self.batches[job.batch_id].jobs[job_id]
            rows.append(
                StoredJob(
                    job_id,
                    job.batch_id,
                    job.seq,
                    str(planned.image),
                    str(planned.mask),
                    str(planned.output),
                    job.state,
                    job.attempts,
                    job.crashes,
                    job.reason,
                    job.seconds,
                    job.node,
                )
            )
        updates = []
        for batch_id in batches:
            record = self.state.batches.get(batch_id)
            if record is not None and self.batches[batch_id].durable:
                updates.append(
                    (batch_id, record.state(self.state.paused), record.paused, record.position)
                )
        loop = asyncio.get_running_loop()
        try:
            if rows:
                await loop.run_in_executor(self.db, journal.update_jobs, rows)
            for update in updates:
                await loop.run_in_executor(self.db, journal.update_batch, *update)
        except Exception:
            # Keep them dirty: the next flush tries again, so no finished job is forgotten.
            self.dirty_jobs |= jobs
            self.dirty_batches |= batches
            log.exception("could not write the journal")
