"""The node: a Curve-secured ROUTER for desktops in front, a worker pool behind it.

One `Agent` class serves both `lama-agent` on a spare machine and the desktop's own local
workers (embedded, bound on 127.0.0.1 with the desktop's key pre-authorised), so local and
remote jobs follow one path. The agent keeps no queue of its own beyond the jobs a scheduler
prefetched (up to two per slot); the scheduler decides what runs where. Where the jobs run is
the `WorkerPool`'s business (`SubprocessPool` unless another is passed in); desktops and their
sessions are in `desktop_sessions`, pairing and ZAP in `pairing`.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Iterable
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, Literal

import zmq
import zmq.asyncio

import lama_desktop
from lama_desktop.cluster import hardware
from lama_desktop.cluster.agent_jobs import JOBS_PER_SLOT, AgentJobs
from lama_desktop.cluster.auth import HandshakeLog
from lama_desktop.cluster.desktop_sessions import (
    MISSED_HEARTBEATS,
    AgentStats,
    DesktopFront,
    DesktopSession,
    QueuedJob,
    why_gone,
)
from lama_desktop.cluster.discovery import Announcer
from lama_desktop.cluster.keys import KeyPair, PairingLink, load_or_create_keypair
from lama_desktop.cluster.pairing import AgentPairing
from lama_desktop.cluster.pool import WorkerExit, WorkerPool
from lama_desktop.cluster.protocol import (
    FRAME_BYTES,
    Cancel,
    Disconnect,
    Failed,
    Heartbeat,
    Hello,
    Job,
    Pair,
    Ready,
    Refuse,
    Result,
)
from lama_desktop.cluster.subprocess_pool import TICK_S, SubprocessPool
from lama_desktop.cluster.supervisor import WorkerSupervisor

__all__ = ["JOBS_PER_SLOT", "Agent", "AgentStats", "DesktopSession", "QueuedJob"]

log = logging.getLogger(__name__)


class Agent:
    """A node that runs jobs for paired desktops on its worker pool."""

    def __init__(
        self,
        bind: str,
        *,
        data_dir: Path,
        workers: int | Literal["auto"] = "auto",
        device: str = "auto",
        name: str | None = None,
        keypair: KeyPair | None = None,
        preauthorized: Iterable[bytes] = (),
        announce: bool = False,
        heartbeat: float = 1.0,
        log_file: bool = True,
        max_message_bytes: int = FRAME_BYTES,
        grace: float = 5.0,
        worker_log_level: str = "INFO",
        pool: WorkerPool | None = None,
    ) -> None:
        self.bind = bind
        self.data_dir = Path(data_dir)
        self.name = name or socket.gethostname()
        self.heartbeat = heartbeat
        self.announce = announce
        self.log_file = log_file
        self.max_message_bytes = max_message_bytes
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keypair = keypair or load_or_create_keypair(self.data_dir / "agent.key")
        self.pairing = AgentPairing(self.data_dir, preauthorized)
        self.keys, self.codes = self.pairing.keys, self.pairing.codes
        self.preauthorized = self.pairing.preauthorized
        self.pool: WorkerPool = pool or SubprocessPool(
            workers, device, grace=grace, log_level=worker_log_level,
            max_message_bytes=max_message_bytes,
        )  # fmt: skip
        self.stats = AgentStats()
        self.endpoint = ""
        self.sessions: dict[bytes, DesktopSession] = {}
        self.jobs = AgentJobs(self.name, self.pool, self._send_front, self._still_there, self.stats)
        self._announced: tuple[int, list[str], str | None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self._hurry = False
        self._file_handler: logging.Handler | None = None
        self._announcer: Announcer | None = None

    @property
    def public_key(self) -> bytes:
        """This agent's Curve server public key (z85)."""
        return self.keypair.public

    @property
    def supervisor(self) -> WorkerSupervisor | None:
        """The pool's process supervisor, if it has one (for diagnostics and tests)."""
        return getattr(self.pool, "supervisor", None)

    @property
    def queue(self) -> deque[QueuedJob]:
        """Jobs waiting for a free worker."""
        return self.jobs.queue

    @property
    def running(self) -> dict[str, QueuedJob]:
        """Jobs on a worker, by wire id."""
        return self.jobs.running

    # -- start and stop -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the front, start ZAP, the worker pool and the timers (needs a running loop).

        Raises ValueError for an impossible worker plan (CUDA without a GPU) and OSError when
        the address cannot be bound; nothing is left open in either case.
        """
        self.pool.validate()
        if self.log_file:
            self._start_log_file()
        self.context = zmq.asyncio.Context()
        self.auth = self.pairing.start_zap(self.context, self.public_key)
        self.desktops = DesktopFront(self.context, self.max_message_bytes, self.heartbeat)
        self.sessions = self.desktops.sessions
        self.front = self.desktops.sock
        try:
            self.endpoint = self.desktops.bind(self.bind, self.keypair)
        except zmq.ZMQError as exc:
            await self._close_front()
            self._stop_log_file()
            raise OSError(f"cannot listen on {self.bind}: {exc}") from exc
        self.handshakes = HandshakeLog(self.front)
        await self.pool.start(self)
        self._started = True
        self._tasks = [
            asyncio.create_task(self._serve_front(), name="agent-front"),
            asyncio.create_task(self._beat(), name="agent-heartbeat"),
            asyncio.create_task(self.handshakes.run(), name="agent-handshakes"),
        ]
        if self.announce:
            self._announcer = Announcer(self.name, self.port, self.public_key.decode())
            await self._announcer.start()
        log.info("agent %s listening on %s with %s", self.name, self.endpoint, self.pool.describe())

    def _start_log_file(self) -> None:
        handler = RotatingFileHandler(
            self.data_dir / "agent.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logging.getLogger("lama_desktop").addHandler(handler)
        self._file_handler = handler

    @property
    def port(self) -> int:
        """The TCP port actually bound (resolved when bind used port 0)."""
        return int(self.endpoint.rsplit(":", 1)[1])

    def pairing_link(self, code: str | None = None) -> PairingLink:
        """A link a desktop can pair with; issues a fresh one-time code unless given one."""
        return self.pairing.link(self.endpoint, self.public_key.decode(), code)

    def set_workers(self, count: int) -> None:
        """Run `count` local workers from now on (0 turns local work off)."""
        assert self._started, "start() first"
        self.pool.set_workers(count)
        self._send_ready_if_changed()

    def hurry(self) -> None:
        """Stop waiting for running jobs (a second Ctrl-C): `stop` goes on to stop the workers."""
        self._hurry = True

    async def stop(self, drain: bool = True, timeout: float = 600.0) -> None:
        """Stop: with `drain`, finish running jobs first; queued ones go back to their desktop."""
        if not self._started:
            return
        self.jobs.draining = True
        self.jobs.decline_queued("agent stopping")
        deadline = time.monotonic() + timeout
        while drain and self.running and time.monotonic() < deadline and not self._hurry:
            await asyncio.sleep(TICK_S)
        for session in self.sessions.values():
            self._send_front(session.routing_id, Disconnect(reason="agent stopping"))
        await self.pool.stop()
        self.jobs.decline_running("agent stopped")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._announcer is not None:
            await self._announcer.stop()
        await self._close_front()
        self._started = False
        log.info("agent %s stopped", self.name)
        self._stop_log_file()

    def _stop_log_file(self) -> None:
        if self._file_handler is not None:
            logging.getLogger("lama_desktop").removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None

    async def _close_front(self) -> None:
        if hasattr(self, "handshakes"):
            self.handshakes.close()
        self.desktops.close()
        await self.auth.aclose()
        self.context.term()

    # -- READY ----------------------------------------------------------------------------------

    def _send_front(self, rid: bytes, msg: Any, payload: list[Any] | None = None) -> bool:
        return self.desktops.send(rid, msg, payload)

    def _still_there(self, queued: QueuedJob) -> bool:
        return self.desktops.still_there(queued)

    def _ready(self) -> Ready:
        return Ready(
            node=self.name,
            info=self.pool.info(),
            slots=self.pool.slots(),
            models=self.pool.models(),
            version=lama_desktop.__version__,
        )

    def _ready_or_down(self) -> Ready | Disconnect:
        """READY, or DISCONNECT(reason) while the pool is unavailable (its cluster is gone)."""
        down = self.pool.unavailable()
        ready = self._ready()
        self._announced = (ready.slots, ready.models, down)
        return Disconnect(reason=down) if down is not None else ready

    def _send_ready_if_changed(self) -> None:
        announced = self._announced
        msg = self._ready_or_down()
        if self._announced == announced:
            return  # READY is resent only when what the scheduler routes by has changed
        if isinstance(msg, Disconnect):
            self.jobs.decline_queued(msg.reason)  # desktops requeue them; none waits here
        for session in self.desktops.greeted():
            self._send_front(session.routing_id, msg)

    # -- desktops -----------------------------------------------------------------------------

    async def _serve_front(self) -> None:
        while True:
            frames = await self.front.recv_multipart(copy=False)
            try:
                self._on_front(frames)
            except Exception:  # one bad message must never take the agent down
                self.stats.dropped += 1
                log.exception("dropped a message that broke its handler")

    def _on_front(self, frames: list[zmq.Frame]) -> None:
        read = self.desktops.read(frames, time.monotonic(), self.stats)
        if read is None:
            return
        session, msg, payload = read
        rid = session.routing_id
        if isinstance(msg, Pair):
            reply = self.pairing.answer(session.key, msg, self.name, self.public_key)
            self.stats.paired = self.pairing.paired
            if isinstance(reply, Refuse):
                self.stats.refused += 1
            self._send_front(rid, reply)
        elif not self.pairing.is_paired(session.key):
            # A pending (or revoked) key may only present a code; anything else, HELLO
            # included, is answered with REFUSE so the desktop can say why it is not served.
            self.stats.refused += 1
            log.warning("refused %s from unpaired key %s", type(msg).__name__, session.key)
            reason = f"this desktop is not paired with agent {self.name}: pair it with a fresh link"
            self._send_front(rid, Refuse(reason=reason))
        elif isinstance(msg, Hello):
            session.name, session.greeted = msg.name, True
            log.info("desktop %s (%s) said hello", msg.name, session.key)
            self._send_front(rid, self._ready_or_down())
        elif isinstance(msg, Job):
            self.jobs.take(session, msg, payload)
        elif isinstance(msg, Cancel):
            self.jobs.cancel(session, msg, self._started)
        elif isinstance(msg, Disconnect):
            log.info("desktop %s left: %s", session.name or session.key, msg.reason)
            self._drop_session(rid)
        elif not isinstance(msg, Heartbeat):
            self.stats.dropped += 1
            log.warning("dropped unexpected %s from %s", type(msg).__name__, session.key)

    def _drop_session(self, rid: bytes) -> None:
        self.sessions.pop(rid, None)
        self.jobs.discard_from(rid)

    # -- the pool (PoolListener) ----------------------------------------------------------------

    def workers_changed(self) -> None:
        """Slots or models may differ: READY again if so, then hand out queued jobs."""
        self._send_ready_if_changed()
        self.jobs.dispatch()

    def workers_free(self) -> None:
        self.jobs.dispatch()

    def job_answered(self, worker: str, msg: Result | Failed, payload: list[Any]) -> bool:
        return self.jobs.answered(worker, msg, payload)

    def worker_exited(self, exit: WorkerExit) -> None:
        self.jobs.exited(exit)

    # -- heartbeats ---------------------------------------------------------------------------

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                self._beat_once()
            except Exception:  # one bad beat must not end heartbeats for good
                log.exception("agent heartbeat failed")

    def _beat_once(self) -> None:
        """Heartbeats with metrics to desktops and to workers; drop desktops that are gone."""
        busy = len(self.running)
        metrics = hardware.metrics(busy_slots=busy, jobs_done=self.stats.jobs_done)
        now, silence = time.monotonic(), MISSED_HEARTBEATS * self.heartbeat
        for session in list(self.sessions.values()):
            reached = None  # no heartbeat for strangers, pairing keys and the unpaired
            if session.greeted and self.pairing.is_paired(session.key):
                reached = self.desktops.reaches(session.routing_id, Heartbeat(metrics=metrics))
            name = session.name or session.key
            why = why_gone(session, now, silence, reached)
            if why:
                log.warning("desktop %s %s; dropping it", name, why)
                self._drop_session(session.routing_id)
            elif now - session.last_seen > silence and not session.quiet_told:
                session.quiet_told = True
                log.info("desktop %s silent for %.1f s but still connected (busy); its jobs are "
                         "kept", name, now - session.last_seen)  # fmt: skip
        self.pool.beat()
        self._send_ready_if_changed()
