"""The app's local agent on its own thread and loop: serves, resizes, stops cleanly."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lama_desktop.cluster.agent import Agent
from lama_desktop.cluster.agent_thread import AgentThread
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from tests.integration.cluster_support import wait_for

pytestmark = pytest.mark.integration

SETTINGS = JobSettings(model="opencv-telea", hd=HDConfig(strategy=HDStrategy.ORIGINAL))


def test_the_local_agent_runs_on_its_own_thread_and_stops_with_its_workers(
    tmp_path: Path,
) -> None:
    keypair = load_or_create_keypair(tmp_path / "desktop.key")
    rgb = np.random.default_rng(2).integers(0, 255, (32, 40, 3), dtype=np.uint8)
    mask = np.zeros((32, 40), np.uint8)
    mask[8:20, 10:25] = 255

    async def body() -> None:
        agent = Agent("tcp://127.0.0.1:0", data_dir=tmp_path / "agent", workers=1,
                      device="cpu", preauthorized=[keypair.public], log_file=False,
                      grace=1.0)  # fmt: skip
        local = AgentThread(agent)
        scheduler = Scheduler(journal=None, keypair=keypair, name="desk")
        await local.start()
        await scheduler.start(resume=False, connect_paired=False)
        try:
            assert local.is_alive() and local.endpoint.startswith("tcp://127.0.0.1:")
            node = await scheduler.add_node(local.endpoint, local.public_key.decode(), "local")
            await wait_for(lambda: scheduler.state.nodes[node].slots == 1, 30, "one worker")
            result = await asyncio.wait_for(scheduler.inpaint(rgb, mask, SETTINGS), 30)
            assert np.array_equal(result.rgb[mask == 0], rgb[mask == 0])
            # A busy caller loop (the GUI) does not stop the agent's: it still hears its worker.
            supervisor = agent.supervisor
            assert supervisor is not None
            [slot] = supervisor.slots.values()
            heard = slot.last_seen
            time.sleep(2.5)  # the caller's loop blocked; the worker beats every second
            assert slot.last_seen > heard
            local.set_workers(2)
            await wait_for(lambda: scheduler.state.nodes[node].slots == 2, 30, "two workers")
            processes = [s.process for s in supervisor.slots.values() if s.process is not None]
        finally:
            await scheduler.stop()
            await local.stop()
        assert not local.is_alive()
        assert "lama-local-agent" not in {t.name for t in threading.enumerate()}
        assert processes and all(p.poll() is not None for p in processes)  # workers ended
        await local.stop()  # a second stop does nothing

    asyncio.run(body())


def test_an_agent_that_cannot_start_raises_and_leaves_no_thread(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]

    async def body() -> None:
        agent = Agent(f"tcp://127.0.0.1:{port}", data_dir=tmp_path / "agent", workers=1,
                      device="cpu", log_file=False)  # fmt: skip
        local = AgentThread(agent)
        with pytest.raises(OSError, match="cannot listen"):
            await local.start()
        assert not local.is_alive()
        with pytest.raises(RuntimeError, match="not running"):
            local.set_workers(1)

    try:
        asyncio.run(body())
    finally:
        taken.close()
