"""The agent's front: one Curve ROUTER, and a session per desktop connected to it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio

from lama_desktop.cluster.auth import PENDING, ZAP_DOMAIN, Peer
from lama_desktop.cluster.keys import KeyPair
from lama_desktop.cluster.protocol import (
    CURVE_FRAME_OVERHEAD,
    Job,
    Message,
    ProtocolError,
    VersionMismatch,
    decode,
    refusal_for,
)
from lama_desktop.cluster.routers import configure_router, send_now, send_status

log = logging.getLogger(__name__)

# A pending peer (one pairing with a code) sends one small PAIR; anything larger is dropped.
PENDING_MAX_BYTES = 16 * 1024
# A desktop silent for this many heartbeats is dropped, unless its connection is still alive.
MISSED_HEARTBEATS = 3
# A desktop whose connection is alive but which says nothing (its loop is busy: the app queuing
# 100,000 photos at once) keeps its jobs this long before it is dropped all the same.
QUIET_LIMIT_S = 60.0


@dataclass
class DesktopSession:
    """One desktop connected to this agent, by its ROUTER routing id."""

    routing_id: bytes
    key: str
    name: str = ""
    last_seen: float = 0.0
    greeted: bool = False  # sent HELLO: gets READY updates and heartbeats
    quiet_told: bool = False  # "silent but connected" was logged for this silence


def why_gone(session: DesktopSession, now: float, silence: float, reached: bool | None) -> str:
    """Why the agent should drop this session now, or "" to keep it.

    `reached`: whether the heartbeat just sent found the desktop's connection (None when the
    session gets no heartbeat: not greeted, or not paired). libzmq pings every connection on
    the front and closes one whose peer does not answer (ZMTP heartbeats, see `DesktopFront`);
    the peer's libzmq answers from its own I/O thread, so a desktop whose Python loop is busy
    still answers, while a vanished, frozen or cut-off machine does not. A silent desktop whose
    connection is alive is therefore busy, not gone: its jobs are kept, up to QUIET_LIMIT_S.
    """
    quiet = now - session.last_seen
    if quiet <= silence:
        return ""
    if reached is None:
        return f"silent for {quiet:.1f} s"
    if not reached:
        return f"silent for {quiet:.1f} s and disconnected"
    if quiet > QUIET_LIMIT_S:
        return f"silent for {quiet:.0f} s although still connected"
    return ""


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


class DesktopFront:
    """The desktops' socket: bind, read a message with its sender's session, answer it."""

    def __init__(
        self, context: zmq.asyncio.Context, max_message_bytes: int, heartbeat: float = 1.0
    ) -> None:
        self.max_message_bytes = max_message_bytes
        self.sessions: dict[bytes, DesktopSession] = {}
        self.sock = context.socket(zmq.ROUTER)
        configure_router(self.sock, max_message_bytes + CURVE_FRAME_OVERHEAD)
        # ZMTP heartbeats: libzmq pings each desktop every beat and closes a connection that
        # stays mute for MISSED_HEARTBEATS beats (see `why_gone`).
        beat_ms = max(1, round(heartbeat * 1000))
        self.sock.setsockopt(zmq.HEARTBEAT_IVL, beat_ms)
        self.sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, MISSED_HEARTBEATS * beat_ms)

    def bind(self, address: str, keypair: KeyPair) -> str:
        """Listen as a Curve server behind ZAP; returns the endpoint bound (zmq.ZMQError)."""
        self.sock.setsockopt(zmq.CURVE_SERVER, 1)
        self.sock.setsockopt(zmq.CURVE_SECRETKEY, keypair.secret)
        self.sock.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN.encode())
        self.sock.bind(address)
        return self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    def close(self) -> None:
        self.sock.close(linger=200)

    def send(self, rid: bytes, msg: Any, payload: list[Any] | None = None) -> bool:
        return send_now(self.sock, rid, msg, payload or [])

    def reaches(self, rid: bytes, msg: Any) -> bool:
        """Send `msg`; False only when libzmq has no connection to that desktop any more (a
        full queue still counts as reached: the desktop is connected, just not reading)."""
        return send_status(self.sock, rid, msg, []) != zmq.EHOSTUNREACH

    def read(
        self, frames: list[zmq.Frame], now: float, stats: AgentStats
    ) -> tuple[DesktopSession, Message, list[Any]] | None:
        """The sender's session (made or refreshed), the message and its payload frames.

        None when the message was dropped (no peer identity, undecodable) or refused (another
        protocol version: the desktop is told why).
        """
        rid = frames[0].bytes
        user_id = frames[-1].get("User-Id") if len(frames) > 1 else None
        peer = Peer.from_user_id(user_id if isinstance(user_id, str) else None)
        if peer is None or len(frames) < 2:
            stats.dropped += 1
            log.warning("dropped a message without a usable peer identity")
            return None
        if peer.status == PENDING and sum(len(f) for f in frames[1:]) > PENDING_MAX_BYTES:
            stats.dropped += 1
            log.warning("dropped an oversized message from pairing key %s", peer.key)
            return None
        try:
            msg, payload = decode(frames[1:], max_frame_bytes=self.max_message_bytes)
        except VersionMismatch as exc:
            stats.refused += 1
            log.warning("refused desktop %s: %s", peer.key, exc)
            self.send(rid, refusal_for(exc))
            return None
        except ProtocolError as exc:
            stats.dropped += 1
            log.warning("dropped a bad message from %s: %s", peer.key, exc)
            return None
        session = self.sessions.get(rid)
        if session is None or session.key != peer.key:
            session = self.sessions[rid] = DesktopSession(rid, peer.key)
        session.last_seen, session.quiet_told = now, False
        return session, msg, list(payload)

    def greeted(self) -> Iterator[DesktopSession]:
        """Sessions that said HELLO (they get READY updates and heartbeats)."""
        return (s for s in list(self.sessions.values()) if s.greeted)

    def still_there(self, queued: QueuedJob) -> bool:
        """The desktop that sent this job is still connected, with the same key."""
        session = self.sessions.get(queued.desktop)
        return session is not None and session.key == queued.key
