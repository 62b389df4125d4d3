"""Attaching an IOPaint-compatible HTTP endpoint to a scheduler, and remembering it."""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any
from urllib.parse import urlsplit

from lama_desktop.cluster.http_address import HttpNodeSpec
from lama_desktop.cluster.http_node import HttpNodeLink
from lama_desktop.cluster.journal import StoredNode


async def add_http_node(
    scheduler: Any, address: str, token: str = "", name: str = "", node_id: str | None = None
) -> str:
    """Attach the endpoint at `address` (see HttpNodeSpec); returns its node id.

    A new endpoint (no `node_id`) is saved in the journal like a paired agent, its token as
    the key, so it comes back after a restart. The same endpoint twice is one node.
    """
    spec = HttpNodeSpec.parse(address)
    token = token or spec.token
    for link in scheduler.node_links.values():
        if isinstance(link, HttpNodeLink) and link.url == spec.url:
            return str(link.node_id)
    fresh = node_id is None
    node_id = node_id or f"h-{secrets.token_hex(4)}"
    name = name or urlsplit(spec.url).netloc
    link = HttpNodeLink(
        node_id,
        spec.url,
        name,
        scheduler.node_events,
        token=token,
        heartbeat=scheduler.heartbeat,
        concurrency=spec.slots,
        request_timeout=scheduler.state.job_timeout,
    )
    scheduler.node_links[node_id] = link
    scheduler.executor.apply(
        scheduler.state.add_node(node_id, name, spec.address, scheduler.clock())
    )
    link.start()
    journal = scheduler.journal
    if fresh and journal is not None:
        stored = StoredNode(node_id, name, spec.address, token, True, time.time())
        await asyncio.get_running_loop().run_in_executor(
            scheduler.nodes.db, journal.save_node, stored
        )
    return node_id
