"""The desktop's side of pairing: one short connection made with the code's pairing key.

The agent lets an unknown key in only when it is the pairing key of a live code
(`keys.pairing_keypair`), so the desktop proves it holds the code with the Curve handshake
itself, then names its own key in PAIR. The session has its own socket, closed at the end:
the desktop's long-lived connection to the agent only ever uses the desktop's own key.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import cast

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.keys import PairingLink, pairing_keypair


class PairingFailed(Exception):
    """The agent refused the pairing (wrong, expired or used code) or did not answer."""


_REFUSED_EVENTS = zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
_ANSWER_BYTES = 64 * 1024  # PAIRED or REFUSE; nothing larger is read from the agent here


async def request_pairing(
    context: zmq.asyncio.Context,
    link: PairingLink,
    *,
    desktop_key: bytes,
    desktop_name: str,
    timeout: float,
) -> str:
    """Pair this desktop's key with the agent behind `link`; the agent's name on success.

    Raises PairingFailed with a sentence for the user: refused code, wrong key, no answer.
    """
    pairing = pairing_keypair(link.code, link.server_key)
    sock = cast(zmq.asyncio.Socket, context.socket(zmq.DEALER))
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, _ANSWER_BYTES)
    sock.setsockopt(zmq.CURVE_SERVERKEY, link.server_key.encode("ascii"))
    sock.setsockopt(zmq.CURVE_PUBLICKEY, pairing.public)
    sock.setsockopt(zmq.CURVE_SECRETKEY, pairing.secret)
    monitor = cast(zmq.asyncio.Socket, sock.get_monitor_socket(_REFUSED_EVENTS))
    try:
        sock.connect(link.address)
        msg = p.Pair(code=link.code, desktop_name=desktop_name, desktop_key=desktop_key.decode())
        await sock.send_multipart(p.encode(msg))
        answer = asyncio.ensure_future(sock.recv_multipart())
        refused = asyncio.ensure_future(monitor.recv_multipart())
        done, _ = await asyncio.wait(
            {answer, refused}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        for future in (answer, refused):
            if future not in done:
                future.cancel()
        if answer in done:
            return _read_answer(answer.result())
        if refused in done:
            event = parse_monitor_message(refused.result())
            if int(event["event"]) == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                raise PairingFailed(
                    "the agent refused the link: its code was already used or has expired; "
                    "get a fresh one with `lama-agent pair` on that machine"
                )
            raise PairingFailed(
                "encrypted handshake failed: wrong key in the link, or not a lama-agent"
            )
        raise PairingFailed(f"no answer from the agent at {link.address} within {timeout:.0f} s")
    finally:
        with contextlib.suppress(zmq.ZMQError):
            sock.disable_monitor()
        monitor.close(linger=0)
        sock.close(linger=0)


def _read_answer(frames: list[bytes]) -> str:
    try:
        msg, _ = p.decode(frames)
    except p.ProtocolError as exc:
        raise PairingFailed(f"the agent answered something unreadable: {exc}") from None
    if isinstance(msg, p.Paired):
        return msg.node
    if isinstance(msg, p.Refuse):
        raise PairingFailed(f"the agent refused pairing: {msg.reason}")
    raise PairingFailed(f"the agent answered {type(msg).__name__} instead of PAIRED")
