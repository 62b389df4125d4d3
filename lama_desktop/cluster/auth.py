"""Who may talk to an agent: ZAP (paired keys; unknown keys only while a pairing code is live)
and a log of connections that fail the Curve handshake before ZAP sees them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from lama_desktop.cluster.keys import AuthorizedKeys, PairingCodes

log = logging.getLogger(__name__)

ZAP_DOMAIN = "lama-agent"
PAIRED = "paired"
PENDING = "pending"


@dataclass(frozen=True)
class Peer:
    """Who sent a message, from the User-Id the ZAP handler gave its connection."""

    status: str  # PAIRED or PENDING
    key: str  # the peer's z85 Curve public key

    @classmethod
    def from_user_id(cls, user_id: str | None) -> Peer | None:
        """Parse "paired:<key>" / "pending:<key>"; None for anything else."""
        status, _, key = (user_id or "").partition(":")
        return cls(status, key) if status in (PAIRED, PENDING) and key else None


class AgentAuthenticator(AsyncioAuthenticator):
    """Decides, per Curve handshake, whether a desktop may talk to this agent.

    - a key in authorized_keys (or preauthorised, e.g. the embedding desktop) -> "paired:<key>";
    - an unknown key while at least one pairing code is live -> "pending:<key>": the agent then
      accepts only HELLO and PAIR from it, so a stranger gains nothing but the chance to present
      a code, over a channel already encrypted to the agent's server key;
    - anything else is refused at the handshake and logged with the peer's address.
    Both files are re-read when they change, so no restart is needed after pair/revoke.
    """

    def __init__(
        self,
        context: zmq.Context,
        keys: AuthorizedKeys,
        codes: PairingCodes,
        preauthorized: Iterable[bytes | str] = (),
    ) -> None:
        super().__init__(context, log=log)
        self.keys = keys
        self.codes = codes
        self.preauthorized = {k.decode() if isinstance(k, bytes) else k for k in preauthorized}
        self.refused = 0  # handshakes refused so far (tests and logs read it)

    async def aclose(self) -> None:
        """Stop answering ZAP requests, leaving no watcher on a closed socket.

        pyzmq's stop() cancels its polling task and closes the ZAP socket at once; the task
        takes the socket's descriptor off the event loop only when it next runs, so Qt's loop
        polls a closed descriptor meanwhile ("QSocketNotifier: Invalid socket" at quit).
        Finishing the task first keeps the order right.
        """
        task = getattr(self, "_AsyncioAuthenticator__task", None)  # pyzmq keeps it private
        if isinstance(task, asyncio.Future) and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.stop()

    def decide(self, key: str) -> str | None:
        """The User-Id for a client key, or None to refuse it."""
        if key in self.preauthorized or self.keys.contains(key):
            return f"{PAIRED}:{key}"
        if self.codes.live():
            return f"{PENDING}:{key}"
        return None

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        """Answer one ZAP request (RFC 27): version, id, domain, address, identity, mechanism."""
        if len(msg) < 6:
            log.warning("dropping a malformed ZAP request (%d frames)", len(msg))
            if len(msg) >= 2:
                self._send_zap_reply(msg[1], b"400", b"Malformed request")
            return
        version, request_id, _domain, raw_address, _identity, mechanism = msg[:6]
        address = raw_address.decode("utf-8", "replace")
        if version != b"1.0":
            self._send_zap_reply(request_id, b"400", b"Invalid version")
            return
        if mechanism != b"CURVE" or len(msg) != 7:
            self.refused += 1
            log.warning("refused a %s connection from %s: Curve only", mechanism.decode(), address)
            self._send_zap_reply(request_id, b"400", b"CURVE only")
            return
        key = z85.encode(msg[6]).decode("ascii")
        user_id = self.decide(key)
        if user_id is None:
            self.refused += 1
            log.warning("refused unknown key %s from %s (no pairing code is live)", key, address)
            self._send_zap_reply(request_id, b"400", b"Unknown key")
            return
        log.info("accepted %s from %s", user_id, address)
        self._send_zap_reply(request_id, b"200", b"OK", user_id)


_PROTOCOL_ERRORS = {
    getattr(zmq, name): name.removeprefix("PROTOCOL_ERROR_").lower().replace("_", " ")
    for name in dir(zmq)
    if name.startswith("PROTOCOL_ERROR_")
}
_WATCHED = (
    zmq.EVENT_ACCEPTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


def _peer_address(fd: int) -> str | None:
    """The remote address of a just-accepted connection, if it is still open."""
    try:
        with socket.socket(fileno=os.dup(fd)) as peer:
            host, port = peer.getpeername()[:2]
    except (OSError, ValueError):
        return None
    return f"{host}:{port}"


class HandshakeLog:
    """Logs connections that fail the Curve handshake (plaintext clients, wrong server key).

    ZAP refusals are logged by AgentAuthenticator, which knows the key; these never reach
    ZAP. libzmq reports the failure and the disconnect separately, so the failure reason is
    kept until the next disconnect, whose file descriptor gives the address.
    """

    def __init__(self, sock: zmq.asyncio.Socket) -> None:
        self.sock = sock
        self.monitor = cast(zmq.asyncio.Socket, sock.get_monitor_socket(_WATCHED))
        self.failed = 0  # handshakes that failed
        self.disconnects = 0  # connections closed, for whatever reason (MAXMSGSIZE included)
        self._peers: dict[int, str | None] = {}
        self._reasons: deque[str] = deque(maxlen=64)

    async def run(self) -> None:
        """Read monitor events until cancelled."""
        while True:
            frames = await self.monitor.recv_multipart()
            event = parse_monitor_message(frames)
            self.handle(int(event["event"]), int(event["value"]))

    def handle(self, event: int, value: int) -> None:
        """Account for one monitor event (value: a file descriptor or an error code)."""
        if event == zmq.EVENT_ACCEPTED:
            self._peers[value] = _peer_address(value)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
            self.failed += 1
            reason = _PROTOCOL_ERRORS.get(value, f"protocol error {value}")
            if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
                reason += " (a plaintext client on the Curve port?)"
            self._reasons.append(f"Curve handshake failed: {reason}")
        elif event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            self.failed += 1
            self._reasons.append(f"Curve handshake failed ({os.strerror(value)})")
        elif event == zmq.EVENT_DISCONNECTED:
            self.disconnects += 1
            address = self._peers.pop(value, None) or "an unknown address"
            if self._reasons:
                log.warning("refused a connection from %s: %s", address, self._reasons.popleft())
            else:
                log.debug("connection from %s closed", address)

    def close(self) -> None:
        """Stop monitoring."""
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disable_monitor()
        self.monitor.close(linger=0)
