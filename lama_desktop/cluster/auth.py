"""Who may talk to an agent: ZAP (paired keys; unknown keys only while a pairing code is live)
and a log of connections that fail the Curve handshake before ZAP sees them."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85
from zmq.utils.monitor import parse_monitor_message

from lama_desktop.cluster.keys import AuthorizedKeys, PairingCodes, pairing_keypair

log = logging.getLogger(__name__)

ZAP_DOMAIN = "lama-agent"
PAIRED = "paired"
PENDING = "pending"
# Unknown keys one address may try while pairing codes are live (each a guess at a code) before
# it is refused outright until the codes change: at most this many guesses per code per peer.
GUESSES_PER_ADDRESS = 10
REFUSAL_LOG_S = 60.0  # refusals from one address are logged once, then summed this often


class RefusalLog:
    """Logs the first refusal from an address at once, then one line with a count per period."""

    def __init__(self, period: float = REFUSAL_LOG_S, clock: Callable[[], float] = time.monotonic):
        self.period = period
        self.clock = clock
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def refused(self, address: str, reason: str) -> None:
        now = self.clock()
        last = self._last.get(address)
        if last is not None and now - last < self.period:
            self._held[address] = self._held.get(address, 0) + 1
            return
        held = self._held.pop(address, 0)
        more = (
            f" (and {held} more refused in the last {now - last:.0f} s)"
            if held and last is not None
            else ""
        )
        log.warning("refused %s: %s%s", address, reason, more)
        self._last[address] = now
        if len(self._last) > 4096:  # a scan from many addresses must not grow this for ever
            self._last.clear()
            self._held.clear()


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
    - the pairing key of a live code (`keys.pairing_keypair`: only a holder of the code can
      complete a handshake with it) -> "pending:<key>": the agent then accepts only a small PAIR
      from it, which names the desktop's own key to authorise;
    - anything else is refused at the handshake, so a stranger never gets to send a message.
      While codes are live, each unknown key is a guess at a code: an address that tries
      GUESSES_PER_ADDRESS of them is refused outright until the live codes change.
    Both files are re-read when they change, so no restart is needed after pair/revoke.
    """

    def __init__(
        self,
        context: zmq.Context,
        keys: AuthorizedKeys,
        codes: PairingCodes,
        preauthorized: Iterable[bytes | str] = (),
        *,
        server_key: bytes | str,
    ) -> None:
        super().__init__(context, log=log)
        self.keys = keys
        self.codes = codes
        self.preauthorized = {k.decode() if isinstance(k, bytes) else k for k in preauthorized}
        self.server_key = server_key
        self.refused = 0  # handshakes refused so far (tests and logs read it)
        self.refusals = RefusalLog()
        self._codes: tuple[str, ...] = ()
        self._pairing_keys: dict[str, str] = {}  # pairing public key -> its code
        self._guesses: dict[str, set[str]] = {}  # address -> unknown keys tried

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

    def pairing_keys(self) -> dict[str, str]:
        """The pairing key of every live code, with its code; guesses reset when codes change."""
        codes = tuple(self.codes.live())
        if codes != self._codes:
            self._codes = codes
            self._pairing_keys = {
                pairing_keypair(code, self.server_key).public.decode(): code for code in codes
            }
            self._guesses.clear()
        return self._pairing_keys

    def banned(self, address: str) -> bool:
        """This address has used up its guesses at the live codes."""
        return len(self._guesses.get(address, ())) >= GUESSES_PER_ADDRESS

    def decide(self, key: str, address: str = "") -> str | None:
        """The User-Id for a client key, or None to refuse it."""
        if key in self.preauthorized or self.keys.contains(key):
            return f"{PAIRED}:{key}"
        pairing = self.pairing_keys()
        if not pairing or self.banned(address):
            return None
        if key in pairing:
            return f"{PENDING}:{key}"
        # A distinct unknown key is a guess; the same one again (a revoked desktop retrying)
        # is not, so it cannot lock its own machine out of pairing again.
        guesses = self._guesses.setdefault(address, set())
        if len(self._guesses) > 4096 and not guesses:
            self._guesses.clear()  # bounded: a scan from many addresses cannot grow it
        guesses.add(key)
        if self.banned(address):
            log.warning(
                "%s tried %d unknown keys while a pairing code is live: refused until the codes "
                "change", address, GUESSES_PER_ADDRESS,
            )  # fmt: skip
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
            self.refusals.refused(address, f"a {mechanism.decode()} connection (Curve only)")
            self._send_zap_reply(request_id, b"400", b"CURVE only")
            return
        key = z85.encode(msg[6]).decode("ascii")
        user_id = self.decide(key, address)
        if user_id is None:
            self.refused += 1
            self.refusals.refused(address, f"unknown key {key}")
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
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)
_HANDSHAKE_ENDED = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED,
    zmq.EVENT_HANDSHAKE_FAILED_AUTH,
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
)
# Connections still in their Curve handshake at once; more are cut as they arrive. Each may
# make libzmq hold one frame of up to MAXMSGSIZE (protocol.FRAME_BYTES) before ZAP decides.
MAX_HANDSHAKING = 16
HANDSHAKE_S = 5.0  # the agent's HANDSHAKE_IVL: libzmq ends a longer handshake itself


