"""The agent's ROUTER sockets: shared options and a send that never blocks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

import zmq
import zmq.asyncio

from lama_desktop.cluster.protocol import encode

log = logging.getLogger(__name__)


def configure_router(sock: zmq.Socket, max_message_bytes: int) -> None:
    """Options of both agent ROUTERs (desktops in front, workers behind)."""
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    # A peer reconnecting with its routing id takes it over at once (a desktop's new pipe
    # may arrive before its old one is closed); Curve + ZAP still vouch for every message.
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    sock.setsockopt(zmq.LINGER, 500)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    sock.setsockopt(zmq.SNDTIMEO, 0)
    sock.setsockopt(zmq.HANDSHAKE_IVL, 5000)


def send_now(sock: zmq.asyncio.Socket, rid: bytes, msg: Any, payload: list[Any]) -> bool:
    """Send to `rid` without waiting; False when the peer is gone or full."""
    return send_status(sock, rid, msg, payload) == 0


def send_status(sock: zmq.asyncio.Socket, rid: bytes, msg: Any, payload: list[Any]) -> int:
    """Send to `rid` without waiting: 0 when sent, else the errno. With ROUTER_MANDATORY,
    EHOSTUNREACH means libzmq holds no connection to that peer any more; EAGAIN, that its
    queue is full (the peer is connected but not reading)."""
    # DONTWAIT: a stalled or vanished peer must never block the agent; the future is done.
    frames = [rid, *encode(msg, *payload)]
    future = cast(asyncio.Future[Any], sock.send_multipart(frames, flags=zmq.DONTWAIT, copy=False))
    exc = future.exception()
    if exc is None:
        return 0
    log.debug("could not send %s to %r: %s", type(msg).__name__, rid, exc)
    errno = exc.errno if isinstance(exc, zmq.ZMQError) else None
    return errno or -1


async def serve_router(
    sock: zmq.asyncio.Socket, handle: Callable[[list[zmq.Frame]], None], what: str
) -> None:
    """Hand every message on `sock` to `handle` until cancelled; one that breaks it is logged."""
    while True:
        frames = await sock.recv_multipart(copy=False)
        try:
            handle(frames)
        except Exception:  # one bad message must never stop the loop
            log.exception("dropped a %s message that broke its handler", what)
