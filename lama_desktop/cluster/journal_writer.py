"""Dirty tracking and the flush loop that writes job and batch changes to the journal.

Every write is checked: a failure is logged at once and told to the user (a `Notice`), an
UPDATE that finds no row writes that batch again from memory, and a journal file deleted
while the app runs is noticed (each flush compares its inode) and written again from memory.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lama_desktop.cluster.events import EventBus, Notice
from lama_desktop.cluster.jobfiles import BatchEntry
from lama_desktop.cluster.journal import Journal, MissingRows, StoredBatch, StoredJob
from lama_desktop.cluster.journal_rows import OPEN_BATCH_STATES
from lama_desktop.cluster.state import SchedulerState

log = logging.getLogger(__name__)

JOURNAL_FLUSH_S = 0.1
GONE_CHECK_S = 1.0  # an idle journal is still checked for deletion this often
FAILED_TITLE = "Job journal not written"


class JournalWriter:
    """Collects the jobs and batches that changed; writes them on the one journal thread."""

    def __init__(
        self,
        state: SchedulerState,
        batches: dict[str, BatchEntry],
        db: ThreadPoolExecutor,
        events: EventBus | None = None,
    ) -> None:
        self.state = state
        self.batches = batches
        self.db = db
        self.events = events
        self.journal: Journal | None = None
        self.dirty_jobs: set[str] = set()
        self.dirty_batches: set[str] = set()
        self._failing = False  # one notice per run of failed writes, not one per flush
        self._checked = 0.0

    async def run(self) -> None:
        """Flush every JOURNAL_FLUSH_S until cancelled."""
        while True:
            await asyncio.sleep(JOURNAL_FLUSH_S)
            await self.flush()

    def submit(self, what: str, write: Callable[..., None], *args: Any) -> None:
        """Queue a write on the journal thread; its failure is logged and told at once."""
        future = self.db.submit(write, *args)
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # called outside the loop (a script): tell from the journal thread
            loop = None

        def done(future: concurrent.futures.Future[None]) -> None:
            error = future.exception()
            if error is None:
                return
            log.error("journal: could not record %s: %s", what, error)
            text = f"Could not record {what}: {error}"
            if loop is None:
                self._tell(text)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self._tell, text)

        future.add_done_callback(done)

    async def flush(self) -> None:
        """Write every dirty job and batch of a durable batch; failed writes stay dirty."""
        journal = self.journal
        if journal is None:
            self.dirty_jobs.clear()
            self.dirty_batches.clear()
            return
        now = time.monotonic()
        if not (self.dirty_jobs or self.dirty_batches) and now - self._checked < GONE_CHECK_S:
            return
        self._checked = now
        jobs, self.dirty_jobs = self.dirty_jobs, set()
        batches, self.dirty_batches = self.dirty_batches, set()
        loop = asyncio.get_running_loop()
        try:
            if await loop.run_in_executor(self.db, journal.is_gone):
                await self._recreate(journal)
            rows = [row for row in map(self._stored_job, jobs) if row is not None]
            if rows:
                await loop.run_in_executor(self.db, journal.update_jobs, rows)
            for batch_id in batches:
                stored = self._stored_batch(batch_id)
                if stored is not None:
                    update = (batch_id, stored.state, stored.paused, stored.position)
                    await loop.run_in_executor(self.db, journal.update_batch, *update)
        except MissingRows as exc:
            self.dirty_batches |= batches  # their updates did not run this time
            try:
                await self._write_again(journal, exc)
            except Exception as again:
                self._failed(again)
            return
        except Exception as exc:
            # Keep them dirty: the next flush tries again, so no finished job is forgotten.
            self.dirty_jobs |= jobs
            self.dirty_batches |= batches
            self._failed(exc)
            return
        except asyncio.CancelledError:
            # Stopped mid-flush (the scheduler's stop cancels this loop): hand them back for
            # the final flush. Rows already written are written again, which is harmless.
            self.dirty_jobs |= jobs
            self.dirty_batches |= batches
            raise
        if self._failing:
            self._failing = False
            log.warning("journal: writes work again")

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            log.error("could not write the journal (retrying)", exc_info=exc)
            self._tell(f"Could not write the job journal ({exc}); retrying.")

    async def _recreate(self, journal: Journal) -> None:
        """The file was deleted (or replaced): write the nodes and open batches again."""
        # Gathered and queued in one go, so a batch submitted meanwhile is either in this
        # snapshot or written after the new file exists.
        open_batches = [b for b in map(self._whole_batch, list(self.batches)) if b is not None]
        await asyncio.get_running_loop().run_in_executor(self.db, journal.recreate, open_batches)
        text = (
            f"The job journal {journal.path} was deleted while the app ran; it was written "
            f"again from memory ({len(open_batches)} unfinished batch(es))."
        )
        log.warning("journal: %s", text)
        self._tell(text, "Job journal recreated")

    async def _write_again(self, journal: Journal, missing: MissingRows) -> None:
        """An UPDATE found no row: an error, told, and the batches concerned written again."""
        log.error("journal: %s; writing those batches again from memory", missing)
        self._tell(f"{missing}; the batches concerned were written again from memory.")
        if missing.table == "job":
            wanted = {self.state.jobs[j].batch_id for j in missing.keys if j in self.state.jobs}
        else:
            wanted = set(missing.keys)
        loop = asyncio.get_running_loop()
        for batch_id in sorted(b for b in wanted if b is not None):
            whole = self._whole_batch(batch_id, only_open=False)
            if whole is not None:
                write = functools.partial(journal.add_batch, *whole, replace=True)
                await loop.run_in_executor(self.db, write)

    def _tell(self, text: str, title: str = FAILED_TITLE) -> None:
        if self.events is not None:
            self.events.publish(Notice(title, text))

    # ----- the queue as the journal stores it --------------------------------------------------

    def _stored_job(self, job_id: str) -> StoredJob | None:
        job = self.state.jobs.get(job_id)
        if job is None or job.batch_id is None or not self.batches[job.batch_id].durable:
            return None
        image, mask, output = self.batches[job.batch_id].jobs[job_id].strings()
        return StoredJob(
            job_id,
            job.batch_id,
            job.seq,
            image,
            mask,
            output,
            job.state,
            job.attempts,
            job.crashes,
            job.reason,
            job.seconds,
            job.node,
        )

    def _stored_batch(self, batch_id: str) -> StoredBatch | None:
        record = self.state.batches.get(batch_id)
        entry = self.batches.get(batch_id)
        if record is None or entry is None or not entry.durable:
            return None
        return StoredBatch(
            batch_id,
            record.name,
            record.output_dir,
            entry.settings,
            entry.overwrite,
            record.state(self.state.paused),
            record.paused,
            record.position,
            entry.created,
        )

    def _whole_batch(
        self, batch_id: str, only_open: bool = True
    ) -> tuple[StoredBatch, list[StoredJob]] | None:
        """A durable batch (unfinished, with `only_open`) with all its jobs, as held in memory."""
        stored = self._stored_batch(batch_id)
        record = self.state.batches.get(batch_id)
        if stored is None or record is None:
            return None
        if only_open and stored.state not in OPEN_BATCH_STATES:
            return None
        jobs = [row for row in map(self._stored_job, record.job_ids) if row is not None]
        return stored, jobs
