"""SIGTERM reaches the loop through the plain-handler path Windows takes (forced on Linux)."""

from __future__ import annotations

import os
import subprocess
import sys

PROBE = """
import asyncio, os, signal
from lama_desktop.cluster.stop_signals import on_stop_signals

async def main():
    stopped = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stopped.set)
    handler = signal.getsignal(signal.SIGTERM)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(stopped.wait(), 5)
    print(handler.__module__)

asyncio.run(main())
"""


def run_probe(portable: bool) -> str:
    env = dict(os.environ, LAMA_PORTABLE_SIGNALS="1" if portable else "0")
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_sigterm_stops_the_loop_with_the_portable_handler_and_with_asyncios() -> None:
    assert run_probe(portable=True) == "lama_desktop.cluster.stop_signals"
    assert run_probe(portable=False) != "lama_desktop.cluster.stop_signals"
