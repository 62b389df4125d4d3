"""HTTP nodes: our `serve` processes used as IOPaint-compatible endpoints over 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lama_desktop.cluster.batch_run import run_plan
from lama_desktop.cluster.events import NodeState, NodeView
from lama_desktop.cluster.journal import StoredNode
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import JobOutcome, plan_batch
from tests.integration.cluster_support import (
    PLUGIN_ENV,
    expected_output,
    make_folder,
    read_rgb,
    wait_for,
)
from tests.integration.serve_support import (
    TOKEN,
    ServeProcess,
    b64,
    encode,
    expected,
    metric,
    photo,
)
from tests.plugins.crashy_engine import PAUSE_MARKER

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    """Our serve with one local worker: the IOPaint-compatible endpoint under test."""
    process = ServeProcess(
        tmp_path_factory.mktemp("endpoint"), "--model", "cv2", "--local-workers", "1"
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.close()


def test_serve_in_front_of_serve_each_client_gets_its_own_photo(
    endpoint: ServeProcess, tmp_path: Path
) -> None:
    node = f"http://{TOKEN}@127.0.0.1:{endpoint.port}"
    front = ServeProcess(tmp_path / "front", "--model", "cv2", "--local-workers", "0",
                         "--node", node)  # fmt: skip
    try:
        front.wait_ready()
        photos = [photo(200 + i) for i in range(8)]

        def one(i: int) -> np.ndarray:
            rgb, mask = photos[i]
            body = {"image": b64(encode(rgb)), "mask": b64(encode(mask)),
                    "cv2_flag": "INPAINT_TELEA", "cv2_radius": 5}  # fmt: skip
            reply = front.request("/api/v1/inpaint", body)
            assert reply.status == 200, reply.body[:300]
            return reply.rgb()

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(8)))
        for (rgb, mask), result in zip(photos, results, strict=True):
            assert np.array_equal(result, expected(rgb, mask, "opencv-telea", 5))
        text = front.request("/metrics").body
        assert metric(text, "lama_jobs_done_total") == 8
        assert f'node="127.0.0.1:{endpoint.port}"'.encode() in text
        # The endpoint kept its own model: the node never switches it.
        assert endpoint.request("/api/v1/model").json()["name"] == "cv2"
    finally:
        front.close()


def test_a_batch_through_an_http_node_matches_a_direct_run(
    endpoint: ServeProcess, tmp_path: Path
) -> None:
    images, masks = make_folder(tmp_path, 5)
    settings = JobSettings(model="opencv-ns")
    node = f"http://{TOKEN}@127.0.0.1:{endpoint.port}"
    outcomes = run_plan(
        plan_batch(images, masks, tmp_path / "out"), settings, 0, [node],
        data_dir=tmp_path / "data", progress=lambda line: None,
    )  # fmt: skip
    assert [o.status for o in outcomes] == ["done"] * 5
    for outcome in outcomes:
        assert outcome.output is not None and outcome.node == f"127.0.0.1:{endpoint.port}"
        want = expected_output(outcome.image, masks / outcome.image.name, settings)
        assert np.array_equal(read_rgb(outcome.output), want)


def test_a_wrong_token_is_a_down_node_with_its_reason(
    endpoint: ServeProcess, tmp_path: Path
) -> None:
    async def run() -> NodeView:
        keys = load_or_create_keypair(tmp_path / "desktop.key")
        scheduler = Scheduler(journal=None, keypair=keys, name="t")
        await scheduler.start(resume=False, connect_paired=False)
        try:
            node = await scheduler.add_node(f"http://127.0.0.1:{endpoint.port}", "wrong", "")

            def view() -> NodeView:
                return next(n for n in scheduler.snapshot().nodes if n.node_id == node)

            await wait_for(lambda: view().state == NodeState.OFFLINE, 10, "the node down")
            return view()
        finally:
            await scheduler.stop()

    view = asyncio.run(run())
    assert "401" in view.reason and "Bearer" in view.reason


def test_an_http_node_comes_back_after_a_restart(endpoint: ServeProcess, tmp_path: Path) -> None:
    journal, keys = tmp_path / "j.sqlite3", load_or_create_keypair(tmp_path / "desktop.key")
    address = f"http://127.0.0.1:{endpoint.port}?slots=2"

    async def run(add: bool) -> NodeView:
        scheduler = Scheduler(journal=journal, keypair=keys, name="t")
        await scheduler.start(resume=False, connect_paired=not add)
        try:
            if add:
                await scheduler.add_node(address, TOKEN, "attic")

            def views() -> list[NodeView]:
                return list(scheduler.snapshot().nodes)

            await wait_for(lambda: any(v.state == NodeState.IDLE for v in views()), 10, "ready")
            return views()[0]
        finally:
            await scheduler.stop()

    first = asyncio.run(run(add=True))
    again = asyncio.run(run(add=False))  # from the journal alone, token included
    assert (again.node_id, again.name, again.address) == (first.node_id, "attic", address)
    assert again.slots == 2 and again.device == "HTTP: IOPaint API, model cv2"
    assert "opencv-telea" in again.models


@pytest.mark.slow  # two serve processes and 1.5 s jobs: about 15 s
def test_a_lost_endpoint_hands_its_jobs_to_the_other_and_both_are_journalled(
    tmp_path: Path,
) -> None:
    images, masks = make_folder(tmp_path, 4, markers={i: PAUSE_MARKER for i in range(4)})
    settings = JobSettings(model="crashy")
    args = ("--model", "crashy", "--local-workers", "1")
    first = ServeProcess(tmp_path / "a", *args, env=PLUGIN_ENV)
    second = ServeProcess(tmp_path / "b", *args, env=PLUGIN_ENV)
    try:
        first.wait_ready()
        second.wait_ready()

        async def run() -> tuple[list[JobOutcome], NodeView, list[StoredNode]]:
            keys = load_or_create_keypair(tmp_path / "desktop.key")
            scheduler = Scheduler(journal=tmp_path / "j.sqlite3", keypair=keys, name="t")
            await scheduler.start(resume=False, connect_paired=False)
            try:
                lost = await scheduler.add_node(first.url, TOKEN, "first")
                await scheduler.add_node(second.url, TOKEN, "second")

                def nodes() -> dict[str, NodeView]:
                    return {n.node_id: n for n in scheduler.snapshot().nodes}

                await wait_for(
                    lambda: all(n.state == NodeState.IDLE for n in nodes().values()), 20, "ready"
                )
                plan = plan_batch(images, masks, tmp_path / "out")
                batch = scheduler.submit_batch(plan, settings, "t", durable=False)
                await wait_for(lambda: bool(nodes()[lost].current_jobs), 20, "a job on first")
                first.process.kill()
                outcomes = await asyncio.wait_for(scheduler.wait_batch(batch), 60)
                assert scheduler.journal is not None
                return outcomes, nodes()[lost], scheduler.journal.nodes()
            finally:
                await scheduler.stop()

        outcomes, lost_view, stored = asyncio.run(run())
    finally:
        first.close()
        second.close()
    assert [o.status for o in outcomes] == ["done"] * 4, [o.reason for o in outcomes]
    assert lost_view.state == NodeState.OFFLINE and lost_view.reason
    assert sum(o.node == "second" for o in outcomes) >= 3
    for outcome in outcomes:
        assert outcome.output is not None
        want = expected_output(outcome.image, masks / outcome.image.name, settings)
        assert np.array_equal(read_rgb(outcome.output), want)
    assert sorted(n.address for n in stored) == sorted([first.url, second.url])
    assert {n.server_key for n in stored} == {TOKEN}
