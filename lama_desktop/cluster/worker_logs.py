"""Workers' log records reach the agent's log (and so the app's log file), not only a terminal.

A worker writes one JSON record per line to its stderr pipe; the agent reads the pipe on a
thread and logs each record again under `lama_desktop.worker.<id>`, so whatever handlers the
agent's process has (the app's log file, lama-agent's terminal and file) receive it. Anything
else on that pipe (a crash before logging was set up, a C library's message) is kept too.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from typing import IO

FORWARD_ENV = "LAMA_WORKER_LOG_FORWARD"  # "1": the agent reads this worker's stderr
LEVEL_ENV = "LAMA_WORKER_LOG_LEVEL"
LOGGER = "lama_desktop.worker"


class JsonLineFormatter(logging.Formatter):
    """One line per record: its level, logger and message with any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        if record.stack_info:
            text = f"{text}\n{self.formatStack(record.stack_info)}"
        return json.dumps({"level": record.levelno, "name": record.name, "msg": text})


def setup_worker_logging(worker_id: str) -> None:
    """In a worker process: log (Python warnings included) to stderr at LAMA_WORKER_LOG_LEVEL."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get(FORWARD_ENV) == "1":
        handler.setFormatter(JsonLineFormatter())
    else:  # run by hand: lines for a person
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s worker {worker_id} %(levelname)s %(message)s")
        )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(os.environ.get(LEVEL_ENV, "INFO").upper())
    logging.captureWarnings(True)


class Relogger:
    """Logs a worker's stderr lines in this process, under the worker's own logger.

    JSON lines are the worker's log records. Other lines are raw output, logged as warnings;
    a raw Python traceback (a crash before logging was set up) is gathered into one error.
    """

    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.log = logging.getLogger(f"{LOGGER}.{worker_id}")
        self._traceback: list[str] = []

    def feed(self, line: str) -> None:
        line = line.rstrip("\r\n")
        if self._traceback:
            self._traceback.append(line)
            if line[:1] not in (" ", "\t"):  # "ValueError: ..." ends the traceback
                self.close()
            return
        if not line.strip():
            return
        if line.startswith("Traceback (most recent call last):"):
            self._traceback.append(line)
            return
        try:
            record = json.loads(line)
            level, text = int(record["level"]), str(record["msg"])
        except (ValueError, KeyError, TypeError):
            level, text = logging.WARNING, line  # not a record: raw output is worth seeing
        self.log.log(level, "worker %s: %s", self.worker_id, text)

    def close(self) -> None:
        """Log a traceback cut short by the end of the stream."""
        if self._traceback:
            text = "\n".join(self._traceback)
            self._traceback = []
            self.log.error("worker %s: %s", self.worker_id, text)


def forward(stream: IO[bytes], worker_id: str) -> threading.Thread:
    """Relog every line of `stream` (a worker's stderr pipe) until the worker closes it."""
    relogger = Relogger(worker_id)

    def pump() -> None:
        with stream:
            for raw in stream:
                relogger.feed(raw.decode("utf-8", "replace"))
        relogger.close()

    thread = threading.Thread(target=pump, name=f"worker-log-{worker_id}", daemon=True)
    thread.start()
    return thread
