"""`lama-agent --ray` on a local Ray head (127.0.0.1): a batch, a dead actor, a lost cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import pytest

from lama_desktop.cluster.events import Event, JobChanged, JobState, NodeState
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import JobOutcome, plan_batch
from tests.integration.cluster_support import (
    PLUGIN_ENV,
    AgentProcess,
    expected_output,
    leftovers,
    make_folder,
    read_rgb,
    wait_for,
)
from tests.integration.ray_head import RAY_ENV, RayHead
from tests.plugins.crashy_engine import PAUSE_MARKER

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SETTINGS = JobSettings(model="crashy", hd=HDConfig(strategy=HDStrategy.ORIGINAL))


@pytest.fixture(scope="module")
def head() -> Iterator[RayHead]:
    ray_head = RayHead()
    yield ray_head
    ray_head.stop()


@pytest.fixture(autouse=True)
def no_leaked_children(head: RayHead) -> Iterator[None]:
    """The conftest check, less the Ray head's own processes (actor workers, pooled by Ray)."""
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    yield
    deadline = time.monotonic() + 5.0
    leaked: list[psutil.Process] = []
    while time.monotonic() < deadline:
        ray_pids = {p.pid for p in head.descendants()} | {head.process.pid}
        leaked = [
            p for p in me.children(recursive=True)
            if p.pid not in before and p.pid not in ray_pids and _alive(p)
        ]  # fmt: skip
        if not leaked:
            return
        time.sleep(0.1)
    pytest.fail(f"test leaked child processes: {[p.pid for p in leaked]}")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture
def ray_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**PLUGIN_ENV, **RAY_ENV}.items():
        monkeypatch.setenv(key, value)


async def _ray_node(
    tmp_path: Path, head: RayHead
) -> tuple[AgentProcess, Scheduler, str, list[Event]]:
    extra = ("--ray", head.address, "--ray-cpus-per-actor", "1")
    agent = AgentProcess(tmp_path / "agent", "ray", 2, extra=extra)
    keypair = load_or_create_keypair(tmp_path / "desktop.key")
    scheduler = Scheduler(journal=tmp_path / "journal.sqlite3", keypair=keypair, name="desk")
    events: list[Event] = []
    scheduler.events.subscribe(events.append)
    await scheduler.start()
    node_id = await scheduler.pair(agent.link)
    await wait_for(lambda: scheduler.state.nodes[node_id].slots == 2, 40, "2 Ray actors ready")
    return agent, scheduler, node_id, events


def _check_outputs(
    outcomes: list[JobOutcome], images: Path, masks: Path, out: Path, events: list[Event]
) -> None:
    count = len(list(images.iterdir()))
    assert [o.status for o in outcomes] == ["done"] * count, [o.reason for o in outcomes]
    done = [
        e.job.job_id for e in events if isinstance(e, JobChanged) and e.job.state == JobState.DONE
    ]
    assert len(done) == count == len(set(done)), "every photo done exactly once"
    assert len(list(out.iterdir())) == count and leftovers(out) == []
    for outcome in outcomes:
        assert outcome.output is not None
        expected = expected_output(outcome.image, masks / outcome.image.name, SETTINGS)
        assert np.array_equal(read_rgb(outcome.output), expected)


@pytest.mark.usefixtures("ray_env")
def test_a_batch_through_ray_actors_matches_a_direct_run(tmp_path: Path, head: RayHead) -> None:
    asyncio.run(_batch(tmp_path, head))


async def _batch(tmp_path: Path, head: RayHead) -> None:
    images, masks = make_folder(tmp_path, 6)
    out = tmp_path / "out"
    agent, scheduler, node_id, events = await _ray_node(tmp_path, head)
    try:
        node = scheduler.state.nodes[node_id].view(time.monotonic())
        assert node.device == "Ray: 2 actors on 1 node"
        batch = scheduler.submit_batch(plan_batch(images, masks, out), SETTINGS, "photos")
        outcomes = await asyncio.wait_for(scheduler.wait_batch(batch), 60)
    finally:
        await scheduler.stop()
        agent.close()
    _check_outputs(outcomes, images, masks, out, events)
    assert {o.node for o in outcomes} == {"ray"}


@pytest.mark.usefixtures("ray_env")
def test_an_actor_killed_mid_batch_fails_only_its_job_which_runs_again(
    tmp_path: Path, head: RayHead
) -> None:
    asyncio.run(_kill_actor(tmp_path, head))


async def _kill_actor(tmp_path: Path, head: RayHead) -> None:
    count = 4
    images, masks = make_folder(tmp_path, count, {i: PAUSE_MARKER for i in range(count)})
    out = tmp_path / "out"
    agent, scheduler, node_id, events = await _ray_node(tmp_path, head)
    try:
        batch = scheduler.submit_batch(plan_batch(images, masks, out), SETTINGS, "photos")
        await wait_for(lambda: bool(head.actors(running=True)), 20, "a job running on an actor")
        head.actors(running=True)[0].kill()
        outcomes = await asyncio.wait_for(scheduler.wait_batch(batch), 60)
        # The dead actor is replaced: the node is back to two slots.
        await wait_for(lambda: scheduler.state.nodes[node_id].slots == 2, 30, "a new actor")
    finally:
        await scheduler.stop()
        agent.close()
    _check_outputs(outcomes, images, masks, out, events)
    died = [e.job for e in events if isinstance(e, JobChanged) and "Ray actor" in e.job.reason]
    assert died and died[0].state == JobState.QUEUED, "the dead actor's job went back to the queue"


@pytest.mark.usefixtures("ray_env")
def test_a_lost_cluster_marks_the_node_down_with_the_reason(tmp_path: Path, head: RayHead) -> None:
    # Last in this module: it kills the shared head.
    asyncio.run(_lose_cluster(tmp_path, head))


async def _lose_cluster(tmp_path: Path, head: RayHead) -> None:
    agent, scheduler, node_id, _events = await _ray_node(tmp_path, head)
    try:
        head.stop()
        await wait_for(
            lambda: scheduler.state.nodes[node_id].state == NodeState.OFFLINE, 40, "node down"
        )
        await asyncio.sleep(2.5)  # HELLOs go on meanwhile; the answer stays "down, because"
        node = scheduler.state.nodes[node_id]
        assert node.state == NodeState.OFFLINE
        assert "Ray cluster" in node.reason, node.reason
        assert agent.process.poll() is None, "the agent stays up and retries"
        agent_log = (tmp_path / "agent" / "agent.log").read_text()
        assert "worker w0 restarts in 0.5 s" in agent_log, "the Ray driver is retried, backing off"
    finally:
        await scheduler.stop()
        agent.close()
