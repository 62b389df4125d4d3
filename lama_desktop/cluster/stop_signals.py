"""Ctrl-C, SIGTERM and Windows' Ctrl-Break as one callback in the event loop, on every OS.

asyncio's loop.add_signal_handler does not exist on Windows (nor off the main thread); there
a plain signal.signal handler hands the callback to the loop instead. LAMA_PORTABLE_SIGNALS=1
takes that path on Linux too, so it is tested where the tests run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterable
from types import FrameType

log = logging.getLogger(__name__)

FORCE_ENV = "LAMA_PORTABLE_SIGNALS"
STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGBREAK") if hasattr(signal, name)
)


def on_stop_signals(
    loop: asyncio.AbstractEventLoop,
    callback: Callable[[], object],
    signals: Iterable[int] = STOP_SIGNALS,
) -> None:
    """Call `callback` in `loop` when one of `signals` arrives (each time it arrives)."""
    portable = os.environ.get(FORCE_ENV) == "1"

    def handler(_signum: int, _frame: FrameType | None) -> None:
        loop.call_soon_threadsafe(callback)

    for sig in signals:
        if not portable:
            try:
                loop.add_signal_handler(sig, callback)
                continue
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # Windows, or a loop that cannot: the plain handler below
        with contextlib.suppress(ValueError):  # not the main thread: the signal stays as it was
            signal.signal(sig, handler)
