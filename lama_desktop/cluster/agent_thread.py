"""The desktop's own agent on a thread of its own, with its own event loop.

In the app the GUI, the scheduler and (before this) the local agent shared the Qt event loop:
while the GUI was busy (a 100,000-row batch queued, a large photo painted) the agent's
heartbeats, its worker supervisor (every 50 ms) and its NVML/psutil polling waited too, and
the scheduler once declared the local node lost ("silent for 3.5 s"). Here the agent runs
as `lama-agent` does, on an asyncio loop of its own; the caller's loop only starts it, stops
it and forwards `set_workers`, each across threads with the loop's thread-safe calls.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading

from lama_desktop.cluster.agent import Agent

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 30.0  # the agent's stop has stopped its workers by then


class AgentThread:
    """Runs `agent` on a private thread and loop; awaited from the caller's own loop."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        return self.agent.endpoint

    @property
    def public_key(self) -> bytes:
        return self.agent.public_key

    @property
    def name(self) -> str:
        return self.agent.name

    def is_alive(self) -> bool:
        """Whether the agent's thread runs (from `start` until `stop` returns)."""
        return self._thread is not None and self._thread.is_alive()

    async def start(self) -> None:
        """Start the agent on its thread; raises what the agent's own `start` raised."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="lama-local-agent", daemon=True
        )
        self._thread.start()
        try:
            await asyncio.wrap_future(ready)
        except BaseException:
            await self._join()
            raise

    def _run(self, ready: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self.agent.start())
        except Exception as exc:
            ready.set_exception(exc)
            loop.close()
            return
        self._loop = loop
        ready.set_result(None)
        try:
            loop.run_forever()
        finally:
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def set_workers(self, count: int) -> None:
        """Run `count` local workers from now on (0: none); done on the agent's thread."""
        if self._loop is None:
            raise RuntimeError("the local agent is not running")
        self._loop.call_soon_threadsafe(self.agent.set_workers, count)

    async def stop(self, drain: bool = False) -> None:
        """Stop the agent (and its workers) on its thread, then end the thread."""
        loop = self._loop
        if loop is None or not self.is_alive():
            return
        self._loop = None
        try:
            done = asyncio.run_coroutine_threadsafe(self.agent.stop(drain=drain), loop)
            await asyncio.wrap_future(done)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            await self._join()

    async def _join(self) -> None:
        thread = self._thread
        if thread is None:
            return
        await asyncio.get_running_loop().run_in_executor(None, thread.join, JOIN_TIMEOUT_S)
        if thread.is_alive():
            log.error("the local agent's thread did not end within %.0f s", JOIN_TIMEOUT_S)
