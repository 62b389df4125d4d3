"""Node lifecycle on the scheduler side: add, pair, remove, HELLO/READY/REFUSE, heartbeats.

Everything here is specific to ZeroMQ agents: the connection monitor, HELLO until READY,
PAIR with a one-time code. What a node answers is turned into `NodeEvents` stimuli (see
`node_link`), so a node behind another transport feeds the same state machine.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.executor import ActionExecutor
from lama_desktop.cluster.journal import StoredNode
from lama_desktop.cluster.journal_writer import JournalWriter
from lama_desktop.cluster.keys import PairingLink
from lama_desktop.cluster.links import NodeLinks, Peer, ZmqNodeLink
from lama_desktop.cluster.node_link import NodeLink
from lama_desktop.cluster.pairing_session import request_pairing
from lama_desktop.cluster.state import SchedulerState

log = logging.getLogger(__name__)

PAIR_TIMEOUT_S = 15.0


class Nodes:
    """The scheduler's agents: their connections, their greetings and what they report."""

    def __init__(
        self,
        *,
        links: NodeLinks,
        node_links: dict[str, NodeLink],
        state: SchedulerState,
        executor: ActionExecutor,
        writer: JournalWriter,
        db: ThreadPoolExecutor,
        clock: Callable[[], float],
        name: str,
        desktop_id: str,
        heartbeat: float,
        max_message_bytes: int,
    ) -> None:
        self.links = links
        self.peers = links.peers
        self.node_links = node_links
        self.state = state
        self.executor = executor
        self.apply = executor.apply
        self.writer = writer
        self.db = db
        self.clock = clock
        self.name = name
        self.desktop_id = desktop_id
        self.heartbeat = heartbeat
        self.max_message_bytes = max_message_bytes

    # ----- connections ------------------------------------------------------------------------

    def _connect(self, peer: Peer) -> None:
        self.links.connect(peer)
        self.node_links[peer.node_id] = ZmqNodeLink(self.links, peer.node_id)

    def _forget(self, node_id: str) -> None:
        link = self.node_links.pop(node_id, None)
        if link is not None:
            link.close()
        else:
            self.links.forget(node_id)

    async def add_node(
        self,
        address: str,
        server_key: str,
        name: str,
        local: bool = False,
        node_id: str | None = None,
    ) -> str:
        """Connect to an (already paired) agent; returns its node id. HELLO goes out at once."""
        existing = self.links.node_at(address)
        if existing is not None:
            return existing
        if node_id is None:
            local_free = local and "local" not in self.peers
            node_id = "local" if local_free else f"n-{secrets.token_hex(4)}"
        self._connect(Peer(node_id, address, server_key, name, local))
        self.apply(self.state.add_node(node_id, name, address, self.clock(), local=local))
        self.hello(self.peers[node_id])
        return node_id

    async def pair(self, link: PairingLink) -> str:
        """Pair with an agent from its link (one-time code), remember it; returns the node id.

        Raises PairingFailed with the reason (refused or expired code, no answer).
        """
        known = self.links.node_at(link.address)
        if known is not None and self.peers[known].ready:
            return known
        name = await request_pairing(
            self.links.context, link, desktop_key=self.links.keypair.public,
            desktop_name=self.name, timeout=PAIR_TIMEOUT_S,
        )  # fmt: skip
        if known is None:
            node_id = f"n-{secrets.token_hex(4)}"
            self._connect(Peer(node_id, link.address, link.server_key, name, False))
        else:
            # Refused before (revoked, say): a fresh handshake now that our key is authorised.
            node_id = known
            self.peers[node_id].refused = False
            self.links.reconnect(self.peers[node_id])
        peer = self.peers[node_id]
        peer.name = name
        journal = self.writer.journal
        if journal is not None:
            stored = StoredNode(node_id, name, link.address, link.server_key, True, time.time())
            await asyncio.get_running_loop().run_in_executor(self.db, journal.save_node, stored)
        self.apply(self.state.add_node(node_id, name, link.address, self.clock()))
        self.hello(peer)
        log.info("paired with agent %s at %s", name, link.address)
        return node_id

    def remove_node(self, node_id: str) -> None:
        """Disconnect a node and forget it (its jobs go back to the queue)."""
        # Forget the connection first: the NodeLost this produces must not reconnect it.
        self._forget(node_id)
        self.apply(self.state.remove_node(node_id, self.clock()))
        if self.writer.journal is not None:
            self.writer.submit(
                f"that node {node_id} was removed", self.writer.journal.remove_node, node_id
            )

    def set_node_enabled(self, node_id: str, enabled: bool) -> None:
        """A disabled node gets no new jobs; the running ones finish."""
        self.apply(self.state.set_node_enabled(node_id, enabled, self.clock()))
        if self.writer.journal is not None and self.writer.journal.has_node(node_id):
            # Only paired nodes have a row; this computer's own agent, say, has none.
            what = f"that node {node_id} was {'enabled' if enabled else 'disabled'}"
            self.writer.submit(what, self.writer.journal.set_node_enabled, node_id, enabled)

    def say_goodbye(self) -> None:
        """DISCONNECT to every ready node (the desktop is closing)."""
        for peer in self.peers.values():
            if peer.ready:
                self.links.send(peer.node_id, p.Disconnect(reason="desktop closing"))

    def hello(self, peer: Peer) -> None:
        peer.hellos += 1
        self.links.send(peer.node_id, p.Hello(desktop=self.desktop_id, name=self.name))
