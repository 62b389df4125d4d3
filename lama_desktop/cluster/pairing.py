"""The agent's side of pairing: authorised keys, one-time codes, ZAP and PAIR answers."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import zmq.asyncio

from lama_desktop.cluster.auth import AgentAuthenticator
from lama_desktop.cluster.discovery import advertised_host
from lama_desktop.cluster.keys import AuthorizedKeys, PairingCodes, PairingLink
from lama_desktop.cluster.protocol import Pair, Paired, Refuse

log = logging.getLogger(__name__)

MAX_WRONG_CODES = 10  # wrong pairing codes before every live code is withdrawn


class AgentPairing:
    """Which desktop keys this agent serves, and how a new one earns its place with a code."""

    def __init__(self, data_dir: Path, preauthorized: Iterable[bytes | str] = ()) -> None:
        self.keys = AuthorizedKeys(data_dir / "authorized_keys")
        self.codes = PairingCodes(data_dir / "pairing-codes")
        self.preauthorized = {k.decode() if isinstance(k, bytes) else k for k in preauthorized}
        self.paired = 0  # desktops paired since start
        self._wrong_codes = 0

    def start_zap(self, context: zmq.asyncio.Context) -> AgentAuthenticator:
        """The ZAP handler that lets paired keys (and pending ones, to present a code) in."""
        auth = AgentAuthenticator(context, self.keys, self.codes, self.preauthorized)
        auth.start()
        return auth

    def is_paired(self, key: str) -> bool:
        return key in self.preauthorized or self.keys.contains(key)

    def answer(self, key: str, msg: Pair, node: str) -> Paired | Refuse:
        """PAIRED for a right code (or a key already paired), REFUSE otherwise."""
        if self.is_paired(key):
            return Paired(node=node)
        if not self.codes.consume(msg.code):
            self._wrong_codes += 1
            log.warning("refused pairing from %s: wrong, expired or used code", key)
            if self._wrong_codes >= MAX_WRONG_CODES:
                # Someone is guessing: withdraw every live code, so the door closes at once.
                for code in self.codes.live():
                    self.codes.consume(code)
                self._wrong_codes = 0
                log.warning("%d wrong pairing codes: all codes withdrawn", MAX_WRONG_CODES)
            return Refuse(reason="pairing code is wrong, expired or already used; get a new link")
        self._wrong_codes = 0
        self.keys.add(key, msg.desktop_name)
        self.paired += 1
        log.info("paired desktop %s (%s)", msg.desktop_name, key)
        return Paired(node=node)

    def link(self, endpoint: str, public_key: str, code: str | None = None) -> PairingLink:
        """A link a desktop can pair with; issues a fresh one-time code unless given one."""
        host = advertised_host(endpoint.split("//", 1)[1].rsplit(":", 1)[0].strip("[]"))
        port = int(endpoint.rsplit(":", 1)[1])
        return PairingLink(host, port, public_key, code or self.codes.issue())
