"""`lama-agent --metrics`: Prometheus text on loopback with its workers, desktops and jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.serve_support import REPO, metric

pytestmark = pytest.mark.integration


def test_agent_serves_metrics_when_asked(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [
            sys.executable, "-m", "lama_desktop.cluster.agent_cli", "--bind", "tcp://127.0.0.1:0",
            "--workers", "1", "--device", "cpu", "--data-dir", str(tmp_path), "--no-announce",
            "--metrics", "127.0.0.1:0",
        ],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    try:
        assert process.stdout is not None
        url = ""
        deadline = time.monotonic() + 30
        while not url and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            if line.startswith("Prometheus metrics on "):
                url = line.split()[3]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
        while True:  # the worker process starts in the background
            with urllib.request.urlopen(url, timeout=10) as reply:
                text = reply.read()
                assert reply.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            if metric(text, "lama_agent_workers") == 1 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert metric(text, "lama_agent_workers") == 1
        assert metric(text, "lama_agent_desktops") == 0
        assert b"lama_agent_jobs_done_total 0.0" in text
    finally:
        process.terminate()
        process.wait(20)
        if process.stdout is not None:
            process.stdout.close()
