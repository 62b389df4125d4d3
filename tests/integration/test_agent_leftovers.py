"""A real agent: its workers' warnings and tracebacks reach this process's log, and its start
removes the run folders that killed agents left in the temp folder."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from lama_desktop.cluster.agent import Agent
from lama_desktop.cluster.agent_rundir import PID_FILE, PREFIX
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import plan_batch
from tests.integration.cluster_support import PLUGIN_ENV, make_folder
from tests.plugins.crashy_engine import RAISE_MARKER

pytestmark = pytest.mark.integration

SETTINGS = JobSettings(model="crashy", hd=HDConfig(strategy=HDStrategy.ORIGINAL))


def _dead_agents_folder(root: Path) -> Path:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    pid, started = child.pid, psutil.Process(child.pid).create_time()
    child.wait(10)
    folder = root / f"{PREFIX}killed00"
    folder.mkdir(mode=0o700)
    (folder / "workers.sock").write_bytes(b"")
    (folder / PID_FILE).write_text(f"{pid} {started}\n")
    return folder


def test_worker_logs_reach_this_log_and_dead_agents_folders_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for key, value in PLUGIN_ENV.items():
        monkeypatch.setenv(key, value)
    images, masks = make_folder(tmp_path, 2, {0: RAISE_MARKER})
    keypair = load_or_create_keypair(tmp_path / "desktop.key")
    caplog.set_level(logging.INFO, logger="lama_desktop.worker")

    async def body(temp: Path) -> list[str]:
        dead = _dead_agents_folder(temp)
        agent = Agent(
            "tcp://127.0.0.1:0", data_dir=tmp_path / "agent", workers=1, device="cpu",
            name="node", preauthorized=[keypair.public], log_file=False, grace=1.0,
        )  # fmt: skip
        scheduler = Scheduler(journal=None, keypair=keypair, name="desk")
        await agent.start()
        try:
            assert not dead.exists()  # removed by this agent's start
            [own] = temp.glob(f"{PREFIX}*")  # ours, alive: kept
            await scheduler.start()
            await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "node")
            plan = plan_batch(images, masks, tmp_path / "out")
            batch = scheduler.submit_batch(plan, SETTINGS, "blue", durable=False)
            outcomes = await asyncio.wait_for(scheduler.wait_batch(batch), 60)
            assert own.exists()
            return [o.status for o in outcomes]
        finally:
            await scheduler.stop()
            await agent.stop(drain=False)

    with tempfile.TemporaryDirectory(prefix="ld-") as temp:  # short: ipc paths have a limit
        monkeypatch.setattr(tempfile, "tempdir", temp)
        statuses = asyncio.run(body(Path(temp)))
        assert list(Path(temp).iterdir()) == []  # and the agent removed its own on stop
    assert statuses == ["failed", "done"]
    worker = [r for r in caplog.records if r.name.startswith("lama_desktop.worker.")]
    warning = [r for r in worker if r.levelno == logging.WARNING]
    errors = [r.getMessage() for r in worker if r.levelno == logging.ERROR]
    assert any("crashy: this photo is blue" in r.getMessage() for r in warning)
    assert any(
        "failed\nTraceback (most recent call last):" in e
        and e.endswith("RuntimeError: crashy: a bug on a blue photo")
        for e in errors
    ), errors