def _cut(fd: int) -> bool:
    """Shut down a connection libzmq accepted (it then closes it as if the peer had)."""
    try:
        with socket.socket(fileno=os.dup(fd)) as peer:
            peer.shutdown(socket.SHUT_RDWR)
    except (OSError, ValueError):
        return False  # gone already, or not a POSIX descriptor (Windows): HANDSHAKE_IVL ends it
    return True


def _peer_address(fd: int) -> str | None:
    """The remote address of a just-accepted connection, if it is still open."""
    try:
        with socket.socket(fileno=os.dup(fd)) as peer:
            host, port = peer.getpeername()[:2]
    except (OSError, ValueError):
        return None
    return f"{host}:{port}"


class HandshakeLog:
    """Logs connections that fail the Curve handshake, and caps those still shaking hands.

    ZAP refusals are logged by AgentAuthenticator, which knows the key; plaintext clients and
    wrong server keys never reach ZAP. libzmq reports the failure and the disconnect
    separately, so the failure reason is kept until the next disconnect, whose file
    descriptor gives the address.

    At most MAX_HANDSHAKING connections may be unauthenticated at once: a new one beyond that
    is shut down as it is accepted, so strangers cannot make the agent hold more than that many
    frames. libzmq 4.3's handshake events carry no descriptor, so each ended handshake retires
    the oldest one counted, and any older than HANDSHAKE_S (libzmq has ended it) is dropped.
    """

    def __init__(self, sock: zmq.asyncio.Socket) -> None:
        self.sock = sock
        self.monitor = cast(zmq.asyncio.Socket, sock.get_monitor_socket(_WATCHED))
        self.failed = 0  # handshakes that failed
        self.disconnects = 0  # connections closed, for whatever reason (MAXMSGSIZE included)
        self.cut = 0  # connections shut down because too many were shaking hands
        self._peers: dict[int, str | None] = {}
        self._reasons: deque[str] = deque(maxlen=64)
        self._handshaking: dict[int, float] = {}  # descriptor -> accepted at (monotonic)
        self._cut_unreported = 0  # cut connections whose handshake failure is still to come
        self._cuts = RefusalLog()

    async def run(self) -> None:
        """Read monitor events until cancelled."""
        while True:
            frames = await self.monitor.recv_multipart()
            event = parse_monitor_message(frames)
            self.handle(int(event["event"]), int(event["value"]))

    def handle(self, event: int, value: int) -> None:
        """Account for one monitor event (value: a file descriptor or an error code)."""
        if event in _HANDSHAKE_ENDED:
            if self._cut_unreported:
                self._cut_unreported -= 1  # the failure of a connection we cut ourselves
            elif self._handshaking:
                del self._handshaking[next(iter(self._handshaking))]
        if event == zmq.EVENT_ACCEPTED:
            self._peers[value] = _peer_address(value)
            self._count_handshake(value)
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
            self._handshaking.pop(value, None)
            address = self._peers.pop(value, None) or "an unknown address"
            if self._reasons:
                log.warning("refused a connection from %s: %s", address, self._reasons.popleft())
            else:
                log.debug("connection from %s closed", address)

    def _count_handshake(self, fd: int) -> None:
        now = time.monotonic()
        for old, since in list(self._handshaking.items()):
            if now - since <= HANDSHAKE_S:
                break  # oldest first: the rest are younger
            del self._handshaking[old]
        if len(self._handshaking) < MAX_HANDSHAKING:
            self._handshaking[fd] = now
        elif _cut(fd):
            self.cut += 1
            self._cut_unreported += 1
            address = self._peers.get(fd) or "an unknown address"
            self._cuts.refused(address, f"{MAX_HANDSHAKING} connections are still shaking hands")

    def close(self) -> None:
        """Stop monitoring."""
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disable_monitor()
        self.monitor.close(linger=0)
