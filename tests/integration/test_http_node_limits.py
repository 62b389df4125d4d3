"""An HTTP node's answers are read up to a limit: an endpoint that answers too much (or for
ever) fails the job or the probe with a reason, instead of filling the desktop's memory."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import numpy as np
import pytest
from aiohttp import web
from PIL import Image

from lama_desktop.cluster import http_node
from lama_desktop.cluster import protocol as p
from lama_desktop.cluster.http_node import HttpNodeLink
from lama_desktop.engine.pipeline import JobSettings

pytestmark = pytest.mark.integration


class Heard:
    """NodeEvents that records what the link reports."""

    def __init__(self) -> None:
        self.ready: list[p.Ready] = []
        self.down: list[str] = []
        self.failed: list[p.Failed] = []
        self.results: list[p.Result] = []

    def node_ready(self, node_id: str, msg: p.Ready) -> None:
        self.ready.append(msg)

    def job_result(self, node_id: str, msg: p.Result, payload: list[Any]) -> None:
        self.results.append(msg)

    def job_failed(self, node_id: str, msg: p.Failed) -> None:
        self.failed.append(msg)

    def node_down(self, node_id: str, reason: str) -> None:
        self.down.append(reason)

    def node_seen(self, node_id: str) -> None:
        pass


def _png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


async def _endpoint(probe_bytes: int, answer_bytes: int, chunked: bool) -> web.AppRunner:
    async def config(_request: web.Request) -> web.Response:
        return web.json_response({"plugins": [], "padding": " " * probe_bytes})

    async def model(_request: web.Request) -> web.Response:
        return web.json_response({"name": "cv2", "path": "cv2", "model_type": "inpaint"})

    async def inpaint(request: web.Request) -> web.StreamResponse:
        await request.read()
        if not chunked:
            return web.Response(body=b"\0" * answer_bytes, content_type="image/png")
        reply = web.StreamResponse(headers={"Content-Type": "image/png"})
        reply.enable_chunked_encoding()  # no Content-Length: only counting can stop it
        await reply.prepare(request)
        for _ in range(answer_bytes // 1000):
            await reply.write(b"\0" * 1000)
        await reply.write_eof()
        return reply

    app = web.Application(client_max_size=64 * 2**20)
    app.router.add_get("/api/v1/server-config", config)
    app.router.add_get("/api/v1/model", model)
    app.router.add_post("/api/v1/inpaint", inpaint)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner


def _url(runner: web.AppRunner) -> str:
    site = next(iter(runner.sites))
    host, port = site._server.sockets[0].getsockname()[:2]  # type: ignore[union-attr]
    return f"http://{host}:{port}"


async def _until(check: Any, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_answer_over_the_limit_fails_the_job_with_a_reason(
    monkeypatch: pytest.MonkeyPatch, chunked: bool
) -> None:
    monkeypatch.setattr(http_node, "ANSWER_BYTES", 50_000)

    async def scenario() -> None:
        runner = await _endpoint(probe_bytes=10, answer_bytes=200_000, chunked=chunked)
        heard = Heard()
        link = HttpNodeLink("n", _url(runner), "big", heard, heartbeat=0.2)
        link.start()
        try:
            await _until(lambda: heard.ready)
            photo = _png(np.full((24, 32, 3), 90, np.uint8))
            mask = _png(np.pad(np.full((8, 8), 255, np.uint8), ((8, 8), (12, 12))))
            settings = JobSettings(model="opencv-ns").to_dict()
            job = p.Job(
                job="j1", kind="file", settings=settings, image_name="a.png", mask_name="a.png"
            )
            assert link.send_job(job, photo, mask)
            await _until(lambda: heard.failed)
            failed = heard.failed[0]
            assert failed.job == "j1" and not failed.permanent
            assert "answer to POST /api/v1/inpaint is larger than 50000 bytes" in failed.reason
            assert not heard.results
        finally:
            link.close()
            await link.wait_closed()
            await runner.cleanup()

    asyncio.run(scenario())


def test_a_probe_answer_over_the_limit_is_a_down_node_with_its_reason() -> None:
    async def scenario() -> None:
        runner = await _endpoint(probe_bytes=2 * 2**20, answer_bytes=0, chunked=False)
        heard = Heard()
        link = HttpNodeLink("n", _url(runner), "chatty", heard, heartbeat=0.2)
        link.start()
        try:
            await _until(lambda: heard.down)
            assert "GET /api/v1/server-config is larger than 1 MiB" in heard.down[0]
            assert not heard.ready
        finally:
            link.close()
            await link.wait_closed()
            await runner.cleanup()

    asyncio.run(scenario())
