"""The agent's side of pairing: authorised keys, one-time codes, ZAP and PAIR answers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import zmq.asyncio

from lama_desktop.cluster.auth import AgentAuthenticator
from lama_desktop.cluster.discovery import advertised_host
from lama_desktop.cluster.keys import (
    AuthorizedKeys,
    PairingCodes,
    PairingLink,
    is_z85_key,
    pairing_keypair,
)
from lama_desktop.cluster.protocol import Pair, Paired, Refuse

log = logging.getLogger(__name__)

_REFUSED = "pairing code is wrong, expired or already used; get a new link"


class AgentPairing:
    """Which desktop keys this agent serves, and how a new one earns its place with a code."""

    def __init__(self, data_dir: Path, preauthorized: Iterable[bytes | str] = ()) -> None:
        self.keys = AuthorizedKeys(data_dir / "authorized_keys")
        self.codes = PairingCodes(data_dir / "pairing-codes")
        self.preauthorized = {k.decode() if isinstance(k, bytes) else k for k in preauthorized}
        self.paired = 0  # desktops paired since start

    def start_zap(self, context: zmq.asyncio.Context, server_key: bytes) -> AgentAuthenticator:
        """The ZAP handler that lets paired keys (and a live code's pairing key) in."""
        auth = AgentAuthenticator(
            context, self.keys, self.codes, self.preauthorized, server_key=server_key
        )
        auth.start()
        return auth

    def is_paired(self, key: str) -> bool:
        return key in self.preauthorized or self.keys.contains(key)

    def answer(self, key: str, msg: Pair, node: str, server_key: bytes) -> Paired | Refuse:
        """PAIRED for a key already paired, or for the pairing key of the code it presents.

        ZAP let a pending key in only because it is the pairing key of a live code; the code
        in PAIR must be that code, and is used up here, authorising the desktop's own key.
        """
        if self.is_paired(key):
            return Paired(node=node)
        if pairing_keypair(msg.code, server_key).public.decode() != key:
            log.warning("refused pairing from %s: the code does not match its key", key)
            return Refuse(reason=_REFUSED)
        if not is_z85_key(msg.desktop_key) or msg.desktop_key == key:
            return Refuse(reason="PAIR must name the desktop's own Curve public key")
        if not self.codes.consume(msg.code):
            log.warning("refused pairing from %s: expired or used code", key)
            return Refuse(reason=_REFUSED)
        self.keys.add(msg.desktop_key, msg.desktop_name)
        self.paired += 1
        log.info("paired desktop %s (%s)", msg.desktop_name, msg.desktop_key)
        return Paired(node=node)

    def link(self, endpoint: str, public_key: str, code: str | None = None) -> PairingLink:
        """A link a desktop can pair with; issues a fresh one-time code unless given one."""
        host = advertised_host(endpoint.split("//", 1)[1].rsplit(":", 1)[0].strip("[]"))
        port = int(endpoint.rsplit(":", 1)[1])
        return PairingLink(host, port, public_key, code or self.codes.issue())
