"""What agents send the scheduler: messages turned into `NodeEvents`, handshakes, heartbeats."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import zmq

from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.links import Peer
from lama_desktop.cluster.nodes import Nodes
from lama_desktop.cluster.state import WriteOutput

log = logging.getLogger(__name__)


class NodeTraffic:
    """Receives from every agent; implements `NodeEvents`, the stimuli of any node link."""

    def __init__(self, nodes: Nodes) -> None:
        self.nodes = nodes
        self.links = nodes.links
        self.peers = nodes.peers
        self.state = nodes.state
        self.executor = nodes.executor
        self.apply = nodes.executor.apply
        self.clock = nodes.clock

    # ----- NodeEvents: the stimuli any link reports -------------------------------------------

    def node_ready(self, node_id: str, msg: p.Ready) -> None:
        info = msg.info
        gpus = info.gpus
        device = gpus[0].name if gpus else f"CPU ({info.cpu_model}, {info.cores} cores)"
        if not gpus and not info.cores:  # not a machine we know (an HTTP endpoint): its words
            device = info.cpu_model
        device = info.pool or device  # a pooled node: "Ray: 4 actors on 2 nodes"
        self.apply(
            self.state.node_ready(
                node_id,
                self.clock(),
                slots=msg.slots,
                models=msg.models,
                device=device,
                has_gpu=bool(gpus),
                ram_total=info.ram_total,
                vram_total=max((g.vram_total for g in gpus), default=0),
            )
        )

    def job_result(self, node_id: str, msg: p.Result, payload: list[Any]) -> None:
        job_id, _lease = self.executor.parse_wire_id(msg.job)
        self.executor.pending_payload[job_id] = payload
        actions = self.state.job_result(node_id, job_id, msg.seconds, self.clock())
        if not any(isinstance(a, WriteOutput) for a in actions):
            self.executor.pending_payload.pop(job_id, None)
        self.apply(actions)

    def job_failed(self, node_id: str, msg: p.Failed) -> None:
        job_id, lease = self.executor.parse_wire_id(msg.job)
        self.apply(
            self.state.job_failed(
                node_id,
                job_id,
                msg.reason,
                self.clock(),
                crashed=msg.crashed,
                cancelled=msg.cancelled,
                missing_model=msg.missing_model,
                declined=msg.declined,
                permanent=msg.permanent,
                lease=lease,
            )
        )

    def node_down(self, node_id: str, reason: str) -> None:
        self.apply(self.state.node_down(node_id, reason, self.clock()))

    def node_seen(self, node_id: str) -> None:
        """The node answered (a link without heartbeats of its own, e.g. HTTP)."""
        self.state.node_seen(node_id, self.clock())

    # ----- the ZeroMQ agents ------------------------------------------------------------------

    async def receive(self) -> None:
        """Handle every message from every agent until cancelled."""
        while True:
            peer, frames = await self.links.receive()
            if peer is None:
                continue  # a node removed meanwhile
            try:
                self._on_message(peer, frames)
            except Exception:  # one bad message must never take the scheduler down
                log.exception("dropped a message that broke its handler")

    def _on_message(self, peer: Peer, frames: list[zmq.Frame]) -> None:
        node_id = peer.node_id
        try:
            msg, payload = p.decode(frames, max_frame_bytes=self.nodes.max_message_bytes)
        except p.VersionMismatch as exc:
            log.warning("node %s: %s", peer.name, exc)
            self.links.send(node_id, p.refusal_for(exc))
            self.apply(self.state.node_refused(node_id, str(exc), version=True))
            peer.refused = True
            return
        except p.ProtocolError as exc:
            log.warning("dropped a bad message from node %s: %s", peer.name, exc)
            return
        now = self.clock()
        self.state.node_seen(node_id, now, msg.metrics if isinstance(msg, p.Heartbeat) else None)
        if isinstance(msg, p.Ready):
            peer.name = peer.name or msg.node
            first = not peer.ready
            peer.ready, peer.refused = True, False
            if first:
                log.info("node %s ready: %d slot(s), models %s", peer.name, msg.slots, msg.models)
            self.node_ready(node_id, msg)
        elif isinstance(msg, p.Result):
            self.job_result(node_id, msg, payload)
        elif isinstance(msg, p.Failed):
            self.job_failed(node_id, msg)
        elif isinstance(msg, p.Refuse):
            self._on_refuse(peer, msg)
        elif isinstance(msg, p.Disconnect):
            peer.ready = False
            self.node_down(node_id, f"agent left: {msg.reason}")

    def _on_refuse(self, peer: Peer, msg: p.Refuse) -> None:
        log.warning("node %s refused us: %s", peer.name, msg.reason)
        peer.refused = True
        version = msg.v != p.PROTOCOL_VERSION or msg.peer_version != p.PROTOCOL_VERSION
        self.apply(self.state.node_refused(peer.node_id, msg.reason, version=version))

    async def watch_connections(self) -> None:
        """Socket monitor: a closed TCP connection or a refused handshake is known at once."""
        while True:
            peer, kind = await self.links.connection_event()
            if peer is None:
                continue
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                peer.connected = peer.handshaken = True
                self.nodes.hello(peer)
            elif kind == zmq.EVENT_DISCONNECTED:
                peer.connected = False
                if peer.ready:
                    self.node_down(peer.node_id, "connection lost")
            elif kind == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and peer.handshaken:
                # A node that shook hands before and now fails without detail is going away
                # (killed or restarting mid-handshake), not refusing us: it is offline.
                peer.connected = False
                if peer.ready:
                    self.node_down(peer.node_id, "connection lost")
            else:
                reason = (
                    "the agent refused this desktop's key: pair it first (lama-agent pair)"
                    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH
                    else "encrypted handshake failed: wrong server key, or not a lama-agent"
                )
                if not peer.refused:
                    peer.refused = True
                    self.apply(self.state.node_refused(peer.node_id, reason))

    async def beat(self) -> None:
        """Every heartbeat: HELLO to nodes not ready, HEARTBEAT to the others, then tick."""
        while True:
            await asyncio.sleep(self.nodes.heartbeat)
            for peer in list(self.peers.values()):
                if peer.ready:
                    self.links.send(peer.node_id, p.Heartbeat())
                elif not peer.connected:
                    continue  # HELLO goes out when the handshake succeeds; none piles up
                elif not peer.refused or peer.hellos % 30 == 0:
                    self.nodes.hello(peer)  # a refused node is asked again about every 30 s
                else:
                    peer.hellos += 1
            self.apply(self.state.tick(self.clock()))
