"""Zeroconf announce and browse, confined to the loopback interface (never the real network)."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from lama_desktop.cluster.discovery import Announcer, browse

pytestmark = pytest.mark.integration


def test_an_announced_agent_is_found_on_loopback() -> None:
    """Both ends bind to 127.0.0.1 only: the multicast query and answer stay on this host."""
    key = zmq.curve_keypair()[0].decode()

    async def scenario() -> list:
        announcer = Announcer("loop agent", 45123, key, interfaces=["127.0.0.1"])
        await announcer.start()
        try:
            return await asyncio.to_thread(browse, 1.0, ["127.0.0.1"])
        finally:
            await announcer.stop()

    found = asyncio.run(scenario())
    mine = [a for a in found if a.server_key == key]
    assert len(mine) == 1
    assert (mine[0].name, mine[0].host, mine[0].port) == ("loop agent", "127.0.0.1", 45123)
