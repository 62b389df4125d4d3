"""The node: a Curve-secured ROUTER for desktops in front, worker subprocesses behind it.

One `Agent` class serves both `lama-agent` on a spare machine and the desktop's own local
workers (embedded, bound on 127.0.0.1 with the desktop's key pre-authorised), so local and
remote jobs follow one path. The agent keeps no queue of its own beyond the jobs a scheduler
prefetched (up to two per slot); the scheduler decides what runs where.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any, Literal, cast

import zmq
import zmq.asyncio

import lama_desktop
from lama_desktop.cluster import hardware
from lama_desktop.cluster.auth import ZAP_DOMAIN, AgentAuthenticator, HandshakeLog, Peer
from lama_desktop.cluster.discovery import Announcer, advertised_host
from lama_desktop.cluster.keys import (
    AuthorizedKeys,
    KeyPair,
    PairingCodes,
    PairingLink,
    load_or_create_keypair,
)
from lama_desktop.cluster.protocol import (
    MAX_MESSAGE_BYTES,
    Cancel,
    Disconnect,
    Failed,
    Heartbeat,
    Hello,
    Job,
    Pair,
    Paired,
    ProtocolError,
    Ready,
    Refuse,
    Result,
    VersionMismatch,
    decode,
    encode,
    refusal_for,
)
from lama_desktop.cluster.supervisor import (
    WorkerExited,
    WorkerSupervisor,
    describe_exit,
    plan_workers,
    popen_spawner,
)
from lama_desktop.cluster.worker_link import WorkerLink

log = logging.getLogger(__name__)

MISSED_HEARTBEATS = 3
TICK_S = 0.05  # how often worker exits and restarts are looked at
JOBS_PER_SLOT = 2  # one running + one prefetched
MAX_WRONG_CODES = 10  # wrong pairing codes before every live code is withdrawn


@dataclass
class DesktopSession:
    """One desktop connected to this agent, by its ROUTER routing id."""

    routing_id: bytes
    key: str
    name: str = ""
    last_seen: float = 0.0
    greeted: bool = False  # sent HELLO: gets READY updates and heartbeats


@dataclass
class QueuedJob:
    """A job waiting for, or running on, a worker, and the desktop to answer."""

    desktop: bytes
    key: str  # the desktop's Curve key: answers go only to the same desktop, not just the same id
    job: Job
    payload: list[Any]
    worker: str | None = None
    cancelled: bool = False


@dataclass
class AgentStats:
    """Counters for logs, metrics and tests."""

    jobs_done: int = 0
    dropped: int = 0  # malformed, oversized or unknown messages
    refused: int = 0  # messages answered with REFUSE
    paired: int = 0
    restarts: int = 0


class Agent:
    """A node that runs jobs for paired desktops on its worker subprocesses."""

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
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        grace: float = 5.0,
        worker_log_level: str = "INFO",
    ) -> None:
        self.bind = bind
        self.data_dir = Path(data_dir)
        self.name = name or socket.gethostname()
        self.device = device
        self.heartbeat = heartbeat
        self.announce = announce
        self.log_file = log_file
        self.max_message_bytes = max_message_bytes
        self.grace = grace
        self.worker_log_level = worker_log_level
        self._workers_wanted: int | str = workers
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.keypair = keypair or load_or_create_keypair(self.data_dir / "agent.key")
        self.keys = AuthorizedKeys(self.data_dir / "authorized_keys")
        self.codes = PairingCodes(self.data_dir / "pairing-codes")
        self.preauthorized = {k.decode() if isinstance(k, bytes) else k for k in preauthorized}
        self.stats = AgentStats()
        self.endpoint = ""
        self.sessions: dict[bytes, DesktopSession] = {}
        self.queue: deque[QueuedJob] = deque()
        self.running: dict[str, QueuedJob] = {}
        self._models: list[str] = []
        self._announced: tuple[int, list[str]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._draining = False
        self._hurry = False
        self._wrong_codes = 0
        self._file_handler: logging.Handler | None = None
        self._announcer: Announcer | None = None
        self._worker_link: WorkerLink | None = None
        self.supervisor: WorkerSupervisor | None = None

    @property
    def public_key(self) -> bytes:
        """This agent's Curve server public key (z85)."""
        return self.keypair.public

    # -- start and stop -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind both sockets, start ZAP, the workers and the timers (needs a running loop).

        Raises ValueError for an impossible worker plan (CUDA without a GPU) and OSError when
        the address cannot be bound; nothing is left open in either case.
        """
        devices, threads = plan_workers(self._workers_wanted, self.device)
        if self.log_file:
            self._start_log_file()
        self.context = zmq.asyncio.Context()
        # Workers get their own context: the ZAP handler lives on self.context, and the
        # private ipc link must never depend on it.
        self.worker_context = zmq.asyncio.Context()
        self.auth = AgentAuthenticator(self.context, self.keys, self.codes, self.preauthorized)
        self.auth.start()
        self.front = self.context.socket(zmq.ROUTER)
        self._configure(self.front)
        self.front.setsockopt(zmq.CURVE_SERVER, 1)
        self.front.setsockopt(zmq.CURVE_SECRETKEY, self.keypair.secret)
        self.front.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        try:
            self.front.bind(self.bind)
        except zmq.ZMQError as exc:
            await self._close_sockets()
            self._stop_log_file()
            raise OSError(f"cannot listen on {self.bind}: {exc}") from exc
        self.endpoint = self.front.getsockopt_string(zmq.LAST_ENDPOINT)
        self.handshakes = HandshakeLog(self.front)
        self.back = self.worker_context.socket(zmq.ROUTER)
        self._configure(self.back)
        self._worker_link = WorkerLink()  # ipc://, or tcp on 127.0.0.1 with Curve (Windows)
        self._worker_link.bind(self.back)
        self.supervisor = WorkerSupervisor(
            popen_spawner(self._worker_link, threads, log_level=self.worker_log_level),
            grace=self.grace,
        )
        self.supervisor.set_count(devices, time.monotonic())
        self._models = hardware.models_present()
        self._info = hardware.node_info()
        self._tasks = [
            asyncio.create_task(self._serve_front(), name="agent-front"),
            asyncio.create_task(self._serve_workers(), name="agent-workers"),
            asyncio.create_task(self._tick(), name="agent-tick"),
            asyncio.create_task(self._beat(), name="agent-heartbeat"),
            asyncio.create_task(self.handshakes.run(), name="agent-handshakes"),
        ]
        if self.announce:
            self._announcer = Announcer(self.name, self.port, self.public_key.decode())
            await self._announcer.start()
        log.info(
            "agent %s listening on %s with %d worker(s) on %s",
            self.name, self.endpoint, len(devices), ", ".join(devices) or "none",
        )  # fmt: skip

    def _configure(self, sock: zmq.Socket) -> None:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # A peer reconnecting with its routing id takes it over at once (a desktop's new pipe
        # may arrive before its old one is closed); Curve + ZAP still vouch for every message.
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        sock.setsockopt(zmq.LINGER, 500)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.SNDTIMEO, 0)
        sock.setsockopt(zmq.HANDSHAKE_IVL, 5000)

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
        host = advertised_host(self.endpoint.split("//", 1)[1].rsplit(":", 1)[0].strip("[]"))
        return PairingLink(host, self.port, self.public_key.decode(), code or self.codes.issue())

    def set_workers(self, count: int) -> None:
        """Run `count` local workers from now on (0 turns local work off)."""
        assert self.supervisor is not None, "start() first"
        devices, _threads = plan_workers(count, self.device)
        self.supervisor.set_count(devices, time.monotonic())
        self._send_ready_if_changed()

    def hurry(self) -> None:
        """Stop waiting for running jobs (a second Ctrl-C): `stop` goes on to stop the workers."""
        self._hurry = True

    async def stop(self, drain: bool = True, timeout: float = 600.0) -> None:
        """Stop: with `drain`, finish running jobs first; queued ones go back to their desktop."""
        if self.supervisor is None:
            return
        self._draining = True
        for queued in list(self.queue):
            self._send_front(
                queued.desktop, Failed(job=queued.job.job, reason="agent stopping", declined=True)
            )
        self.queue.clear()
        deadline = time.monotonic() + timeout
        while drain and self.running and time.monotonic() < deadline and not self._hurry:
            await asyncio.sleep(TICK_S)
        for session in self.sessions.values():
            self._send_front(session.routing_id, Disconnect(reason="agent stopping"))
        for slot in self.supervisor.slots.values():
            if slot.process is not None:
                self._send_worker(slot.worker_id, Disconnect(reason="agent stopping"))
        self.supervisor.stop_all(time.monotonic())
        while not self.supervisor.all_stopped():
            await asyncio.sleep(TICK_S)  # the tick task collects exits and kills past the grace
        for job in list(self.running.values()):
            self._send_front(
                job.desktop, Failed(job=job.job.job, reason="agent stopped", declined=True)
            )
        self.running.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._announcer is not None:
            await self._announcer.stop()
        await self._close_sockets()
        if self._worker_link is not None:
            self._worker_link.close()
        self.supervisor = None
        log.info("agent %s stopped", self.name)
        self._stop_log_file()

    def _stop_log_file(self) -> None:
        if self._file_handler is not None:
            logging.getLogger("lama_desktop").removeHandler(self._file_handler)
            self._file_handler.close()
            self._file_handler = None

    async def _close_sockets(self) -> None:
        if hasattr(self, "handshakes"):
            self.handshakes.close()
        for attr in ("front", "back"):
            sock = getattr(self, attr, None)
            if sock is not None:
                sock.close(linger=200)
        self.auth.stop()
        self.context.term()
        if hasattr(self, "worker_context"):
            self.worker_context.term()

    # -- sending ------------------------------------------------------------------------------

    def _send(self, sock: zmq.asyncio.Socket, rid: bytes, msg: Any, payload: list[Any]) -> bool:
        # DONTWAIT: a stalled or vanished peer must never block the agent; the future is done.
        frames = [rid, *encode(msg, *payload)]
        future = cast(
            asyncio.Future[Any], sock.send_multipart(frames, flags=zmq.DONTWAIT, copy=False)
        )
        exc = future.exception()
        if exc is not None:
            log.debug("could not send %s to %r: %s", type(msg).__name__, rid, exc)
            return False
        return True

    def _send_front(self, rid: bytes, msg: Any, payload: list[Any] | None = None) -> bool:
        return self._send(self.front, rid, msg, payload or [])

    def _send_worker(self, worker_id: str, msg: Any, payload: list[Any] | None = None) -> bool:
        return self._send(self.back, worker_id.encode(), msg, payload or [])

    def _slots(self) -> int:
        assert self.supervisor is not None
        return sum(1 for s in self.supervisor.slots.values() if not s.retired)

    def _ready(self) -> Ready:
        slots = self._slots()
        return Ready(
            node=self.name,
            info=self._info,
            slots=slots,
            models=list(self._models),
            version=lama_desktop.__version__,
        )

    def _send_ready_if_changed(self) -> None:
        ready = self._ready()
        if self._announced == (ready.slots, ready.models):
            return  # READY is resent only when what the scheduler routes by has changed
        self._announced = (ready.slots, ready.models)
        for session in self.sessions.values():
            if session.greeted:
                self._send_front(session.routing_id, ready)

    # -- desktops -----------------------------------------------------------------------------

    async def _serve_front(self) -> None:
        while True:
            frames = await self.front.recv_multipart(copy=False)
            try:
                self._on_front(frames)
            except Exception:  # one bad message must never take the agent down
                self.stats.dropped += 1
                log.exception("dropped a message that broke its handler")

    def _is_paired(self, key: str) -> bool:
        return key in self.preauthorized or self.keys.contains(key)

    def _on_front(self, frames: list[zmq.Frame]) -> None:
        rid = frames[0].bytes
        user_id = frames[-1].get("User-Id") if len(frames) > 1 else None
        peer = Peer.from_user_id(user_id if isinstance(user_id, str) else None)
        if peer is None or len(frames) < 2:
            self.stats.dropped += 1
            log.warning("dropped a message without a usable peer identity")
            return
        try:
            msg, payload = decode(frames[1:], max_frame_bytes=self.max_message_bytes)
        except VersionMismatch as exc:
            self.stats.refused += 1
            log.warning("refused desktop %s: %s", peer.key, exc)
            self._send_front(rid, refusal_for(exc))
            return
        except ProtocolError as exc:
            self.stats.dropped += 1
            log.warning("dropped a bad message from %s: %s", peer.key, exc)
            return
        now = time.monotonic()
        session = self.sessions.get(rid)
        if session is None or session.key != peer.key:
            session = self.sessions[rid] = DesktopSession(rid, peer.key)
        session.last_seen = now
        if isinstance(msg, Pair):
            self._on_pair(session, msg)
        elif not self._is_paired(peer.key):
            # A pending (or revoked) key may only present a code; anything else, HELLO
            # included, is answered with REFUSE so the desktop can say why it is not served.
            self.stats.refused += 1
            log.warning("refused %s from unpaired key %s", type(msg).__name__, peer.key)
            reason = f"this desktop is not paired with agent {self.name}: pair it with a fresh link"
            self._send_front(rid, Refuse(reason=reason))
        elif isinstance(msg, Hello):
            session.name, session.greeted = msg.name, True
            log.info("desktop %s (%s) said hello", msg.name, peer.key)
            ready = self._ready()
            self._announced = (ready.slots, ready.models)
            self._send_front(rid, ready)
        elif isinstance(msg, Job):
            self._on_job(session, msg, payload)
        elif isinstance(msg, Cancel):
            self._on_cancel(session, msg)
        elif isinstance(msg, Disconnect):
            log.info("desktop %s left: %s", session.name or peer.key, msg.reason)
            self._drop_session(rid)
        elif not isinstance(msg, Heartbeat):
            self.stats.dropped += 1
            log.warning("dropped unexpected %s from %s", type(msg).__name__, peer.key)

    def _on_pair(self, session: DesktopSession, msg: Pair) -> None:
        if self._is_paired(session.key):
            self._send_front(session.routing_id, Paired(node=self.name))
            return
        if not self.codes.consume(msg.code):
            self.stats.refused += 1
            self._wrong_codes += 1
            log.warning("refused pairing from %s: wrong, expired or used code", session.key)
            if self._wrong_codes >= MAX_WRONG_CODES:
                # Someone is guessing: withdraw every live code, so the door closes at once.
                for code in self.codes.live():
                    self.codes.consume(code)
                self._wrong_codes = 0
                log.warning("%d wrong pairing codes: all codes withdrawn", MAX_WRONG_CODES)
            self._send_front(
                session.routing_id,
                Refuse(reason="pairing code is wrong, expired or already used; get a new link"),
            )
            return
        self._wrong_codes = 0
        self.keys.add(session.key, msg.desktop_name)
        self.stats.paired += 1
        log.info("paired desktop %s (%s)", msg.desktop_name, session.key)
        self._send_front(session.routing_id, Paired(node=self.name))

    def _on_job(self, session: DesktopSession, msg: Job, payload: list[Any]) -> None:
        if self._draining:
            self._send_front(
                session.routing_id, Failed(job=msg.job, reason="agent stopping", declined=True)
            )
            return
        if msg.job in self.running or any(q.job.job == msg.job for q in self.queue):
            log.warning("job %s sent twice; ignoring the copy", msg.job)
            return
        slots = self._slots()
        if len(self.queue) + len(self.running) >= JOBS_PER_SLOT * slots:
            # A scheduler sends at most one running + one prefetched job per slot; more would
            # wait here unseen, so they go straight back.
            reason = (
                f"node {self.name} is full ({slots} slot(s), {JOBS_PER_SLOT} jobs each)"
                if slots
                else f"node {self.name} runs no workers (0 slots)"
            )
            self._send_front(session.routing_id, Failed(job=msg.job, reason=reason, declined=True))
            return
        # Keep the frames: they are zero-copy views of the received buffers.
        self.queue.append(QueuedJob(session.routing_id, session.key, msg, list(payload)))
        self._dispatch()

    def _on_cancel(self, session: DesktopSession, msg: Cancel) -> None:
        """Withdraw a queued job or stop a running one, if it is this desktop's own."""

        def own(entry: QueuedJob) -> bool:
            return entry.desktop == session.routing_id and entry.key == session.key

        for queued in list(self.queue):
            if queued.job.job == msg.job and own(queued):
                self.queue.remove(queued)
                self._send_front(
                    session.routing_id, Failed(job=msg.job, reason="cancelled", cancelled=True)
                )
                return
        running = self.running.get(msg.job)
        if running is None or not own(running):
            return
        if running.worker is not None and self.supervisor is not None:
            log.info("cancelling job %s: stopping worker %s", msg.job, running.worker)
            running.cancelled = True
            self.supervisor.stop_job(running.worker, time.monotonic())

    def _drop_session(self, rid: bytes) -> None:
        self.sessions.pop(rid, None)
        kept = deque(q for q in self.queue if q.desktop != rid)
        if len(kept) != len(self.queue):
            log.info(
                "discarded %d queued job(s) of a departed desktop", len(self.queue) - len(kept)
            )
        self.queue = kept

    # -- workers ------------------------------------------------------------------------------

    def _dispatch(self) -> None:
        assert self.supervisor is not None
        idle = self.supervisor.idle_workers()
        while self.queue and idle:
            queued = self.queue.popleft()
            worker = idle.pop(0)
            if not self._send_worker(worker, queued.job, queued.payload):
                self.queue.appendleft(queued)
                return
            queued.worker = worker
            self.running[queued.job.job] = queued
            self.supervisor.mark_busy(worker, queued.job.job)

    async def _serve_workers(self) -> None:
        while True:
            frames = await self.back.recv_multipart(copy=False)
            try:
                self._on_worker(frames)
            except Exception:
                log.exception("dropped a worker message that broke its handler")

    def _on_worker(self, frames: list[zmq.Frame]) -> None:
        assert self.supervisor is not None
        worker_id = frames[0].bytes.decode("utf-8", "replace")
        if self.supervisor.heard_from(worker_id, time.monotonic()) is None:
            return  # a worker we no longer run (an old process still draining its socket)
        try:
            msg, payload = decode(frames[1:], max_frame_bytes=self.max_message_bytes)
        except ProtocolError as exc:
            log.warning("dropped a bad message from worker %s: %s", worker_id, exc)
            return
        if isinstance(msg, Ready):
            self.supervisor.mark_ready(worker_id, msg.models)
            self._refresh_models()
            self._dispatch()
        elif isinstance(msg, Result | Failed):
            queued = self.running.get(msg.job)
            if queued is None or queued.worker != worker_id or queued.cancelled:
                return  # cancelled meanwhile: the cancel answers for it
            del self.running[msg.job]
            self.supervisor.mark_idle(worker_id, time.monotonic())
            if isinstance(msg, Result):
                self.stats.jobs_done += 1
            if self._still_there(queued):
                self._send_front(queued.desktop, msg, list(payload))
            else:
                log.info("dropped the answer to job %s: its desktop is gone", msg.job)
            self._dispatch()

    def _still_there(self, queued: QueuedJob) -> bool:
        session = self.sessions.get(queued.desktop)
        return session is not None and session.key == queued.key

    def _refresh_models(self) -> None:
        assert self.supervisor is not None
        ready = [s.models for s in self.supervisor.slots.values() if s.models]
        if ready:
            self._models = sorted(set().union(*ready))
        self._send_ready_if_changed()

    def _on_exit(self, event: WorkerExited) -> None:
        if event.crashed:
            self.stats.restarts += 1
        if event.job is None:
            return
        queued = self.running.pop(event.job, None)
        if queued is None:
            return
        if queued.cancelled or event.cancelled:
            reply = Failed(job=event.job, reason="cancelled", cancelled=True)
        else:
            reply = Failed(
                job=event.job, reason=describe_exit(event.returncode), crashed=event.crashed
            )
        if self._still_there(queued):
            self._send_front(queued.desktop, reply)

    # -- timers -------------------------------------------------------------------------------

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            assert self.supervisor is not None
            try:
                for event in self.supervisor.tick(time.monotonic()):
                    self._on_exit(event)
                self._dispatch()
            except Exception:  # one bad tick must not end restarts and dispatch for good
                log.exception("agent tick failed")

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            try:
                self._beat_once()
            except Exception:  # one bad beat must not end heartbeats for good
                log.exception("agent heartbeat failed")

    def _beat_once(self) -> None:
        """Drop silent desktops; heartbeats with metrics to desktops and to workers."""
        assert self.supervisor is not None
        now = time.monotonic()
        for rid, session in list(self.sessions.items()):
            if now - session.last_seen > MISSED_HEARTBEATS * self.heartbeat:
                log.warning("desktop %s silent; dropping it", session.name or session.key)
                self._drop_session(rid)
        busy = len(self.running)
        metrics = hardware.metrics(busy_slots=busy, jobs_done=self.stats.jobs_done)
        for session in self.sessions.values():
            if session.greeted and self._is_paired(session.key):
                self._send_front(session.routing_id, Heartbeat(metrics=metrics))
        for slot in self.supervisor.slots.values():
            if slot.process is not None:
                self._send_worker(slot.worker_id, Heartbeat())
        self._refresh_models()
