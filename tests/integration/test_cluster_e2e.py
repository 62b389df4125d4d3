"""The whole cluster with real processes on 127.0.0.1: lose an agent, lose the scheduler."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lama_desktop.cluster.agent import Agent
from lama_desktop.cluster.events import Event, JobChanged, JobState, NodeChanged, NodeState
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import plan_batch
from tests.integration.cluster_support import (
    PLUGIN_ENV,
    REPO,
    AgentProcess,
    expected_output,
    leftovers,
    make_folder,
    read_rgb,
    wait_for,
)
from tests.plugins.crashy_engine import PAUSE_MARKER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = JobSettings(model="crashy", hd=HDConfig(strategy=HDStrategy.ORIGINAL))


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in PLUGIN_ENV.items():
        monkeypatch.setenv(key, value)


@pytest.mark.usefixtures("plugins")
def test_sigkill_one_agent_mid_batch_its_jobs_run_elsewhere_once(tmp_path: Path) -> None:
    asyncio.run(_sigkill_one_agent(tmp_path))


async def _sigkill_one_agent(tmp_path: Path) -> None:
    count = 5
    images, masks = make_folder(tmp_path, count, {i: PAUSE_MARKER for i in range(count)})
    out = tmp_path / "out"
    doomed = AgentProcess(tmp_path / "agent-a", "doomed")
    spare = AgentProcess(tmp_path / "agent-b", "spare")
    keypair = load_or_create_keypair(tmp_path / "desktop.key")
    local = Agent(
        "tcp://127.0.0.1:0", data_dir=tmp_path / "local", workers=1, device="cpu",
        name="local", preauthorized=[keypair.public], log_file=False,
    )  # fmt: skip
    scheduler = Scheduler(journal=tmp_path / "journal.sqlite3", keypair=keypair, name="desk")
    events: list[tuple[float, Event]] = []
    scheduler.events.subscribe(lambda e: events.append((time.monotonic(), e)))
    await local.start()
    await scheduler.start()
    try:
        await scheduler.add_node(local.endpoint, local.public_key.decode(), "local", local=True)
        doomed_id = await scheduler.pair(doomed.link)
        await scheduler.pair(spare.link)
        await wait_for(lambda: sum(p.ready for p in scheduler.peers.values()) == 3, 30, "3 nodes")
        batch_id = scheduler.submit_batch(plan_batch(images, masks, out), SETTINGS, "photos")
        await wait_for(
            lambda: scheduler.state.nodes[doomed_id].assigned, 10, "a job on the doomed agent"
        )
        await asyncio.sleep(0.3)  # the job is running on the doomed agent's worker now
        lost = set(scheduler.state.nodes[doomed_id].assigned)
        doomed.kill()
        killed_at = time.monotonic()
        outcomes = await asyncio.wait_for(scheduler.wait_batch(batch_id), 60)
    finally:
        await scheduler.stop()
        await local.stop(drain=False)
        doomed.close()
        spare.close()

    offline = [
        t for t, e in events
        if isinstance(e, NodeChanged) and e.node.node_id == doomed_id
        and e.node.state == NodeState.OFFLINE
    ]  # fmt: skip
    assert offline and offline[0] - killed_at < 3.0, "death of an agent detected within 3 s"
    assert [o.status for o in outcomes] == ["done"] * count, [o.reason for o in outcomes]
    done_events = [e.job.job_id for _, e in events
                   if isinstance(e, JobChanged) and e.job.state == JobState.DONE]  # fmt: skip
    assert sorted(done_events) == sorted(set(done_events)) and len(done_events) == count
    rerun = {o.image.name: o.node for o in outcomes}
    for job_id in lost:
        image = scheduler._batches[batch_id].jobs[job_id].image.name
        assert rerun[image] != "doomed"
    assert len(list(out.iterdir())) == count and leftovers(out) == []
    for outcome in outcomes:
        mask = masks / outcome.image.name
        assert outcome.output is not None
        assert np.array_equal(
            read_rgb(outcome.output), expected_output(outcome.image, mask, SETTINGS)
        )


DRIVER = """
import asyncio, json, sys
from pathlib import Path
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import plan_batch

