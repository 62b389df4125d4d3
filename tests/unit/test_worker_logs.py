"""A worker's warnings and tracebacks are logged in the agent's process, per worker."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from lama_desktop.cluster.worker_logs import FORWARD_ENV, LEVEL_ENV, forward

_WORKER = """
import logging, sys, warnings
from lama_desktop.cluster.worker_logs import setup_worker_logging
setup_worker_logging("w7")
log = logging.getLogger("lama_desktop.worker")
log.info("asked to stop")
log.debug("not at this level")
warnings.warn("half precision is slow on this card")
try:
    1 / 0
except ZeroDivisionError:
    log.exception("job j1 failed")
print("a C library wrote this", file=sys.stderr, flush=True)
raise RuntimeError("crashed outside any handler")
"""


def test_records_warnings_and_tracebacks_of_a_real_worker_reach_this_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="lama_desktop.worker")
    env = {**os.environ, FORWARD_ENV: "1", LEVEL_ENV: "INFO"}
    process = subprocess.Popen([sys.executable, "-c", _WORKER], stderr=subprocess.PIPE, env=env)
    assert process.stderr is not None
    thread = forward(process.stderr, "w7")
    assert process.wait(30) == 1
    thread.join(10)
    assert not thread.is_alive()
    records = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert {name for name, _, _ in records} == {"lama_desktop.worker.w7"}
    levels = [level for _, level, _ in records]
    texts = [text for _, _, text in records]
    assert texts[0] == "worker w7: asked to stop" and levels[0] == logging.INFO
    assert "half precision is slow" in texts[1] and levels[1] == logging.WARNING
    # A logged exception is one record with its whole traceback.
    assert texts[2].startswith("worker w7: job j1 failed\nTraceback (most recent call last):")
    assert texts[2].endswith("ZeroDivisionError: division by zero") and levels[2] == logging.ERROR
    assert texts[3] == "worker w7: a C library wrote this" and levels[3] == logging.WARNING
    # An uncaught exception's raw traceback is gathered into one error too.
    assert texts[4].startswith("worker w7: Traceback (most recent call last):")
    assert texts[4].endswith("RuntimeError: crashed outside any handler")
    assert levels[4] == logging.ERROR and len(records) == 5
