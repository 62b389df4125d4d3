"""IOPaintApi in process, over a real 127.0.0.1 socket, in front of a stand-in scheduler."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiohttp.test_utils import TestServer
from PIL import Image

from lama_desktop.cluster import iopaint_api
from lama_desktop.cluster.events import NodeState, NodeView, Snapshot
from lama_desktop.cluster.iopaint_api import IOPaintApi
from lama_desktop.cluster.jobfiles import InteractiveResult
from lama_desktop.engine.pipeline import JobSettings


class StandInScheduler:
    """One idle node with OpenCV; an edit comes back with its masked pixels painted white."""

    def __init__(self) -> None:
        self.node = NodeView(
            "n1", "local", "tcp://127.0.0.1:1", "CPU", NodeState.IDLE, slots=1,
            models=("opencv-ns", "opencv-telea"),
        )  # fmt: skip
        self.snapshots = 0

    def node_views(self) -> tuple[NodeView, ...]:
        return (self.node,)

    def snapshot(self) -> Snapshot:
        self.snapshots += 1  # a whole snapshot lists every job of every batch
        return Snapshot(nodes=(self.node,), batches=(), jobs=(), paused=False)

    async def inpaint(
        self, rgb: np.ndarray, mask: np.ndarray, settings: JobSettings
    ) -> InteractiveResult:
        out = rgb.copy()
        out[mask > 0] = 255
        return InteractiveResult(out, "local", 0.01)


def png_b64(array: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def serve(api: IOPaintApi, talk: Callable[[aiohttp.ClientSession, str], Awaitable[None]]) -> None:
    async def main() -> None:
        server = TestServer(api.application(), host="127.0.0.1")
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session:
                await talk(session, str(server.make_url("/")))
        finally:
            await server.close()

    asyncio.run(main())


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/api/v1/model", 401), ("POST", "/api/v1/inpaint", 401), ("GET", "/nowhere", 401)],
)
def test_refusals_carry_the_cors_headers_a_browser_needs_to_read_them(
    method: str, path: str, status: int
) -> None:
    # IOPaint's CORSMiddleware wraps its error handler: a front end on another origin can
    # read the JSON error. Without the header the browser hides it behind a CORS failure.
    api = IOPaintApi(StandInScheduler(), "opencv-ns", token="secret")

    async def talk(session: aiohttp.ClientSession, url: str) -> None:
        headers = {"Origin": "http://127.0.0.1:3000"}
        async with session.request(method, url.rstrip("/") + path, headers=headers) as reply:
            assert reply.status == status
            assert reply.headers.get("Access-Control-Allow-Origin") == "*"
            assert (await reply.json())["errors"].startswith(f"{status}:")

    serve(api, talk)


def test_an_unparsable_body_is_a_cors_readable_422() -> None:
    api = IOPaintApi(StandInScheduler(), "opencv-ns")

    async def talk(session: aiohttp.ClientSession, url: str) -> None:
        async with session.post(url + "api/v1/inpaint", data=b"{not json") as reply:
            assert reply.status == 422
            assert reply.headers.get("Access-Control-Allow-Origin") == "*"

    serve(api, talk)


def test_model_checks_read_the_nodes_alone_not_a_snapshot_of_every_job() -> None:
    # With a 100,000-job batch queued, a snapshot builds 100,000 job views on the event loop
    # (the GUI's, when the app serves) for every request, and ten times a second while a
    # request waits for a model.
    scheduler = StandInScheduler()
    api = IOPaintApi(scheduler, "opencv-ns")
    rgb = np.full((8, 8, 3), 40, np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 255

    async def talk(session: aiohttp.ClientSession, url: str) -> None:
        async with session.get(url + "api/v1/server-config") as reply:
            assert reply.status == 200
        body = {"image": png_b64(rgb), "mask": png_b64(mask)}
        async with session.post(url + "api/v1/inpaint", json=body) as reply:
            assert reply.status == 200, await reply.text()

    serve(api, talk)
    assert scheduler.snapshots == 0


def test_a_body_is_parsed_and_its_base64_decoded_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A 100 MB body takes a good fraction of a second to parse and decode; on the loop that
    # stalls every other request (and the app's window, whose loop this is when it serves).
    threads: list[str] = []
    real = iopaint_api.decode_base64

    def spy(text: Any, field: str) -> bytes:
        threads.append(threading.current_thread().name)
        return real(text, field)

    monkeypatch.setattr(iopaint_api, "decode_base64", spy)
    api = IOPaintApi(StandInScheduler(), "opencv-ns")
    rgb = np.full((8, 8, 3), 40, np.uint8)
    mask = np.zeros((8, 8), np.uint8)
    mask[2:4, 2:4] = 255

    async def talk(session: aiohttp.ClientSession, url: str) -> None:
        body = {"image": png_b64(rgb), "mask": png_b64(mask)}
        async with session.post(url + "api/v1/inpaint", json=body) as reply:
            assert reply.status == 200, await reply.text()
        async with session.post(
            url + "api/v1/adjust_mask", json={"mask": png_b64(mask), "operate": "expand"}
        ) as reply:
            assert reply.status == 200, await reply.text()

    serve(api, talk)
    assert len(threads) == 3
    assert all(name.startswith("lama-api") for name in threads), threads