async def main(root: Path, link: str | None) -> None:
    scheduler = Scheduler(journal=root / "journal.sqlite3",
                          keypair=load_or_create_keypair(root / "desktop.key"), name="desk")
    await scheduler.start()
    if link:
        await scheduler.pair(link)
        settings = JobSettings(model="crashy", hd=HDConfig(strategy=HDStrategy.ORIGINAL))
        plan = plan_batch(root / "images", root / "masks", root / "out")
        ids = [scheduler.submit_batch(plan, settings, "photos")]
        print("submitted", flush=True)
    else:
        ids = list(scheduler._batches)
        print("resumed", json.dumps([b.resumed for b in scheduler.snapshot().batches]), flush=True)
    result = {}
    for batch_id in ids:
        result[batch_id] = [[o.image.name, o.status, o.reason] for o in
                            await asyncio.wait_for(scheduler.wait_batch(batch_id), 60)]
    await scheduler.stop()
    print("result", json.dumps(result), flush=True)

asyncio.run(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None))
"""


def test_sigkill_the_scheduler_mid_batch_and_resume_from_the_journal(tmp_path: Path) -> None:
    count = 5
    images, masks = make_folder(tmp_path, count, {i: PAUSE_MARKER for i in range(count)})
    out = tmp_path / "out"
    agent = AgentProcess(tmp_path / "agent", "spare", workers=2)
    env = dict(os.environ, **PLUGIN_ENV)
    cmd = [sys.executable, "-c", DRIVER, str(tmp_path)]
    try:
        first = subprocess.Popen([*cmd, agent.link], stdout=subprocess.PIPE, text=True, env=env,
                                 cwd=REPO)  # fmt: skip
        try:
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline and len(list(out.glob("*.png"))) < 2:
                time.sleep(0.05)
            assert len(list(out.glob("*.png"))) >= 2, "the first scheduler wrote some outputs"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            assert first.stdout is not None
            first.stdout.close()
        written_before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
        assert len(written_before) < count, "killed mid-batch"
        second = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=90)
    finally:
        agent.close()
    assert second.returncode == 0, second.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in second.stdout.splitlines()}
    assert json.loads(lines["resumed"]) == [True]
    [outcomes] = json.loads(lines["result"]).values()
    assert [status for _, status, _ in outcomes] == ["done"] * count, outcomes
    # Outputs from before the kill were neither lost nor written again.
    for name, mtime in written_before.items():
        assert (out / name).stat().st_mtime_ns == mtime
    assert len(list(out.glob("*.png"))) == count and leftovers(out) == []
    for name, _, _ in outcomes:
        expected = expected_output(images / name, masks / name, SETTINGS)
        assert np.array_equal(read_rgb(out / name), expected)


def test_a_restarted_agent_is_used_again_within_seconds(tmp_path: Path) -> None:
    asyncio.run(_restart_agent(tmp_path))


async def _restart_agent(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    bind = f"tcp://127.0.0.1:{port}"
    agent = AgentProcess(tmp_path / "agent", "box", workers=0, bind=bind)
    scheduler = Scheduler(
        journal=tmp_path / "journal.sqlite3",
        keypair=load_or_create_keypair(tmp_path / "desktop.key"),
        name="desk",
    )
    await scheduler.start()
    try:
        node = await scheduler.pair(agent.link)
        await wait_for(lambda: scheduler.peers[node].ready, 20, "the agent ready")
        agent.kill()
        await wait_for(lambda: not scheduler.peers[node].ready, 5, "the agent seen down")
        # Down for 10 s: libzmq's doubling backoff (1 s up to 32 s before) would next try
        # at 15 s; capped at 2 s, the next try comes within 2 s of the agent listening.
        await asyncio.sleep(8)
        loop = asyncio.get_running_loop()
        listening = loop.run_in_executor(None, _first_accept, port, 30.0)
        agent.close()
        agent = AgentProcess(tmp_path / "agent", "box", workers=0, bind=bind)
        await wait_for(lambda: scheduler.peers[node].ready, 15, "the agent ready again")
        back = time.monotonic() - await listening
    finally:
        await scheduler.stop()
        agent.close()
    assert back < 3.5, f"the restarted agent was used again {back:.1f} s after it listened"


def _first_accept(port: int, timeout: float) -> float:
    """When a TCP connect to the port first succeeds (polled every 20 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return time.monotonic()
        except OSError:
            time.sleep(0.02)
    raise TimeoutError("the restarted agent never listened")
