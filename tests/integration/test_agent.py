"""The agent over real Curve sockets on 127.0.0.1 with real worker subprocesses."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import psutil
import pytest
import zmq
import zmq.asyncio
from PIL import Image

from lama_desktop.cluster.agent import Agent
from lama_desktop.cluster.keys import KeyPair
from lama_desktop.cluster.protocol import (
    Cancel,
    Failed,
    Heartbeat,
    Hello,
    Job,
    Pair,
    Paired,
    Ready,
    Refuse,
    Result,
    decode,
    encode,
)
from lama_desktop.engine.base import create_model
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings, process_arrays
from tests.plugins.crashy_engine import MARKER, SLOW_MARKER

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
ORIGINAL = HDConfig(strategy=HDStrategy.ORIGINAL)


class Desktop:
    """A minimal scheduler side: a Curve-client ROUTER speaking protocol.py to one agent."""

    def __init__(self, ctx: zmq.asyncio.Context, agent: Agent, keys: KeyPair | None = None):
        public, secret = zmq.curve_keypair()
        self.keys = keys or KeyPair(public, secret)
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.CURVE_SECRETKEY, self.keys.secret)
        self.sock.setsockopt(zmq.CURVE_PUBLICKEY, self.keys.public)
        self.sock.setsockopt(zmq.CURVE_SERVERKEY, agent.public_key)
        self.sock.setsockopt(zmq.ROUTING_ID, b"desktop-" + os.urandom(4).hex().encode())
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.CONNECT_ROUTING_ID, b"node")
        self.sock.connect(agent.endpoint)

    def send_raw(self, *frames: bytes) -> bool:
        """Send frames to the agent; False while the connection is not up."""
        try:
            self.sock.send_multipart([b"node", *frames], flags=zmq.DONTWAIT)
        except zmq.ZMQError as exc:
            if exc.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise
        return True

    def send(self, msg: Any, *payload: bytes) -> bool:
        return self.send_raw(*(bytes(f) for f in encode(msg, *payload)))

    async def recv(
        self, timeout: float = 5.0, skip: tuple[type, ...] = (Heartbeat,)
    ) -> tuple[Any, list]:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the agent")
            if not await self.sock.poll(int(left * 1000)):
                continue
            frames = await self.sock.recv_multipart()
            msg, payload = decode(frames[1:])
            if isinstance(msg, skip):
                continue
            return msg, [bytes(p) for p in payload]

    async def connected(self, timeout: float = 5.0) -> None:
        """Wait until the Curve handshake is done (sending no longer fails)."""
        deadline = time.monotonic() + timeout
        while not self.send(Heartbeat()):
            if time.monotonic() > deadline:
                raise TimeoutError("never connected")
            await asyncio.sleep(0.02)

    async def ask(
        self,
        msg: Any,
        *payload: bytes,
        timeout: float = 5.0,
        skip: tuple[type, ...] = (Heartbeat, Ready),
    ) -> tuple[Any, list]:
        """Connect, send once, return the first answer not of a `skip` type."""
        await self.connected()
        assert self.send(msg, *payload)
        return await self.recv(timeout=timeout, skip=skip)

    async def hello(self) -> Ready:
        reply, _ = await self.ask(Hello(desktop="test", name="test desktop"), skip=(Heartbeat,))
        assert isinstance(reply, Ready), reply
        return reply

    def close(self) -> None:
        self.sock.close(0)


def run_with_agent(
    tmp_path: Path,
    scenario: Callable[[Agent, zmq.asyncio.Context], Awaitable[None]],
    *,
    preauthorize: KeyPair | None = None,
    **options: Any,
) -> None:
    """Start an agent on 127.0.0.1:0, run the scenario, stop the agent, check no worker is left."""
    options.setdefault("workers", 0)
    options.setdefault("device", "cpu")

    async def main() -> None:
        ctx = zmq.asyncio.Context()
        agent = Agent(
            "tcp://127.0.0.1:0",
            data_dir=tmp_path / "agent",
            log_file=False,
            preauthorized=[preauthorize.public] if preauthorize else [],
            grace=1.0,
            **options,
        )
        await agent.start()
        try:
            await scenario(agent, ctx)
        finally:
            await agent.stop(drain=False)
            ctx.destroy(linger=0)

    asyncio.run(main())
    workers = [p for p in psutil.Process().children(recursive=True) if _is_worker(p)]
    assert workers == []


def _is_worker(process: psutil.Process) -> bool:
    try:
        return "lama_desktop.cluster.worker" in process.cmdline()
    except psutil.Error:
        return False


def photo(height: int = 48, width: int = 64, corner: tuple[int, int, int] | None = None) -> bytes:
    rng = np.random.default_rng(7)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if corner is not None:
        rgb[0, 0] = corner
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, format="PNG")
    return out.getvalue()


def square_mask(height: int = 48, width: int = 64) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[10:30, 20:40] = 255
    return mask


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def file_job(
    job_id: str, model: str = "opencv-telea", corner: Any = None
) -> tuple[Job, bytes, bytes]:
    settings = JobSettings(model=model, hd=ORIGINAL).to_dict()
    job = Job(
        job=job_id, kind="file", settings=settings, image_name="a.png", mask_name="a_mask.png"
    )
    return job, photo(corner=corner), png(square_mask())


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def expected_telea(image_png: bytes) -> np.ndarray:
    return process_arrays(
        decoded(image_png), square_mask(), create_model("opencv-telea", "cpu"), ORIGINAL
    )


@pytest.fixture
def plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers load the crashing test engine."""
    monkeypatch.setenv("LAMA_PLUGINS", "tests.plugins.crashy_engine")
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def test_worker_runs_file_and_array_jobs_like_the_engine(tmp_path: Path) -> None:
    me = KeyPair(*zmq.curve_keypair())

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        desktop = Desktop(ctx, agent, me)
        ready = await desktop.hello()
        assert ready.slots == 1 and ready.version
        job, image, mask = file_job("j1")
        reply, payload = await desktop.ask(job, image, mask, timeout=20)
        assert isinstance(reply, Result) and reply.job == "j1" and reply.ext == ".png", reply
        expected = expected_telea(image)
        assert np.array_equal(decoded(payload[0]), expected)
        # The same photo as raw arrays: the same pixels come back.
        rgb, mask_array = decoded(image), square_mask()
        array_job = msgspec.structs.replace(job, job="j2", kind="array", shape=[48, 64])
        reply, payload = await desktop.ask(array_job, rgb.tobytes(), mask_array.tobytes())
        assert isinstance(reply, Result) and reply.shape == [48, 64], reply
        out = np.frombuffer(payload[0], np.uint8).reshape(48, 64, 3)
        assert np.array_equal(out, expected)
        inside = square_mask() > 0
        assert not np.array_equal(out[inside], rgb[inside])
        # Workers report their models once READY: OpenCV, but no LaMa file in this test's store.
        ready = await desktop.hello()
        assert "opencv-telea" in ready.models and "lama" not in ready.models
        # A model this node lacks: a clear refusal, not a crash; the worker keeps serving.
        reply, _ = await desktop.ask(*file_job("j3", model="lama"))
        assert isinstance(reply, Failed) and reply.missing_model and "lama" in reply.reason, reply
        reply, _ = await desktop.ask(*file_job("j4"))
        assert isinstance(reply, Result)
        desktop.close()

    run_with_agent(tmp_path, scenario, preauthorize=me, workers=1)
