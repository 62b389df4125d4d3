"""Carries out the scheduler state machine's actions: dispatch, file reads, output writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.events import EventBus, JobChanged, JobState, JobView
from lama_desktop.cluster.jobfiles import (
    BatchEntry,
    EditEntry,
    InteractiveResult,
    batch_outcome,
    edit_result,
    read_inputs,
    write_output,
)
from lama_desktop.cluster.journal_writer import JournalWriter
from lama_desktop.cluster.node_link import NodeLink
from lama_desktop.cluster.records import JobRecord
from lama_desktop.cluster.state import (
    Action,
    BatchFinished,
    CancelOnNode,
    Dispatch,
    JournalBatch,
    JournalJob,
    NodeLost,
    Publish,
    SchedulerState,
    WriteOutput,
)
from lama_desktop.engine.plan import JobOutcome

log = logging.getLogger(__name__)

_ENDED_WITHOUT_RESULT = {JobState.FAILED, JobState.POISON, JobState.CANCELLED}


class InpaintFailed(Exception):
    """An interactive edit could not be done; str(error) says why."""


class ActionExecutor:
    """Turns `Action`s into sends on node links, disk I/O in threads, events and journal rows."""

    def __init__(
        self,
        *,
        state: SchedulerState,
        events: EventBus,
        node_links: dict[str, NodeLink],
        writer: JournalWriter,
        batches: dict[str, BatchEntry],
        interactive: dict[str, EditEntry],
        io: ThreadPoolExecutor,
        clock: Callable[[], float],
        desktop_id: str,
    ) -> None:
        self.state = state
        self.events = events
        self.node_links = node_links
        self.writer = writer
        self.batches = batches
        self.interactive = interactive
        self.io = io
        self.clock = clock
        self.desktop_id = desktop_id
        self.pending_payload: dict[str, list[Any]] = {}  # a RESULT's frames until written
        self.io_tasks: set[asyncio.Task[None]] = set()

    # ----- wire ids ---------------------------------------------------------------------------

    def wire_id(self, job_id: str, lease: int) -> str:
        """The job's id on the wire."""
        # The id on the wire names this scheduler run and the lease: an agent still running a
        # job for a crashed predecessor does not take the resumed job for a duplicate, and an
        # answer about an older lease is recognised as stale.
        return f"{job_id}/{self.desktop_id}/{lease}"

    def parse_wire_id(self, wire: str) -> tuple[str, int | None]:
        """The job id and lease of a wire id (lease None: not this run's)."""
        job_id, run, lease = [*wire.rsplit("/", 2), "", ""][:3]
        if run != self.desktop_id or not lease.isdigit():
            return job_id, None
        return job_id, int(lease)

    def node_name(self, node_id: str | None) -> str | None:
        link = self.node_links.get(node_id or "")
        return link.name if link is not None else None

    # ----- outcomes ---------------------------------------------------------------------------

    def outcomes(self, batch_id: str) -> list[JobOutcome]:
        """The outcome so far of every job of the batch, in plan order."""
        return [self.outcome(job_id) for job_id in self.batches[batch_id].jobs]

    def outcome(self, job_id: str) -> JobOutcome:
        """How one batch job stands (status "queued"/"running" while not finished)."""
        job = self.state.jobs[job_id]
        assert job.batch_id is not None
        planned = self.batches[job.batch_id].jobs[job_id]
        return batch_outcome(job, planned, self.node_name(job.node) or job.node)

    # ----- actions ----------------------------------------------------------------------------

    def apply(self, actions: list[Action]) -> None:
        """Carry out the actions in order."""
        for action in actions:
            if isinstance(action, Publish):
                self.events.publish(action.event)
                if isinstance(action.event, JobChanged):
                    self._settle_failed_edit(action.event.job)
            elif isinstance(action, Dispatch):
                self._dispatch(action)
            elif isinstance(action, WriteOutput):
                self._write_output(action.job_id)
            elif isinstance(action, CancelOnNode):
                job = self.state.jobs.get(action.job_id)
                lease = job.lease if job is not None else 0
                link = self.node_links.get(action.node_id)
                if link is not None:
                    link.cancel(self.wire_id(action.job_id, lease))
            elif isinstance(action, JournalJob):
                self.writer.dirty_jobs.add(action.job_id)
            elif isinstance(action, JournalBatch):
                self.writer.dirty_batches.add(action.batch_id)
            elif isinstance(action, BatchFinished):
                self._finish_batch(action.batch_id)
            elif isinstance(action, NodeLost):
                link = self.node_links.get(action.node_id)
                if link is not None:
                    link.reset()
                    deliberate = action.reason.startswith(("agent left", "removed"))
                    level = logging.INFO if deliberate else logging.WARNING
                    log.log(level, "node %s lost: %s", link.name, action.reason)

    def _settle_failed_edit(self, view: JobView) -> None:
        """An edit that ended without a result (failed, poison, cancelled) fails its caller."""
        if view.batch_id is not None or view.state not in _ENDED_WITHOUT_RESULT:
            return
        edit = self.interactive.get(view.job_id)
        if edit is not None and not edit.done.done():
            edit.done.set_exception(InpaintFailed(view.reason or f"the edit was {view.state}"))

    def _send(self, node_id: str, msg: p.Job, *payload: Any) -> None:
        link = self.node_links.get(node_id)
        if link is None or not link.send_job(msg, *payload):
            self.apply(self.state.node_down(node_id, "unreachable", self.clock()))

    def _dispatch(self, action: Dispatch) -> None:
        job = self.state.jobs[action.job_id]
        wire = self.wire_id(action.job_id, action.lease)
        if job.batch_id is None:
            edit = self.interactive[action.job_id]
            h, w = edit.mask.shape
            msg = p.Job(
                job=wire,
                kind="array",
                settings=edit.settings,
                image_name="edit.png",
                mask_name="mask.png",
                shape=[h, w],
                attempt=action.attempt,
                windows=None if edit.windows is None else [list(b) for b in edit.windows],
            )
            self._send(action.node_id, msg, *edit.payload)
            return
        self.spawn(self._send_file_job(action, job, wire))

    async def _send_file_job(self, action: Dispatch, job: JobRecord, wire: str) -> None:
        assert job.batch_id is not None
        batch = self.batches[job.batch_id]
        planned = batch.jobs[job.job_id]
        loop = asyncio.get_running_loop()
        try:
            image, mask = await loop.run_in_executor(self.io, read_inputs, planned)
        except OSError as exc:
            reason = f"{exc.filename or planned.image}: cannot be read ({exc.strerror or exc})"
            self.apply(
                self.state.job_failed(
                    action.node_id, job.job_id, reason, self.clock(), lease=action.lease
                )
            )
            return
        if job.state != JobState.RUNNING or job.lease != action.lease:
            return  # cancelled or re-leased while the files were read
        msg = p.Job(
            job=wire,
            kind="file",
            settings=batch.settings,
            image_name=planned.image.name,
            mask_name=planned.mask.name,
            attempt=action.attempt,
        )
        self._send(action.node_id, msg, image, mask)

    def _write_output(self, job_id: str) -> None:
        payload = self.pending_payload.pop(job_id)
        job = self.state.jobs[job_id]
        if job.batch_id is None:
            self.spawn(self._finish_edit(job, payload[0]))
            return
        batch = self.batches[job.batch_id]
        output = batch.jobs[job_id].output

        async def write() -> None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(
                    self.io, write_output, output, payload[0], batch.overwrite
                )
            except Exception as exc:  # any write error fails the job with its reason
                self.apply(self.state.output_failed(job_id, str(exc), self.clock()))
            else:
                self.apply(self.state.output_written(job_id, self.clock()))

        self.spawn(write())

    async def _finish_edit(self, job: JobRecord, data: Any) -> None:
        """Hand an edit's caller the whole photo: pasting windows back copies a full frame,
        which on a 150 MP photo takes long enough to be kept off the event loop."""
        edit = self.interactive.get(job.job_id)
        if edit is not None and not edit.done.done():
            loop = asyncio.get_running_loop()
            try:
                rgb = await loop.run_in_executor(self.io, edit_result, edit, data)
            except ValueError as exc:  # the node answered with the wrong size
                if not edit.done.done():
                    edit.done.set_exception(InpaintFailed(str(exc)))
            else:
                if not edit.done.done():
                    node = self.node_name(job.node) or ""
                    edit.done.set_result(InteractiveResult(rgb, node, job.seconds or 0.0))
        self.apply(self.state.output_written(job.job_id, self.clock()))

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run an I/O coroutine as a task kept until done (`stop` waits for them)."""
        # Keep a reference until done: the loop holds tasks only weakly.
        task = asyncio.get_running_loop().create_task(work)
        self.io_tasks.add(task)
        task.add_done_callback(self._io_task_done)

    def _io_task_done(self, task: asyncio.Task[None]) -> None:
        self.io_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The coroutines turn expected errors into failed jobs; anything else is a bug,
            # logged here rather than at garbage collection (the job then times out).
            log.error("scheduler I/O task failed", exc_info=task.exception())

    def _finish_batch(self, batch_id: str) -> None:
        batch = self.batches.get(batch_id)
        if batch is None:
            return
        # The outcomes are built by whoever waits (`Scheduler.wait_batch`), not here: in the
        # app nobody does, and 100,000 of them held its GUI loop for seconds.
        if not batch.done.done():
            batch.done.set_result(None)
        self.writer.dirty_batches.add(batch_id)
