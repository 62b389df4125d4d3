"""Scheduler + in-process agents over real Curve sockets on 127.0.0.1: cancel, poison, refusals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import numpy as np
import pytest
import zmq
import zmq.asyncio

from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.agent import Agent
from lama_desktop.cluster.events import JobState, NodeState
from lama_desktop.cluster.keys import KeyPair, load_or_create_keypair
from lama_desktop.cluster.scheduler import InpaintFailed, PairingFailed, Scheduler
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import plan_batch
from tests.integration.cluster_support import (
    PLUGIN_ENV,
    expected_output,
    leftovers,
    make_folder,
    read_rgb,
    wait_for,
)
from tests.plugins.crashy_engine import MARKER, SLOW_MARKER

pytestmark = pytest.mark.integration

SETTINGS = JobSettings(model="crashy", hd=HDConfig(strategy=HDStrategy.ORIGINAL))


@pytest.fixture(autouse=True)
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in PLUGIN_ENV.items():
        monkeypatch.setenv(key, value)


@asynccontextmanager
async def cluster(
    tmp_path: Path, workers: int = 2, authorize: bool = True
) -> AsyncIterator[tuple[Scheduler, Agent]]:
    keypair = load_or_create_keypair(tmp_path / "desktop.key")
    agent = Agent(
        "tcp://127.0.0.1:0", data_dir=tmp_path / "agent", workers=workers, device="cpu",
        name="node", preauthorized=[keypair.public] if authorize else [], log_file=False,
        grace=1.0,
    )  # fmt: skip
    scheduler = Scheduler(journal=tmp_path / "journal.sqlite3", keypair=keypair, name="desk")
    await agent.start()
    await scheduler.start()
    try:
        yield scheduler, agent
    finally:
        await scheduler.stop()
        await agent.stop(drain=False)


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(test())


def test_cancel_a_running_batch_stops_workers_and_leaves_no_output(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, 4, {i: SLOW_MARKER for i in range(4)})
    out = tmp_path / "out"

    async def body() -> None:
        async with cluster(tmp_path) as (scheduler, agent):
            node = await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "node")
            batch = scheduler.submit_batch(plan_batch(images, masks, out), SETTINGS, "slow")
            await wait_for(lambda: len(scheduler.state.nodes[node].assigned) == 4, 20, "4 leased")
            await wait_for(lambda: len(agent.running) == 2, 20, "2 jobs running on workers")
            started = time.monotonic()
            scheduler.cancel_batch(batch)
            outcomes = await asyncio.wait_for(scheduler.wait_batch(batch), 10)
            assert [o.status for o in outcomes] == ["cancelled"] * 4
            await wait_for(lambda: not agent.running, 10, "workers stopped")
            assert time.monotonic() - started < 5.0
            # The node still works: its killed workers were restarted.
            images2, masks2 = make_folder(tmp_path / "again", 2)
            again = scheduler.submit_batch(plan_batch(images2, masks2, out), SETTINGS, "again")
            assert [o.status for o in await asyncio.wait_for(scheduler.wait_batch(again), 20)] == [
                "done", "done"
            ]  # fmt: skip

    run(body)
    assert sorted(p.name for p in out.iterdir()) == ["photo00.png", "photo01.png"]
    assert leftovers(out) == []


def test_a_job_that_kills_its_worker_three_times_is_poison_and_the_rest_completes(
    tmp_path: Path,
) -> None:
    images, masks = make_folder(tmp_path, 4, {1: MARKER})
    out = tmp_path / "out"

    async def body() -> None:
        async with cluster(tmp_path) as (scheduler, agent):
            await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "node")
            batch = scheduler.submit_batch(plan_batch(images, masks, out), SETTINGS, "crashy")
            outcomes = await asyncio.wait_for(scheduler.wait_batch(batch), 40)
            by_name = {o.image.name: o for o in outcomes}
            poison = by_name.pop("photo01.png")
            assert poison.status == "failed" and "3 times" in poison.reason
            assert "SIGABRT" in poison.reason or "abort" in poison.reason.lower()
            [job] = [j for j in scheduler.state.jobs.values() if j.image.endswith("photo01.png")]
            assert job.state == JobState.POISON and job.crashes == 3
            assert all(o.status == "done" for o in by_name.values())
            assert agent.stats.restarts >= 3

    run(body)
    for name in ("photo00.png", "photo02.png", "photo03.png"):
        assert np.array_equal(
            read_rgb(out / name), expected_output(images / name, masks / name, SETTINGS)
        )
    assert not (out / "photo01.png").exists()


def test_interactive_edit_runs_ahead_of_a_queued_batch(tmp_path: Path) -> None:
    images, masks = make_folder(tmp_path, 6)
    rgb = np.random.default_rng(1).integers(0, 255, (30, 30, 3), dtype=np.uint8)
    mask = np.zeros((30, 30), np.uint8)
    mask[5:15, 5:15] = 255

    async def body() -> None:
        async with cluster(tmp_path, workers=1) as (scheduler, agent):
            await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "node")
            await wait_for(lambda: any(p.ready for p in scheduler.peers.values()), 20, "ready")
            scheduler.pause()
            batch = scheduler.submit_batch(
                plan_batch(images, masks, tmp_path / "out"), SETTINGS, "b"
            )
            result = await asyncio.wait_for(scheduler.inpaint(rgb, mask, SETTINGS), 20)
            assert result.node == "node"
            assert np.array_equal(result.rgb[mask == 0], rgb[mask == 0])
            assert not np.array_equal(result.rgb[mask > 0], rgb[mask > 0])
            states = {j.state for j in scheduler.state.jobs.values() if j.batch_id == batch}
            assert states == {JobState.QUEUED}  # the paused batch waited, the edit did not
            snap = scheduler.events.snapshot()
            assert snap.paused and [n.name for n in snap.nodes] == ["node"]
            scheduler.resume()
            outcomes = await asyncio.wait_for(scheduler.wait_batch(batch), 20)
            assert {o.status for o in outcomes} == {"done"}

    run(body)


def test_an_edit_that_keeps_killing_its_worker_fails_its_caller_with_the_reason(
    tmp_path: Path,
) -> None:
    rgb = np.zeros((24, 24, 3), np.uint8)
    rgb[0, 0] = MARKER  # the crashy engine aborts on this pixel
    mask = np.zeros((24, 24), np.uint8)
    mask[4:12, 4:12] = 255

    async def body() -> None:
        async with cluster(tmp_path, workers=1) as (scheduler, agent):
            await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "node")
            with pytest.raises(InpaintFailed, match="3 times"):
                await asyncio.wait_for(scheduler.inpaint(rgb, mask, SETTINGS), 40)
            assert not scheduler._interactive  # nothing is left waiting

    run(body)


def test_unpaired_desktop_is_refused_and_pairing_codes_work_once(tmp_path: Path) -> None:
    async def body() -> None:
        async with cluster(tmp_path, authorize=False) as (scheduler, agent):
            node = await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "node")
            await wait_for(
                lambda: scheduler.state.nodes[node].state == NodeState.REFUSED, 10, "refusal"
            )
            assert "pair" in scheduler.state.nodes[node].reason
            scheduler.remove_node(node)
            link = agent.pairing_link()
            with pytest.raises(PairingFailed, match="refused"):
                await scheduler.pair(
                    link.__class__(link.host, link.port, link.server_key, "WRONG123")
                )
            paired = await scheduler.pair(link)
            await wait_for(lambda: scheduler.peers[paired].ready, 10, "paired node ready")
            assert [n.address for n in scheduler.journal.nodes()] == [link.address]  # type: ignore[union-attr]
            # The same code again, from another desktop: refused, that desktop stays out.
            other = Scheduler(journal=None, keypair=KeyPair(*zmq.curve_keypair()), name="other")
            await other.start()
            try:
                with pytest.raises(PairingFailed):
                    await other.pair(link)
            finally:
                await other.stop()
            assert scheduler.peers[paired].ready  # the first desktop is unaffected

    run(body)


def test_garbage_oversized_and_other_version_from_a_node_never_stop_the_scheduler(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with cluster(tmp_path, workers=1) as (scheduler, agent):
            good = await scheduler.add_node(agent.endpoint, agent.public_key.decode(), "node")
            ctx = zmq.asyncio.Context()
            public, secret = zmq.curve_keypair()
            fake = ctx.socket(zmq.ROUTER)
            fake.setsockopt(zmq.CURVE_SERVER, 1)
            fake.setsockopt(zmq.CURVE_SECRETKEY, secret)
            fake.setsockopt(zmq.LINGER, 0)
            port = fake.bind_to_random_port("tcp://127.0.0.1")
            scheduler.max_message_bytes = 1 << 20
            bad = await scheduler.add_node(f"tcp://127.0.0.1:{port}", public.decode(), "bad")
            try:
                rid, header = (await asyncio.wait_for(fake.recv_multipart(), 10))[:2]
                assert isinstance(p.decode([header])[0], p.Hello)
                await fake.send_multipart([rid, b"\xc1garbage", b"x"])
                await fake.send_multipart([rid, msgspec.msgpack.encode({"v": 1, "op": "nope"})])
                result = p.Result(job="nobody/x/1", seconds=1, worker="w", ext=".png")
                await fake.send_multipart([rid, *p.encode(result, b"x" * (2 << 20))])
                v2 = {"v": 2, "op": "ready", "node": "future", "slots": 1}
                await fake.send_multipart([rid, msgspec.msgpack.encode(v2)])
                await wait_for(
                    lambda: scheduler.state.nodes[bad].state == NodeState.VERSION_MISMATCH,
                    10, "version refusal",
                )  # fmt: skip
                reason = scheduler.state.nodes[bad].reason
                assert "2" in reason and str(p.PROTOCOL_VERSION) in reason
            finally:
                fake.close()
                ctx.term()
            await wait_for(lambda: scheduler.peers[good].ready, 10, "good node ready")
            rgb = np.zeros((20, 20, 3), np.uint8)
            mask = np.full((20, 20), 255, np.uint8)
            result_rgb = await asyncio.wait_for(scheduler.inpaint(rgb, mask, SETTINGS), 20)
            assert result_rgb.node == "node"

    run(body)


def test_disabling_and_removing_a_paired_node_survive_a_restart(tmp_path: Path) -> None:
    from lama_desktop.cluster.journal import Journal, StoredNode

    journal_path = tmp_path / "journal.sqlite3"
    journal = Journal(journal_path)
    key = zmq.curve_keypair()[0].decode()
    journal.save_node(StoredNode("n-studio", "studio", "tcp://127.0.0.1:9", key, True, 1.0))
    journal.close()
    keypair = load_or_create_keypair(tmp_path / "desktop.key")

    async def started() -> Scheduler:
        scheduler = Scheduler(journal=journal_path, keypair=keypair, name="desk")
        await scheduler.start()
        return scheduler

    async def body() -> None:
        scheduler = await started()
        assert list(scheduler.state.nodes) == ["n-studio"]  # the journal's id, not a new one
        scheduler.set_node_enabled("n-studio", False)
        await scheduler.stop()

        scheduler = await started()
        [view] = scheduler.snapshot().nodes
        assert view.node_id == "n-studio" and not view.enabled
        scheduler.remove_node("n-studio")
        await scheduler.stop()

        scheduler = await started()
        assert scheduler.snapshot().nodes == ()
        await scheduler.stop()

    run(body)
