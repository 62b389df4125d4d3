"""A worker's watch on its agent that needs no prctl: the stdin pipe the agent holds open.

When the agent dies, however it dies (SIGKILL, a crash, Task Manager), the OS closes its end of
the pipe and the worker reads end-of-file, on Linux, macOS and Windows alike. A thread waits for
that from the first moment, so a worker still importing torch does not outlive its agent either.
Linux's PDEATHSIG stays as a second line there unless LAMA_WORKER_PARENT_WATCH=pipe, which tests
use to prove the pipe alone is enough.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
from collections.abc import Callable

from lama_desktop.cluster.worker_link import LINK_ENV

log = logging.getLogger("lama_desktop.worker")

WATCH_ENV = "LAMA_WORKER_PARENT_WATCH"  # "pipe": no PDEATHSIG, only the pipe
GONE_EXIT_CODE = 3


def use_pdeathsig(environ: dict[str, str] | None = None) -> bool:
    """Whether to ask Linux for PDEATHSIG as well (not when the pipe alone is being tested)."""
    env = os.environ if environ is None else environ
    return sys.platform.startswith("linux") and env.get(WATCH_ENV, "") != "pipe"


def _exit_when_gone() -> None:
    log.warning("agent gone (its pipe closed); exiting")
    logging.shutdown()
    os._exit(GONE_EXIT_CODE)


def start(
    environ: dict[str, str] | None = None,
    stream: io.BufferedIOBase | None = None,
    on_gone: Callable[[], None] = _exit_when_gone,
) -> dict[str, str]:
    """Read the link's secrets from stdin and watch it for EOF; {} when not started by a link."""
    env = os.environ if environ is None else environ
    if env.get(LINK_ENV) != "1":
        return {}  # started by hand or by a test: no pipe to read
    pipe = stream if stream is not None else open(0, "rb", closefd=False)  # noqa: SIM115
    line = pipe.readline()
    if not line.endswith(b"\n"):
        on_gone()  # the agent died before it wrote the line
        return {}
    secrets: dict[str, str] = json.loads(line)

    def watch() -> None:
        try:
            while pipe.read(4096):
                pass  # the agent writes nothing more; any bytes are ignored
        except (OSError, ValueError):
            pass  # a broken pipe is as good as end-of-file
        on_gone()

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
    return secrets
