"""ZAP for agents: paired desktops get in; unknown keys only for pairing while a code is live."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import zmq
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

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
