"""The scheduler: the public facade over SchedulerState, its node links, journal and events.

One ROUTER socket connects to every agent (Curve client, one CONNECT_ROUTING_ID per node) and
speaks first. File reads, output writes and journal commits run in executor threads so the
event loop (the Qt loop under qasync, in the app) never blocks on disk. The parts:
`nodes`/`node_traffic` (node lifecycle and what agents send), `executor` (the state machine's
actions), `journal_writer` (dirty rows and the flush loop), `node_link` (the per-node
transport seam).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Generator, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from pathlib import Path

import numpy as np

from lama_desktop.cluster import collector
from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.events import (
    BatchState,
    EventBus,
    JobState,
    NodeView,
    Notice,
    Snapshot,
)
from lama_desktop.cluster.executor import ActionExecutor, InpaintFailed
from lama_desktop.cluster.jobfiles import (
    BatchEntry,
    EditEntry,
    InteractiveResult,
    edit_payload,
    estimate_memory,
    settings_dict,
)
from lama_desktop.cluster.journal import Journal, StoredBatch, StoredJob
from lama_desktop.cluster.journal_writer import JournalWriter
from lama_desktop.cluster.keys import KeyPair, PairingLink
from lama_desktop.cluster.links import NodeLinks, ZmqNodeLink
from lama_desktop.cluster.node_link import NodeEvents, NodeLink
from lama_desktop.cluster.node_traffic import NodeTraffic
from lama_desktop.cluster.nodes import PAIR_TIMEOUT_S, Nodes
from lama_desktop.cluster.pairing_session import PairingFailed
from lama_desktop.cluster.records import JobSpec
from lama_desktop.cluster.state import Action, SchedulerState
from lama_desktop.engine.outputs import remove_leftovers
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import BatchPlan, JobOutcome, PlannedJob

__all__ = ["PAIR_TIMEOUT_S", "InpaintFailed", "PairingFailed", "Scheduler"]

log = logging.getLogger(__name__)

FEED_PER_TURN = 1000  # jobs of a large batch queued (and told to the panels) per loop turn
HEADER_ROOM = 64 * 1024  # a JOB's header and framing, next to its image and mask


class Scheduler:
    """Runs batches and interactive edits on every connected node; see docs/protocol.md."""

    def __init__(
        self,
        *,
        journal: Path | None,
        keypair: KeyPair,
        name: str,
        heartbeat: float = 1.0,
        job_timeout: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        max_message_bytes: int = p.MAX_MESSAGE_BYTES,
        pause_collector: bool = False,
    ) -> None:
        """`pause_collector`: hold the cyclic garbage collector while a large batch is queued
        and freeze what it made (`collector`): for the app, whose GUI loop this is."""
        self.keypair = keypair
        self.pause_collector = pause_collector
        self.name = name
        self.heartbeat = heartbeat
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.desktop_id = f"desktop-{secrets.token_hex(4)}"
        self.events = EventBus()
        self.events.snapshot_source = self.snapshot
        self.state = SchedulerState(dead_after=3 * heartbeat, job_timeout=job_timeout)
        self._journal_path = journal
        self.links = NodeLinks(keypair, self.desktop_id, max_message_bytes)
        self.peers = self.links.peers  # node id -> Peer: connection state, by node
        self.node_links: dict[str, NodeLink] = {}  # node id -> its transport (see node_link)
        self._batches: dict[str, BatchEntry] = {}
        self._interactive: dict[str, EditEntry] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lama-io")
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lama-journal")
        self.writer = JournalWriter(self.state, self._batches, self._db, self.events)
        self.executor = ActionExecutor(
            state=self.state,
            events=self.events,
            node_links=self.node_links,
            writer=self.writer,
            batches=self._batches,
            interactive=self._interactive,
            io=self._io,
            clock=clock,
            desktop_id=self.desktop_id,
        )
        self.nodes = Nodes(
            links=self.links,
            node_links=self.node_links,
            state=self.state,
            executor=self.executor,
            writer=self.writer,
            db=self._db,
            clock=clock,
            name=name,
            desktop_id=self.desktop_id,
            heartbeat=heartbeat,
            max_message_bytes=max_message_bytes,
        )
        self.traffic = NodeTraffic(self.nodes)
        # Where a NodeLink of any transport reports READY, RESULT, FAILED and down.
        self.node_events: NodeEvents = self.traffic
        self._started = False
        self._feeding: dict[str, Iterator[JobSpec]] = {}  # batches still being queued

    @property
    def journal(self) -> Journal | None:
        """The open journal (None without one, or before `start`)."""
        return self.writer.journal

    # ----- life cycle -------------------------------------------------------------------------

    async def start(self, *, resume: bool = True, connect_paired: bool = True) -> None:
        """Open the socket, resume unfinished batches and reconnect paired nodes."""
        loop = asyncio.get_running_loop()
        self.links.open()
        if self._journal_path is not None:
            journal = await loop.run_in_executor(self._db, Journal, self._journal_path)
            self.writer.journal = journal
            if journal.recovery is not None:  # the app's window shows it
                self.events.publish(Notice("Job journal replaced", journal.recovery.message()))
            if connect_paired:
                for node in await loop.run_in_executor(self._db, journal.nodes):
                    await self.add_node(
                        node.address, node.server_key, node.name, node_id=node.node_id
                    )
                    if not node.enabled:
                        self.set_node_enabled(node.node_id, False)
            if resume:
                await self._resume()
        self._tasks = [
            asyncio.create_task(self.traffic.receive(), name="scheduler-receive"),
            asyncio.create_task(self.traffic.beat(), name="scheduler-heartbeat"),
            asyncio.create_task(self.traffic.watch_connections(), name="scheduler-monitor"),
            asyncio.create_task(self.writer.run(), name="scheduler-journal"),
        ]
        self._started = True

    async def stop(self) -> None:
        """Say goodbye to every node, flush the journal and close everything."""
        if not self._started:
            return
        self._started = False
        for batch_id in list(self._feeding):  # a batch being queued is whole in the journal
            self._end_feed(batch_id)
        self.nodes.say_goodbye()
        others = [link for link in self.node_links.values() if not isinstance(link, ZmqNodeLink)]
        for link in others:  # HTTP endpoints: their requests and probes end here
            link.close()
        await asyncio.gather(*(link.wait_closed() for link in others), return_exceptions=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Reads and writes in flight finish: an output is either whole on disk or not there.
        await asyncio.gather(*self.executor.io_tasks, return_exceptions=True)
        await self.writer.flush()
        for batch in self._batches.values():
            if not batch.done.done():
                batch.done.cancel()
        for edit in self._interactive.values():
            if not edit.done.done():
                edit.done.set_exception(InpaintFailed("the scheduler stopped"))
        self.links.close()
        if self.journal is not None:
            journal = self.journal
            await asyncio.get_running_loop().run_in_executor(self._db, journal.close)
        self._io.shutdown(wait=True)
        self._db.shutdown(wait=True)

    def snapshot(self) -> Snapshot:
        """Everything at once, for a late subscriber."""
        return self.state.snapshot(self.clock())

    def node_views(self) -> tuple[NodeView, ...]:
        """The nodes alone: a snapshot also builds a view of every job ever queued."""
        now = self.clock()
        return tuple(node.view(now) for node in self.state.nodes.values())

    # ----- nodes ------------------------------------------------------------------------------

    async def add_node(
        self,
        address: str,
        server_key: str,
        name: str,
        local: bool = False,
        node_id: str | None = None,
    ) -> str:
        """Connect to an (already paired) agent; returns its node id. HELLO goes out at once.

        An http(s):// address attaches an IOPaint-compatible endpoint instead (`server_key`
        is then its bearer token, or ""); it is remembered in the journal like a paired node.

        `node_id`: the id the journal stored it under, so removing or disabling it later
        reaches its row.
        """
        if address.lower().startswith(("http://", "https://")):
            from lama_desktop.cluster.http_nodes import add_http_node  # aiohttp: only when used

            return await add_http_node(self, address, server_key, name, node_id)
        return await self.nodes.add_node(address, server_key, name, local, node_id)

    async def pair(self, link: PairingLink | str) -> str:
        """Pair with an agent from its link (one-time code), remember it; returns the node id."""
        if isinstance(link, str):
            link = PairingLink.parse(link)
        return await self.nodes.pair(link)

    def remove_node(self, node_id: str) -> None:
        """Disconnect a node and forget it (its jobs go back to the queue)."""
        self.nodes.remove_node(node_id)

    def set_job_timeout(self, seconds: float) -> None:
        """Jobs handed out from now on, and running ones at the next tick, get this limit."""
        if seconds <= 0:
            raise ValueError(f"job timeout must be positive, not {seconds}")
        self.state.job_timeout = seconds

    def set_node_enabled(self, node_id: str, enabled: bool) -> None:
        """A disabled node gets no new jobs; the running ones finish."""
        self.nodes.set_node_enabled(node_id, enabled)

    # ----- submitting -------------------------------------------------------------------------

    def submit_batch(
        self, plan: BatchPlan, settings: JobSettings, name: str, *, durable: bool = True
    ) -> str:
        """Queue every job of the plan; returns the batch id. Durable batches survive a crash."""
        batch_id = f"b-{secrets.token_hex(6)}"
        output_dir = str(plan.jobs[0].output.parent) if plan.jobs else ""
        batch = BatchEntry(settings.to_dict(), plan.overwrite, {}, durable, time.time())
        self._batches[batch_id] = batch
        memory = estimate_memory(settings)

        def specs() -> Iterator[JobSpec]:
            # Pulled a chunk per loop turn by `_submit`: each job is kept as the state takes it.
            for i, job in enumerate(plan.jobs):
                job_id = f"{batch_id}-{i}"
                batch.jobs[job_id] = job
                image, _, output = job.strings()
                yield JobSpec(job_id, image, output, settings.model, settings.device, memory)

        self._submit(batch_id, name, output_dir, specs(), len(plan.jobs))
        if durable and self.journal is not None:
            stored = StoredBatch(
                batch_id,
                name,
                output_dir,
                batch.settings,
                plan.overwrite,
                BatchState.QUEUED,
                created=batch.created,
            )
            # Queued on the one journal thread before any update of these jobs (those wait for
            # the flush loop), and all of them at once: a crash while the rest are still being
            # queued here resumes the whole batch.
            self.writer.submit(
                f"the new batch {name}", _record_batch, self.journal, stored, plan.jobs
            )
        self._clear_leftovers(plan.jobs)
        return batch_id

    def _submit(
        self,
        batch_id: str,
        name: str,
        output_dir: str,
        specs: Iterator[JobSpec],
        total: int,
        **options: bool,
    ) -> None:
        """Queue the first FEED_PER_TURN jobs now and the rest as many per loop turn: building
        and telling 100,000 jobs at once held the app's GUI loop for seconds."""
        first = list(islice(specs, FEED_PER_TURN))
        now = self.clock()
        self._apply(
            self.state.submit_batch(batch_id, name, output_dir, first, now, total=total, **options)
        )
        if not self.state.missing_jobs(batch_id):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a script): all at once
            self._apply(self.state.add_jobs(batch_id, specs, self.clock()))
            return
        self._feeding[batch_id] = specs
        if self.pause_collector:
            collector.PAUSE.hold()
        loop.call_soon(self._feed_more, batch_id)

    def _feed_more(self, batch_id: str) -> None:
        """Queue the next chunk of a batch being fed (a method, not a closure that schedules
        itself: that cycle kept the plan alive, and with the collector frozen for good)."""
        specs = self._feeding.get(batch_id)
        if specs is None:
            return  # the scheduler stopped: the journal has the batch for next time
        try:
            chunk = list(islice(specs, FEED_PER_TURN))
            self._apply(self.state.add_jobs(batch_id, chunk, self.clock()))
        except BaseException:
            self._end_feed(batch_id)
            raise
        if self.state.missing_jobs(batch_id):
            asyncio.get_running_loop().call_soon(self._feed_more, batch_id)
        else:
            self._end_feed(batch_id)

    def _end_feed(self, batch_id: str) -> None:
        """A feed ended (or stopped): its jobs' source goes, and its hold on the collector."""
        specs = self._feeding.pop(batch_id, None)
        if specs is None:
            return
        if isinstance(specs, Generator):
            specs.close()  # its frame (and the plan it reads) goes now
        if self.pause_collector:
            collector.PAUSE.release()

    def _clear_leftovers(self, jobs: list[PlannedJob]) -> None:
        """Remove, on an I/O thread, the temp outputs killed writers left for these jobs."""
        plan = BatchPlan(jobs=jobs, skipped=[], already_done=[])

        async def clear() -> None:
            await asyncio.get_running_loop().run_in_executor(self._io, remove_leftovers, plan)

        self.executor.spawn(clear())  # a temp being written now is locked, and kept

    async def _resume(self) -> None:
        assert self.journal is not None
        loop = asyncio.get_running_loop()
        for stored, jobs in await loop.run_in_executor(self._db, self.journal.unfinished):
            try:
                # Checked before anything is kept: a batch written by another version (or a
                # damaged row) is skipped and named, and the app still starts.
                settings = JobSettings.from_dict(stored.settings)
            except (ValueError, TypeError, KeyError) as exc:
                log.error("cannot resume batch %s from the journal (%s); left as it is",
                          stored.name, exc)  # fmt: skip
                continue
            planned = {j.job_id: PlannedJob(j.image, j.mask, j.output) for j in jobs}
            batch = BatchEntry(stored.settings, stored.overwrite, planned, True, stored.created)
            self._batches[stored.batch_id] = batch
            self._clear_leftovers(list(planned.values()))
            specs = self._resumed_specs(jobs, estimate_memory(settings), settings)
            log.info("resuming batch %s (%d jobs) from the journal", stored.name, len(jobs))
            self._submit(
                stored.batch_id,
                stored.name,
                stored.output_dir,
                specs,
                len(jobs),
                resumed=True,
                paused=stored.paused,
            )

    def _resumed_specs(
        self, jobs: list[StoredJob], memory: int, settings: JobSettings
    ) -> Iterator[JobSpec]:
        for j in jobs:
            if j.state == JobState.DONE:
                # Recognised on disk: recorded by the next flush. Marked as the state takes
                # the job (`_submit` pulls and queues a chunk in one step), never before.
                self.writer.dirty_jobs.add(j.job_id)
            yield JobSpec(
                j.job_id,
                j.image,
                j.output,
                settings.model,
                settings.device,
                memory,
                state=j.state,
                attempts=j.attempts,
                crashes=j.crashes,
                reason=j.reason,
            )

    async def inpaint(
        self, rgb: np.ndarray, mask: np.ndarray, settings: JobSettings
    ) -> InteractiveResult:
        """Clean one edit on the best free node, ahead of every batch job."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError("rgb must be a uint8 array of shape (height, width, 3)")
        if mask.dtype != np.uint8 or mask.shape != rgb.shape[:2]:
            raise ValueError("mask must be a uint8 array of the image's height and width")
        job_id = f"i-{secrets.token_hex(6)}"
        edit = EditEntry(
            np.ascontiguousarray(rgb), np.ascontiguousarray(mask), settings_dict(settings)
        )
        # Finding the crop windows reads the whole mask: off the event loop (the GUI's).
        await asyncio.get_running_loop().run_in_executor(self._io, edit_payload, edit, settings.hd)
        self._check_edit_size(edit, settings)
        self._interactive[job_id] = edit
        spec = JobSpec(
            job_id,
            "(editor)",
            None,
            settings.model,
            settings.device,
            estimate_memory(settings, edit.model_size()),
        )
        self._apply(self.state.submit_interactive(spec, self.clock()))
        try:
            return await asyncio.shield(edit.done)
        except asyncio.CancelledError:
            # Forget the edit first: its caller is gone, so nobody should be told it failed.
            self._interactive.pop(job_id, None)
            self._apply(self.state.cancel_job(job_id, self.clock()))
            raise
        finally:
            self._interactive.pop(job_id, None)
            self.state.forget_job(job_id)

    def _check_edit_size(self, edit: EditEntry, settings: JobSettings) -> None:
        """Refuse, before anything is sent, an edit larger than one message may carry."""
        size = edit.payload_bytes()
        limit = self.max_message_bytes - HEADER_ROOM
        if size <= limit:
            return
        h, w = edit.mask.shape
        mib = f"{size / 2**20:.0f} MiB, over the {limit / 2**20:.0f} MiB one job may carry"
        if edit.windows is None:
            raise InpaintFailed(
                f"with the {settings.hd.strategy.value} HD strategy this {w}x{h} photo needs "
                f"{mib}; choose the crop strategy (Settings) to send only the erased areas"
            )
        raise InpaintFailed(
            f"the erased areas of this {w}x{h} photo need {mib}; erase a smaller area at a time"
        )

    # ----- user commands ----------------------------------------------------------------------

    def cancel_job(self, job_id: str) -> None:
        self._apply(self.state.cancel_job(job_id, self.clock()))

    def cancel_batch(self, batch_id: str) -> None:
        self._apply(self.state.cancel_batch(batch_id, self.clock()))

    def pause(self) -> None:
        self._apply(self.state.pause(True, self.clock()))

    def resume(self) -> None:
        self._apply(self.state.pause(False, self.clock()))

    def pause_batch(self, batch_id: str) -> None:
        self._apply(self.state.pause_batch(batch_id, True, self.clock()))

    def resume_batch(self, batch_id: str) -> None:
        self._apply(self.state.pause_batch(batch_id, False, self.clock()))

    def retry_failed(self, batch_id: str) -> None:
        batch = self._batches.get(batch_id)
        if batch is not None and batch.done.done():
            batch.done = asyncio.get_running_loop().create_future()
        self._apply(self.state.retry_failed(batch_id, self.clock()))

    def move_batch(self, batch_id: str, delta: int) -> None:
        self._apply(self.state.move_batch(batch_id, delta, self.clock()))

    def clear_finished(self) -> None:
        """Forget finished batches, here and in the journal (older runs' ones too)."""
        cleared = [b for b, record in self.state.batches.items() if record.finished]
        for batch_id in cleared:
            self._apply(self.state.forget_batch(batch_id, self.clock()))
            self._batches.pop(batch_id, None)
        if self.journal is not None:
            self.writer.submit("clearing finished batches", self.journal.prune_finished, cleared)

    async def wait_batch(self, batch_id: str) -> list[JobOutcome]:
        """Wait until every job of the batch is finished; returns one outcome per job."""
        await asyncio.shield(self._batches[batch_id].done)
        return self.outcomes(batch_id)

    def outcomes(self, batch_id: str) -> list[JobOutcome]:
        """The outcome so far of every job of the batch, in plan order."""
        return self.executor.outcomes(batch_id)

    def outcome(self, job_id: str) -> JobOutcome:
        """How one batch job stands (status "queued"/"running" while not finished)."""
        return self.executor.outcome(job_id)

    def _apply(self, actions: list[Action]) -> None:
        self.executor.apply(actions)


def _record_batch(journal: Journal, stored: StoredBatch, jobs: list[PlannedJob]) -> None:
    """Write a new batch and its jobs' rows (on the journal thread: building 100,000 rows
    would hold the event loop, the GUI's in the app, for a second or more). Job ids are the
    batch id and the job's place in the plan, as `Scheduler.submit_batch` makes them."""
    batch_id = stored.batch_id
    rows = [StoredJob(f"{batch_id}-{i}", batch_id, i, *job.strings()) for i, job in enumerate(jobs)]
    journal.add_batch(stored, rows)
