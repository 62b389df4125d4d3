"""The scheduler: asyncio + ZeroMQ shell around SchedulerState, the journal and the event bus.

One ROUTER socket connects to every agent (Curve client, one CONNECT_ROUTING_ID per node) and
speaks first. File reads, output writes and journal commits run in executor threads so the
event loop (the Qt loop under qasync, in the app) never blocks on disk.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import zmq
import zmq.asyncio

from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.events import (
    BatchState,
    EventBus,
    JobChanged,
    JobState,
    JobView,
    Snapshot,
)
from lama_desktop.cluster.jobfiles import (
    BatchEntry,
    EditEntry,
    InteractiveResult,
    batch_outcome,
    estimate_memory,
    read_inputs,
    settings_dict,
    write_output,
)
from lama_desktop.cluster.journal import Journal, StoredBatch, StoredJob, StoredNode
from lama_desktop.cluster.keys import KeyPair, PairingLink
from lama_desktop.cluster.links import NodeLinks, Peer
from lama_desktop.cluster.records import JobRecord, JobSpec
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
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import BatchPlan, JobOutcome, PlannedJob

log = logging.getLogger(__name__)

PAIR_TIMEOUT_S = 15.0
JOURNAL_FLUSH_S = 0.1
_ENDED_WITHOUT_RESULT = {JobState.FAILED, JobState.POISON, JobState.CANCELLED}


class InpaintFailed(Exception):
    """An interactive edit could not be done; str(error) says why."""


class PairingFailed(Exception):
    """The agent refused the pairing (wrong, expired or used code) or did not answer."""


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
    ) -> None:
        self.keypair = keypair
        self.name = name
        self.heartbeat = heartbeat
        self.clock = clock
        self.max_message_bytes = max_message_bytes
        self.desktop_id = f"desktop-{secrets.token_hex(4)}"
        self.events = EventBus()
        self.events.snapshot_source = self.snapshot
        self.state = SchedulerState(dead_after=3 * heartbeat, job_timeout=job_timeout)
        self._journal_path = journal
        self.journal: Journal | None = None
        self.links = NodeLinks(keypair, self.desktop_id, max_message_bytes)
        self.peers = self.links.peers  # node id -> Peer: connection state, by node
        self._batches: dict[str, BatchEntry] = {}
        self._interactive: dict[str, EditEntry] = {}
        self._pending_payload: dict[str, list[memoryview]] = {}
        self._dirty_jobs: set[str] = set()
        self._dirty_batches: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._io_tasks: set[asyncio.Task[None]] = set()
        self._io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="lama-io")
        self._db = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lama-journal")
        self._started = False

    # ----- life cycle -------------------------------------------------------------------------

    async def start(self, *, resume: bool = True, connect_paired: bool = True) -> None:
        """Open the socket, resume unfinished batches and reconnect paired nodes."""
        loop = asyncio.get_running_loop()
        self.links.open()
        if self._journal_path is not None:
            self.journal = await loop.run_in_executor(self._db, Journal, self._journal_path)
            if connect_paired:
                for node in await loop.run_in_executor(self._db, self.journal.nodes):
                    await self.add_node(
                        node.address, node.server_key, node.name, node_id=node.node_id
                    )
                    if not node.enabled:
                        self.set_node_enabled(node.node_id, False)
            if resume:
                await self._resume()
        self._tasks = [
            asyncio.create_task(self._receive(), name="scheduler-receive"),
            asyncio.create_task(self._beat(), name="scheduler-heartbeat"),
            asyncio.create_task(self._watch_connections(), name="scheduler-monitor"),
            asyncio.create_task(self._flush_journal_forever(), name="scheduler-journal"),
        ]
        self._started = True

    async def stop(self) -> None:
        """Say goodbye to every node, flush the journal and close everything."""
        if not self._started:
            return
        self._started = False
        for peer in self.peers.values():
            if peer.ready:
                self.links.send(peer.node_id, p.Disconnect(reason="desktop closing"))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # Reads and writes in flight finish: an output is either whole on disk or not there.
        await asyncio.gather(*self._io_tasks, return_exceptions=True)
        await self._flush_journal()
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

        `node_id`: the id the journal stored it under, so removing or disabling it later
        reaches its row.
        """
        existing = self.links.node_at(address)
        if existing is not None:
            return existing
        if node_id is None:
            local_free = local and "local" not in self.peers
            node_id = "local" if local_free else f"n-{secrets.token_hex(4)}"
        self.links.connect(Peer(node_id, address, server_key, name, local))
        self._apply(self.state.add_node(node_id, name, address, self.clock(), local=local))
        self._hello(self.peers[node_id])
        return node_id

    async def pair(self, link: PairingLink | str) -> str:
        """Pair with an agent from its link (one-time code), remember it; returns the node id."""
        if isinstance(link, str):
            link = PairingLink.parse(link)
        known = self.links.node_at(link.address)
        if known is not None and self.peers[known].ready:
            return known
        node_id = known or f"n-{secrets.token_hex(4)}"
        if known is None:
            self.links.connect(Peer(node_id, link.address, link.server_key, link.host, False))
        peer = self.peers[node_id]
        peer.pairing = asyncio.get_running_loop().create_future()
        self.links.send(node_id, p.Pair(code=link.code, desktop_name=self.name))
        try:
            name = await asyncio.wait_for(asyncio.shield(peer.pairing), PAIR_TIMEOUT_S)
        except TimeoutError:
            self.links.forget(node_id)
            raise PairingFailed(
                f"no answer from the agent at {link.address} within {PAIR_TIMEOUT_S:.0f} s"
            ) from None
        except PairingFailed:
            if not peer.refused:
                self.links.forget(node_id)
            # else: refused over a working connection; keep it, so a retry with a new code
            # reuses it rather than racing a second connection with the same routing id.
            raise
        finally:
            peer.pairing = None
        peer.name = name
        if self.journal is not None:
            stored = StoredNode(node_id, name, link.address, link.server_key, True, time.time())
            await asyncio.get_running_loop().run_in_executor(
                self._db, self.journal.save_node, stored
            )
        self._apply(self.state.add_node(node_id, name, link.address, self.clock()))
        self._hello(peer)
        log.info("paired with agent %s at %s", name, link.address)
        return node_id

    def remove_node(self, node_id: str) -> None:
        """Disconnect a node and forget it (its jobs go back to the queue)."""
        # Forget the connection first: the NodeLost this produces must not reconnect it.
        self.links.forget(node_id)
        self._apply(self.state.remove_node(node_id, self.clock()))
        if self.journal is not None:
            self._db.submit(self.journal.remove_node, node_id)

    def set_job_timeout(self, seconds: float) -> None:
        """Jobs handed out from now on, and running ones at the next tick, get this limit."""
        if seconds <= 0:
            raise ValueError(f"job timeout must be positive, not {seconds}")
        self.state.job_timeout = seconds

    def set_node_enabled(self, node_id: str, enabled: bool) -> None:
        """A disabled node gets no new jobs; the running ones finish."""
        self._apply(self.state.set_node_enabled(node_id, enabled, self.clock()))
        if self.journal is not None:
            self._db.submit(self.journal.set_node_enabled, node_id, enabled)

    # ----- submitting -------------------------------------------------------------------------

    def submit_batch(
        self, plan: BatchPlan, settings: JobSettings, name: str, *, durable: bool = True
    ) -> str:
        """Queue every job of the plan; returns the batch id. Durable batches survive a crash."""
        batch_id = f"b-{secrets.token_hex(6)}"
        output_dir = str(plan.jobs[0].output.parent) if plan.jobs else ""
        planned = {f"{batch_id}-{i}": job for i, job in enumerate(plan.jobs)}
        batch = BatchEntry(settings.to_dict(), plan.overwrite, planned, durable, time.time())
        self._batches[batch_id] = batch
        memory = estimate_memory(settings)
        specs = [
            JobSpec(
                job_id, str(job.image), str(job.output), settings.model, settings.device, memory
            )
            for job_id, job in planned.items()
        ]
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
            rows = [
                StoredJob(job_id, batch_id, i, str(job.image), str(job.mask), str(job.output))
                for i, (job_id, job) in enumerate(planned.items())
            ]
            # Queued on the one journal thread, so it lands before any update of these jobs.
            self._db.submit(self.journal.add_batch, stored, rows)
        self._apply(self.state.submit_batch(batch_id, name, output_dir, specs, self.clock()))
        return batch_id

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
            planned = {
                j.job_id: PlannedJob(Path(j.image), Path(j.mask), Path(j.output)) for j in jobs
            }
            batch = BatchEntry(stored.settings, stored.overwrite, planned, True, stored.created)
            self._batches[stored.batch_id] = batch
            memory = estimate_memory(settings)
            specs = [
                JobSpec(
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
                for j in jobs
            ]
            log.info("resuming batch %s (%d jobs) from the journal", stored.name, len(jobs))
            self._apply(
                self.state.submit_batch(
                    stored.batch_id,
                    stored.name,
                    stored.output_dir,
                    specs,
                    self.clock(),
                    resumed=True,
                    paused=stored.paused,
                )
            )
            for job in jobs:
                if job.state == JobState.DONE:
                    self._dirty_jobs.add(job.job_id)  # recognised on disk: record it

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
        self._interactive[job_id] = edit
        h, w = mask.shape
        spec = JobSpec(
            job_id,
            "(editor)",
            None,
            settings.model,
            settings.device,
            estimate_memory(settings, (h, w)),
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
            self._db.submit(self.journal.prune_finished, cleared)

    async def wait_batch(self, batch_id: str) -> list[JobOutcome]:
        """Wait until every job of the batch is finished; returns one outcome per job."""
        return await asyncio.shield(self._batches[batch_id].done)

    def outcomes(self, batch_id: str) -> list[JobOutcome]:
        """The outcome so far of every job of the batch, in plan order."""
        return [self.outcome(job_id) for job_id in self._batches[batch_id].jobs]

    def outcome(self, job_id: str) -> JobOutcome:
        """How one batch job stands (status "queued"/"running" while not finished)."""
        job = self.state.jobs[job_id]
        assert job.batch_id is not None
        planned = self._batches[job.batch_id].jobs[job_id]
        node = self.peers[job.node].name if job.node in self.peers else job.node
        return batch_outcome(job, planned, node)

    # ----- carrying out the state machine's actions -------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
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
                self.links.send(action.node_id, p.Cancel(job=self._wire_id(action.job_id, lease)))
            elif isinstance(action, JournalJob):
                self._dirty_jobs.add(action.job_id)
            elif isinstance(action, JournalBatch):
                self._dirty_batches.add(action.batch_id)
            elif isinstance(action, BatchFinished):
                self._finish_batch(action.batch_id)
            elif isinstance(action, NodeLost):
                peer = self.peers.get(action.node_id)
                if peer is not None:
                    peer.ready = False
                    # A fresh pipe: jobs still queued for the lost node are dropped with the
                    # old one, never delivered late after they went to another node.
                    self.links.reconnect(peer)
                    deliberate = action.reason.startswith(("agent left", "removed"))
                    level = logging.INFO if deliberate else logging.WARNING
                    log.log(level, "node %s lost: %s", peer.name, action.reason)

    def _settle_failed_edit(self, view: JobView) -> None:
        """An edit that ended without a result (failed, poison, cancelled) fails its caller."""
        if view.batch_id is not None or view.state not in _ENDED_WITHOUT_RESULT:
            return
        edit = self._interactive.get(view.job_id)
        if edit is not None and not edit.done.done():
            edit.done.set_exception(InpaintFailed(view.reason or f"the edit was {view.state}"))

    def _dispatch(self, action: Dispatch) -> None:
        job = self.state.jobs[action.job_id]
        wire = self._wire_id(action.job_id, action.lease)
        if job.batch_id is None:
            edit = self._interactive[action.job_id]
            h, w = edit.mask.shape
            msg = p.Job(
                job=wire,
                kind="array",
                settings=edit.settings,
                image_name="edit.png",
                mask_name="mask.png",
                shape=[h, w],
                attempt=action.attempt,
            )
            if not self.links.send(action.node_id, msg, edit.rgb, edit.mask):
                self._apply(self.state.node_down(action.node_id, "unreachable", self.clock()))
            return
        self._spawn(self._send_file_job(action, job, wire))

    async def _send_file_job(self, action: Dispatch, job: JobRecord, wire: str) -> None:
        assert job.batch_id is not None
        batch = self._batches[job.batch_id]
        planned = batch.jobs[job.job_id]
        loop = asyncio.get_running_loop()
        try:
            image, mask = await loop.run_in_executor(self._io, read_inputs, planned)
        except OSError as exc:
            reason = f"{exc.filename or planned.image}: cannot be read ({exc.strerror or exc})"
            self._apply(
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
        if not self.links.send(action.node_id, msg, image, mask):
            self._apply(self.state.node_down(action.node_id, "unreachable", self.clock()))

    def _write_output(self, job_id: str) -> None:
        payload = self._pending_payload.pop(job_id)
        job = self.state.jobs[job_id]
        if job.batch_id is None:
            edit = self._interactive.get(job_id)
            if edit is not None and not edit.done.done():
                h, w = edit.mask.shape
                rgb = np.frombuffer(payload[0], np.uint8)
                if rgb.size != h * w * 3:
                    edit.done.set_exception(
                        InpaintFailed(f"node sent {rgb.size} bytes, not {h}x{w}x3")
                    )
                else:
                    node = self.peers[job.node].name if job.node in self.peers else ""
                    result = InteractiveResult(
                        rgb.reshape(h, w, 3).copy(), node, job.seconds or 0.0
                    )
                    edit.done.set_result(result)
            self._apply(self.state.output_written(job_id, self.clock()))
            return
        batch = self._batches[job.batch_id]
        output = batch.jobs[job_id].output

        async def write() -> None:
            loop = asyncio.get_running_loop()
            try:
                await loop.run_in_executor(
                    self._io, write_output, output, payload[0], batch.overwrite
                )
            except Exception as exc:  # any write error fails the job with its reason
                self._apply(self.state.output_failed(job_id, str(exc), self.clock()))
            else:
                self._apply(self.state.output_written(job_id, self.clock()))

        self._spawn(write())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        # Keep a reference until done: the loop holds tasks only weakly.
        task = asyncio.get_running_loop().create_task(work)
        self._io_tasks.add(task)
        task.add_done_callback(self._io_task_done)

    def _io_task_done(self, task: asyncio.Task[None]) -> None:
        self._io_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # The coroutines turn expected errors into failed jobs; anything else is a bug,
            # logged here rather than at garbage collection (the job then times out).
            log.error("scheduler I/O task failed", exc_info=task.exception())

    def _finish_batch(self, batch_id: str) -> None:
        batch = self._batches.get(batch_id)
        if batch is None:
            return
        outcomes = self.outcomes(batch_id)
        if not batch.done.done():
            batch.done.set_result(outcomes)
        self._dirty_batches.add(batch_id)

    # ----- sockets ----------------------------------------------------------------------------

    def _wire_id(self, job_id: str, lease: int) -> str:
        # The id on the wire names this scheduler run and the lease: an agent still running a
        # job for a crashed predecessor does not take the resumed job for a duplicate, and an
        # answer about an older lease is recognised as stale.
        return f"{job_id}/{self.desktop_id}/{lease}"

    def _parse_wire_id(self, wire: str) -> tuple[str, int | None]:
        job_id, run, lease = [*wire.rsplit("/", 2), "", ""][:3]
        if run != self.desktop_id or not lease.isdigit():
            return job_id, None
        return job_id, int(lease)

    def _hello(self, peer: Peer) -> None:
        peer.hellos += 1
        self.links.send(peer.node_id, p.Hello(desktop=self.desktop_id, name=self.name))

    async def _receive(self) -> None:
        while True:
            peer, frames = await self.links.receive()
            if peer is None:
                continue  # a node removed meanwhile
            try:
                self._on_message(peer, frames)
            except Exception:  # one bad message must never take the scheduler down
                log.exception("dropped a message that broke its handler")

    def _on_message(self, peer: Peer, frames: list[zmq.Frame]) -> None:
        node_id = peer.node_id
        now = self.clock()
        try:
            msg, payload = p.decode(frames, max_frame_bytes=self.max_message_bytes)
        except p.VersionMismatch as exc:
            log.warning("node %s: %s", peer.name, exc)
            self.links.send(node_id, p.refusal_for(exc))
            self._apply(self.state.node_refused(node_id, str(exc), version=True))
            peer.refused = True
            return
        except p.ProtocolError as exc:
            log.warning("dropped a bad message from node %s: %s", peer.name, exc)
            return
        self.state.node_seen(node_id, now, msg.metrics if isinstance(msg, p.Heartbeat) else None)
        if isinstance(msg, p.Ready):
            self._on_ready(peer, msg, now)
        elif isinstance(msg, p.Result):
            job_id, lease = self._parse_wire_id(msg.job)
            self._pending_payload[job_id] = payload
            actions = self.state.job_result(node_id, job_id, msg.seconds, now)
            if not any(isinstance(a, WriteOutput) for a in actions):
                self._pending_payload.pop(job_id, None)
            self._apply(actions)
        elif isinstance(msg, p.Failed):
            job_id, lease = self._parse_wire_id(msg.job)
            self._apply(
                self.state.job_failed(
                    node_id,
                    job_id,
                    msg.reason,
                    now,
                    crashed=msg.crashed,
                    cancelled=msg.cancelled,
                    missing_model=msg.missing_model,
                    declined=msg.declined,
                    permanent=msg.permanent,
                    lease=lease,
                )
            )
        elif isinstance(msg, p.Paired):
            if peer.pairing is not None and not peer.pairing.done():
                peer.pairing.set_result(msg.node)
        elif isinstance(msg, p.Refuse):
            self._on_refuse(peer, msg)
        elif isinstance(msg, p.Disconnect):
            peer.ready = False
            self._apply(self.state.node_down(node_id, f"agent left: {msg.reason}", now))

    def _on_ready(self, peer: Peer, msg: p.Ready, now: float) -> None:
        info = msg.info
        gpus = info.gpus
        device = gpus[0].name if gpus else f"CPU ({info.cpu_model}, {info.cores} cores)"
        peer.name = peer.name or msg.node
        first = not peer.ready
        peer.ready, peer.refused = True, False
        if first:
            log.info("node %s ready: %d slot(s), models %s", peer.name, msg.slots, msg.models)
        self._apply(
            self.state.node_ready(
                peer.node_id,
                now,
                slots=msg.slots,
                models=msg.models,
                device=device,
                has_gpu=bool(gpus),
                ram_total=info.ram_total,
                vram_total=max((g.vram_total for g in gpus), default=0),
            )
        )

    def _on_refuse(self, peer: Peer, msg: p.Refuse) -> None:
        log.warning("node %s refused us: %s", peer.name, msg.reason)
        if peer.pairing is not None and not peer.pairing.done():
            peer.refused = True
            peer.pairing.set_exception(PairingFailed(f"the agent refused pairing: {msg.reason}"))
            return
        peer.refused = True
        version = msg.v != p.PROTOCOL_VERSION or msg.peer_version != p.PROTOCOL_VERSION
        self._apply(self.state.node_refused(peer.node_id, msg.reason, version=version))

    async def _watch_connections(self) -> None:
        """Socket monitor: a closed TCP connection or a refused handshake is known at once."""
        while True:
            peer, kind = await self.links.connection_event()
            if peer is None:
                continue
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                peer.connected = peer.handshaken = True
                if peer.pairing is None:
                    self._hello(peer)
            elif kind == zmq.EVENT_DISCONNECTED:
                peer.connected = False
                if peer.ready:
                    self._apply(self.state.node_down(peer.node_id, "connection lost", self.clock()))
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and peer.handshaken:
                # A node that shook hands before and now fails without detail is going away
                # (killed or restarting mid-handshake), not refusing us: it is offline.
                peer.connected = False
                if peer.ready:
                    self._apply(self.state.node_down(peer.node_id, "connection lost", self.clock()))
            else:
                reason = (
                    "the agent refused this desktop's key: pair it first (lama-agent pair)"
                    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    else "encrypted handshake failed: wrong server key, or not a lama-agent"
                )
                if peer.pairing is not None and not peer.pairing.done():
                    peer.pairing.set_exception(
                        PairingFailed(f"{reason} (the pairing code may have expired)")
                    )
                elif not peer.refused:
                    peer.refused = True
                    self._apply(self.state.node_refused(peer.node_id, reason))

    async def _beat(self) -> None:
        """Every heartbeat: HELLO to nodes not ready, HEARTBEAT to the others, then tick."""
        while True:
            await asyncio.sleep(self.heartbeat)
            for peer in list(self.peers.values()):
                if peer.pairing is not None:
                    # PAIR went out once (it waits in the pipe for the handshake); resending
                    # it would bring back late answers that a retry could take for its own.
                    continue
                if peer.ready:
                    self.links.send(peer.node_id, p.Heartbeat())
                elif not peer.connected:
                    continue  # HELLO goes out when the handshake succeeds; none piles up
                elif not peer.refused or peer.hellos % 30 == 0:
                    self._hello(peer)  # a refused node is asked again about every 30 s
                else:
                    peer.hellos += 1
            self._apply(self.state.tick(self.clock()))

    # ----- journal ----------------------------------------------------------------------------

    async def _flush_journal_forever(self) -> None:
        while True:
            await asyncio.sleep(JOURNAL_FLUSH_S)
            await self._flush_journal()

    async def _flush_journal(self) -> None:
        journal = self.journal
        if journal is None or not (self._dirty_jobs or self._dirty_batches):
            self._dirty_jobs.clear()
            self._dirty_batches.clear()
            return
        jobs, self._dirty_jobs = self._dirty_jobs, set()
        batches, self._dirty_batches = self._dirty_batches, set()
        rows = []
        for job_id in jobs:
            job = self.state.jobs.get(job_id)
            if job is None or job.batch_id is None or not self._batches[job.batch_id].durable:
                continue
            planned = self._batches[job.batch_id].jobs[job_id]
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
            if record is not None and self._batches[batch_id].durable:
                updates.append(
                    (batch_id, record.state(self.state.paused), record.paused, record.position)
                )
        loop = asyncio.get_running_loop()
        try:
            if rows:
                await loop.run_in_executor(self._db, journal.update_jobs, rows)
            for update in updates:
                await loop.run_in_executor(self._db, journal.update_batch, *update)
        except Exception:
            # Keep them dirty: the next flush tries again, so no finished job is forgotten.
            self._dirty_jobs |= jobs
            self._dirty_batches |= batches
            log.exception("could not write the journal")
