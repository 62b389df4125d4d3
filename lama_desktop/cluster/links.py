"""The scheduler's ZeroMQ links: one ROUTER, a Curve-client connection to each agent, by node id."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from dataclasses import dataclass
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.keys import KeyPair
from lama_desktop.cluster.node_link import NodeLink

log = logging.getLogger(__name__)

# Known nodes only: a restarted agent is back within about 1 s of listening again; a longer
# backoff (libzmq doubles up to the max) left it unused for half a minute.
RECONNECT_MS, RECONNECT_MAX_MS = 250, 1000
_DONTWAIT = int(zmq.DONTWAIT)  # a plain int: IntFlag arithmetic per frame costs measurably
MONITORED = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
)


@dataclass
class Peer:
    """What the scheduler knows of one connection (the state machine owns scheduling)."""

    node_id: str
    address: str
    server_key: str
    name: str
    local: bool
    ready: bool = False
    refused: bool = False
    hellos: int = 0
    generation: int = 0  # a new number on every (re)connect, unique on this socket
    connected: bool = False  # the Curve handshake of the current connection succeeded
    handshaken: bool = False  # some handshake with this key has succeeded since we started

    @property
    def rid(self) -> bytes:
        """The routing id of the current connection to this node."""
        return f"{self.node_id}.{self.generation}".encode()


class NodeLinks:
    """Connections to agents over one ROUTER: connect, send, receive, watch the handshakes."""

    def __init__(self, keypair: KeyPair, desktop_id: str, max_message_bytes: int) -> None:
        self.keypair = keypair
        self.desktop_id = desktop_id
        self.max_message_bytes = max_message_bytes
        self.peers: dict[str, Peer] = {}
        self._by_address: dict[str, str] = {}
        self._by_rid: dict[bytes, str] = {}  # every routing id a node had -> node id
        self._connects = itertools.count(1)

    def open(self) -> None:
        """Create the socket (needs the running loop's thread)."""
        self.context = zmq.asyncio.Context()
        sock = self.context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.ROUTING_ID, self.desktop_id.encode())
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        sock.setsockopt(zmq.SNDTIMEO, 0)
        sock.setsockopt(zmq.SNDHWM, 10_000)
        sock.setsockopt(zmq.RCVHWM, 10_000)
        sock.setsockopt(zmq.LINGER, 200)
        sock.setsockopt(zmq.HANDSHAKE_IVL, 5000)
        sock.setsockopt(zmq.RECONNECT_IVL, RECONNECT_MS)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, RECONNECT_MAX_MS)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keypair.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.keypair.secret)
        self.sock = sock
        self.monitor = sock.get_monitor_socket(MONITORED)

    def close(self) -> None:
        self.sock.disable_monitor()
        self.monitor.close(linger=0)
        self.sock.close(linger=200)
        self.context.term()

    def connect(self, peer: Peer) -> None:
        """Connect to the peer's agent with its server key; sends may start at once."""
        key = peer.server_key.encode() if isinstance(peer.server_key, str) else peer.server_key
        self.sock.setsockopt(zmq.CURVE_SERVERKEY, key)
        # Each connection gets a routing id never used on this socket before: libzmq aborts
        # (router.cpp `!has_out_pipe (routing_id)`) on a CONNECT_ROUTING_ID still held by a
        # pipe being torn down, even one of an earlier Peer object for the same node (removed
        # and added again, or re-created after pairing). Old answers stay attributable.
        peer.generation = next(self._connects)
        peer.connected = False
        self.sock.setsockopt(zmq.CONNECT_ROUTING_ID, peer.rid)
        self.sock.connect(peer.address)
        self.peers[peer.node_id] = peer
        self._by_address[peer.address] = peer.node_id
        self._by_rid[peer.rid] = peer.node_id

    def reconnect(self, peer: Peer) -> None:
        """A fresh pipe: messages still queued for the old connection are dropped with it."""
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disconnect(peer.address)
        self.connect(peer)

    def forget(self, node_id: str) -> None:
        """Disconnect and forget the node."""
        peer = self.peers.pop(node_id, None)
        if peer is None:
            return
        self._by_address.pop(peer.address, None)
        with contextlib.suppress(zmq.ZMQError):
            self.sock.disconnect(peer.address)

    def node_at(self, address: str) -> str | None:
        """The node id connected to this address, if any."""
        return self._by_address.get(address)

    def send(self, node_id: str, msg: Any, *payload: Any) -> bool:
        """Send without ever blocking; False when the node is unknown, unreachable or full."""
        peer = self.peers.get(node_id)
        if peer is None:
            return False
        frames = [peer.rid, *p.encode(msg, *payload)]
        # DONTWAIT + ROUTER_MANDATORY: a full or unknown peer fails at once (EAGAIN,
        # EHOSTUNREACH). The returned future is already done.
        sent = self.sock.send_multipart(frames, flags=_DONTWAIT, copy=False)
        exc = sent.exception() if isinstance(sent, asyncio.Future) else None
        if exc is not None:
            log.debug("cannot send %s to %s: %s", type(msg).__name__, node_id, exc)
            return False
        return True

    async def receive(self) -> tuple[Peer | None, list[zmq.Frame]]:
        """The next message and the node it came from (None: not a node we know)."""
        frames = await self.sock.recv_multipart(copy=False)
        node_id = self._by_rid.get(frames[0].bytes, "")
        return self.peers.get(node_id), frames[1:]

    async def connection_event(self) -> tuple[Peer | None, int]:
        """The next handshake or disconnect event, and the node whose connection it was."""
        event = parse_monitor_message(await self.monitor.recv_multipart())
        endpoint = event["endpoint"]
        address = endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)
        return self.peers.get(self._by_address.get(address, "")), int(event["event"])


class ZmqNodeLink(NodeLink):
    """One agent's `NodeLink`: its connection on the shared ROUTER of `NodeLinks`."""

    def __init__(self, links: NodeLinks, node_id: str) -> None:
        self.links = links
        self.node_id = node_id

    @property
    def name(self) -> str:
        peer = self.links.peers.get(self.node_id)
        return peer.name if peer is not None else self.node_id

    def send_job(self, msg: p.Job, *payload: Any) -> bool:
        return self.links.send(self.node_id, msg, *payload)

    def cancel(self, wire_job: str) -> bool:
        return self.links.send(self.node_id, p.Cancel(job=wire_job))

    def reset(self) -> None:
        peer = self.links.peers.get(self.node_id)
        if peer is not None:
            peer.ready = False
            # A fresh pipe: jobs still queued for the lost node are dropped with the old
            # one, never delivered late after they went to another node.
            self.links.reconnect(peer)

    def close(self) -> None:
        self.links.forget(self.node_id)
