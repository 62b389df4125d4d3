"""The agent over real Curve sockets on 127.0.0.1 with real worker subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import signal
import sys
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
from lama_desktop.cluster.auth import GUESSES_PER_ADDRESS, MAX_HANDSHAKING
from lama_desktop.cluster.keys import KeyPair, pairing_keypair
from lama_desktop.cluster.protocol import (
    FRAME_BYTES,
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

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_agent_probe import stalled_handshake  # benchmarks/ is not a package  # noqa: E402

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
        future = self.sock.send_multipart([b"node", *frames], flags=zmq.DONTWAIT)
        exc = future.exception()  # a DONTWAIT send has finished already
        if isinstance(exc, zmq.ZMQError) and exc.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
            return False
        if exc is not None:
            raise exc
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

    async def ask(
        self,
        msg: Any,
        *payload: bytes,
        timeout: float = 5.0,
        skip: tuple[type, ...] = (Heartbeat, Ready),
    ) -> tuple[Any, list]:
        """Send once, return the first answer not of a `skip` type.

        A connect-side ROUTER with CONNECT_ROUTING_ID has its pipe from connect() on, so the
        message waits in it until the Curve handshake is done.
        """
        assert self.send(msg, *payload)
        return await self.recv(timeout=timeout, skip=skip)

    async def ask_raw(self, *frames: bytes) -> tuple[Any, list]:
        assert self.send_raw(*frames)
        return await self.recv()

    async def hello(self, timeout: float = 5.0) -> Ready:
        """HELLO, resent every half second (as a scheduler does) until READY."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send(Hello(desktop="test", name="test desktop"))
            try:
                reply, _ = await self.recv(timeout=0.5)
            except TimeoutError:
                continue
            assert isinstance(reply, Ready), reply
            return reply
        raise TimeoutError("no READY")

    def keep_alive(self, interval: float = 0.1) -> asyncio.Task[None]:
        """Send heartbeats in the background, as a scheduler does; cancel the task to go quiet."""

        async def beat() -> None:
            while True:
                self.send(Heartbeat())
                await asyncio.sleep(interval)

        return asyncio.create_task(beat())

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


def test_unknown_key_is_refused_at_the_handshake_and_logged_with_its_address(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lama_desktop.cluster.auth")

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        assert agent.codes.live() == []
        stranger = Desktop(ctx, agent)
        with pytest.raises(TimeoutError):
            await stranger.hello(timeout=1.5)
        assert agent.auth.refused >= 1
        assert agent.sessions == {}
        stranger.close()

    run_with_agent(tmp_path, scenario)
    refusals = [r.getMessage() for r in caplog.records if "unknown key" in r.getMessage()]
    assert refusals and "127.0.0.1" in refusals[0]


def test_pairing_code_works_once_and_expired_or_reused_codes_are_refused(tmp_path: Path) -> None:
    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        link = agent.pairing_link()
        assert link.host == "127.0.0.1" and link.port == agent.port
        me = KeyPair(*zmq.curve_keypair())
        # Only the code's pairing key gets past the handshake; it may present the code, no more.
        pairing = Desktop(ctx, agent, pairing_keypair(link.code, agent.public_key))
        reply, _ = await pairing.ask(*file_job("x"))
        assert isinstance(reply, Refuse) and "not paired" in reply.reason
        bad = Pair(code=link.code, desktop_name="Studio PC", desktop_key="short")
        reply, _ = await pairing.ask(bad)
        assert isinstance(reply, Refuse) and "own Curve public key" in reply.reason
        good = Pair(code=link.code, desktop_name="Studio PC", desktop_key=me.public.decode())
        reply, _ = await pairing.ask(good)
        assert isinstance(reply, Paired) and reply.node == agent.name
        assert [k.name for k in agent.keys.list()] == ["Studio PC"]
        assert agent.keys.contains(me.public) and agent.codes.live() == []
        reply, _ = await pairing.ask(good)  # the code is used up
        assert isinstance(reply, Refuse) and "code" in reply.reason
        pairing.close()
        desktop = Desktop(ctx, agent, me)
        await desktop.hello()  # the desktop's own key is paired now
        # A reused or expired code's pairing key, or a stranger's key, never gets in.
        agent.codes.issue()
        expired = agent.codes.issue(ttl=0.2)
        await asyncio.sleep(0.3)
        for keys in (
            pairing_keypair(link.code, agent.public_key),
            pairing_keypair(expired, agent.public_key),
            None,
        ):
            other = Desktop(ctx, agent, keys)
            with pytest.raises(TimeoutError):
                await other.ask(Pair(code="ABCDEFGH", desktop_name="x"), timeout=1.0)
            other.close()
        assert [k.name for k in agent.keys.list()] == ["Studio PC"]
        desktop.close()

    run_with_agent(tmp_path, scenario)


def test_guessing_bans_the_address_not_the_code(tmp_path: Path) -> None:
    """10 wrong keys from one address: that address is refused, a desktop elsewhere still pairs."""

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        code = agent.codes.issue()
        pairing_key = pairing_keypair(code, agent.public_key).public.decode()
        for _ in range(GUESSES_PER_ADDRESS):
            assert agent.auth.decide(zmq.curve_keypair()[0].decode(), "10.9.9.9") is None
        assert agent.auth.banned("10.9.9.9")
        assert agent.auth.decide(pairing_key, "10.9.9.9") is None  # even the right one
        # Loopback has guessed nothing: the code still works from here, over real sockets.
        assert agent.codes.live() == [code]
        me = KeyPair(*zmq.curve_keypair())
        pairing = Desktop(ctx, agent, pairing_keypair(code, agent.public_key))
        reply, _ = await pairing.ask(
            Pair(code=code, desktop_name="Laptop", desktop_key=me.public.decode())
        )
        assert isinstance(reply, Paired)
        pairing.close()
        # A fresh code lifts the ban: 10 guesses per code per address.
        agent.codes.issue()
        assert agent.auth.pairing_keys() and not agent.auth.banned("10.9.9.9")

    run_with_agent(tmp_path, scenario)


def test_bad_input_is_dropped_and_the_agent_keeps_answering(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    me = KeyPair(*zmq.curve_keypair())
    caplog.set_level(logging.WARNING, logger="lama_desktop.cluster")

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        # A plaintext client on the Curve port: the handshake fails, nothing comes back.
        plain = ctx.socket(zmq.DEALER)
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(agent.endpoint)
        await plain.send_multipart([msgspec.msgpack.encode({"v": 1, "op": "hello"})])
        assert await plain.poll(800) == 0
        plain.close()
        await until(lambda: agent.handshakes.failed >= 1)
        desktop = Desktop(ctx, agent, me)
        await desktop.hello()
        # Another protocol version gets a refusal naming both versions.
        future = msgspec.msgpack.encode({"v": 2, "op": "hello", "desktop": "d", "name": "n"})
        reply, _ = await desktop.ask_raw(future)
        assert isinstance(reply, Refuse) and "2" in reply.reason and "1" in reply.reason
        assert reply.peer_version == 2
        # Garbage, an unknown op, a wrong payload count: logged and dropped.
        before = agent.stats.dropped
        job, image, mask = file_job("g")
        for frames in (
            [b"\xff\x00garbage"],
            [b""],
            [msgspec.msgpack.encode({"v": 1, "op": "launch-missiles"})],
            [bytes(encode(job, image, mask)[0])],
            [msgspec.msgpack.encode([1, 2, 3]), b"x"],
        ):
            assert desktop.send_raw(*frames)
        await desktop.hello()  # answered after the five bad messages, in order
        assert agent.stats.dropped - before == 5
        # An oversized frame: MAXMSGSIZE cuts the connection, the message never reaches the
        # agent (a job would be answered: this agent has no workers), the client reconnects.
        cuts = agent.handshakes.disconnects
        assert desktop.send_raw(bytes(encode(job, image, mask)[0]), b"\0" * 300_000, mask)
        await until(lambda: agent.handshakes.disconnects > cuts)
        await desktop.hello()
        with pytest.raises(TimeoutError):
            await desktop.recv(timeout=0.3, skip=(Heartbeat, Ready))
        desktop.close()

    run_with_agent(tmp_path, scenario, preauthorize=me, max_message_bytes=200_000)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    # The plaintext client; its address is known only if the connection was still open when
    # the monitor event was read (libzmq 4.3 monitor events carry a file descriptor, not it).
    assert "refused a connection from" in logged and "handshake failed" in logged
    assert "dropped a bad message" in logged


@pytest.mark.usefixtures("plugins")
def test_aborting_worker_is_restarted_and_its_job_reported_crashed(tmp_path: Path) -> None:
    me = KeyPair(*zmq.curve_keypair())

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        desktop = Desktop(ctx, agent, me)
        await desktop.hello()
        pid = await worker_pid(agent)
        reply, _ = await desktop.ask(*file_job("boom", model="crashy", corner=MARKER), timeout=20)
        assert isinstance(reply, Failed) and reply.crashed and reply.job == "boom", reply
        assert "SIGABRT" in reply.reason
        assert agent.stats.restarts == 1
        new_pid = await worker_pid(agent)
        assert new_pid != pid and not psutil.pid_exists(pid)
        # The restarted worker runs the next job, with the plugin engine, pixel for pixel.
        job, image, mask = file_job("fine", model="crashy")
        reply, payload = await desktop.ask(job, image, mask, timeout=20)
        assert isinstance(reply, Result), reply
        assert np.array_equal(decoded(payload[0]), expected_telea(image))
        desktop.close()

    run_with_agent(tmp_path, scenario, preauthorize=me, workers=1)


@pytest.mark.usefixtures("plugins")
def test_cancel_stops_the_running_job_and_the_worker_comes_back(tmp_path: Path) -> None:
    me = KeyPair(*zmq.curve_keypair())

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        desktop = Desktop(ctx, agent, me)
        await desktop.hello()
        pid = await worker_pid(agent)
        assert desktop.send(*file_job("stuck", model="crashy", corner=SLOW_MARKER))
        assert desktop.send(*file_job("queued"))
        await until(lambda: "stuck" in agent.running)
        reply, _ = await desktop.ask(Cancel(job="queued"))
        assert isinstance(reply, Failed) and reply.cancelled and reply.job == "queued"
        reply, _ = await desktop.ask(Cancel(job="stuck"), timeout=10)
        assert isinstance(reply, Failed) and reply.cancelled and not reply.crashed, reply
        assert reply.job == "stuck"
        assert await worker_pid(agent) != pid and not psutil.pid_exists(pid)
        reply, _ = await desktop.ask(*file_job("after"), timeout=20)
        assert isinstance(reply, Result) and reply.job == "after"
        desktop.close()

    run_with_agent(tmp_path, scenario, preauthorize=me, workers=1)


@pytest.mark.usefixtures("plugins")
def test_heartbeats_carry_metrics_and_a_silent_desktop_is_dropped(tmp_path: Path) -> None:
    me = KeyPair(*zmq.curve_keypair())

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        desktop = Desktop(ctx, agent, me)
        await desktop.hello()
        # READY is sent again once the worker is up (slots changed): wait for the heartbeat.
        beat, _ = await desktop.recv(timeout=2, skip=(Ready,))
        assert isinstance(beat, Heartbeat) and beat.metrics is not None
        assert beat.metrics.ram_total > 0 and beat.metrics.busy_slots == 0
        alive = desktop.keep_alive()
        await worker_pid(agent)
        assert desktop.send(*file_job("stuck", model="crashy", corner=SLOW_MARKER))
        assert desktop.send(*file_job("prefetched"))
        reply, _ = await desktop.ask(*file_job("one too many"))  # 2 jobs per slot at most
        assert isinstance(reply, Failed) and "full" in reply.reason and reply.declined, reply
        assert "stuck" in agent.running and len(agent.queue) == 1
        beat, _ = await desktop.recv(timeout=2, skip=(Ready,))
        assert isinstance(beat, Heartbeat) and beat.metrics and beat.metrics.busy_slots == 1
        # The desktop goes quiet but its libzmq still answers the agent's pings (the app's loop
        # is busy): it is kept with its queue, well past 3 missed heartbeats.
        alive.cancel()
        await asyncio.sleep(1.8)  # 6 beats of 0.3 s
        assert agent.sessions and len(agent.queue) == 1
        # Its connection closes: it is dropped with its queue at the next beats.
        desktop.close()
        started = time.monotonic()
        await until(lambda: not agent.sessions, timeout=3)
        assert time.monotonic() - started <= 2.0  # one or two beats, plus a loaded machine
        assert not agent.queue and "stuck" in agent.running  # running work is left to finish

    run_with_agent(tmp_path, scenario, preauthorize=me, heartbeat=0.3, workers=1)


def test_a_frozen_desktop_is_dropped_once_libzmq_stops_answering(tmp_path: Path) -> None:
    """SIGSTOP freezes the desktop's libzmq too: its pings go unanswered, the connection is
    closed after 3 beats, and the agent drops the silent session."""
    me = KeyPair(*zmq.curve_keypair())

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        args = [agent.endpoint, agent.public_key.decode(), me.public.decode(), me.secret.decode()]
        desktop = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.plugins.hello_desktop", *args,
            cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            assert desktop.stdout is not None
            line = await asyncio.wait_for(desktop.stdout.readline(), 20)
            assert line.strip() == b"ready"
            await until(lambda: any(s.greeted for s in agent.sessions.values()))
            await asyncio.sleep(1.0)
            assert agent.sessions  # heartbeats keep it there
            desktop.send_signal(signal.SIGSTOP)
            started = time.monotonic()
            await until(lambda: not agent.sessions, timeout=6)
            # silent 3 x 0.3 s, and libzmq's ping timeout (3 x 0.3 s) closed the connection
            assert 0.8 <= time.monotonic() - started <= 4.0
        finally:
            desktop.kill()
            desktop.send_signal(signal.SIGCONT)
            await desktop.wait()

    run_with_agent(tmp_path, scenario, preauthorize=me, heartbeat=0.3)


def test_set_workers_and_revoked_keys_take_effect_at_once(tmp_path: Path) -> None:
    me = KeyPair(*zmq.curve_keypair())

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        link = agent.pairing_link()
        pairing = Desktop(ctx, agent, pairing_keypair(link.code, agent.public_key))
        pair = Pair(code=link.code, desktop_name="Desk", desktop_key=me.public.decode())
        reply, _ = await pairing.ask(pair)
        assert isinstance(reply, Paired)
        pairing.close()
        desktop = Desktop(ctx, agent, me)
        assert (await desktop.hello()).slots == 0
        reply, _ = await desktop.ask(*file_job("nowhere"))
        assert isinstance(reply, Failed) and "0 slot" in reply.reason and reply.declined
        agent.set_workers(1)
        update, _ = await desktop.recv(timeout=2, skip=(Heartbeat,))
        assert isinstance(update, Ready) and update.slots == 1
        assert agent.keys.revoke("Desk")
        reply, _ = await desktop.ask(Hello(desktop="d", name="Desk"))
        assert isinstance(reply, Refuse) and "not paired" in reply.reason
        desktop.close()

    run_with_agent(tmp_path, scenario)


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.02)


async def worker_pid(agent: Agent) -> int:
    """The pid of the agent's one worker, once it is ready."""
    assert agent.supervisor is not None
    await until(lambda: bool(agent.supervisor and agent.supervisor.idle_workers()), timeout=20)
    (slot,) = agent.supervisor.slots.values()
    assert slot.process is not None
    return slot.process.pid


def test_a_burst_of_random_frames_never_stops_the_agent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import random

    caplog.set_level(logging.WARNING, logger="lama_desktop.cluster")
    me = KeyPair(*zmq.curve_keypair())
    rng = random.Random(1234)
    ops = ["hello", "job", "cancel", "pair", "result", "failed", "ready", "heartbeat", "nope"]

    def junk() -> list[bytes]:
        kind = rng.randrange(3)
        if kind == 0:  # raw bytes, several frames
            return [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 4))]
        fields: dict[str, Any] = {"v": 1, "op": rng.choice(ops)}
        for name in ("job", "kind", "settings", "shape", "code", "metrics", "desktop"):
            if rng.random() < 0.5:
                fields[name] = rng.choice([None, 7, -1.5, "x", [1, "a"], {"k": []}, b"\xff"])
        header = msgspec.msgpack.encode(fields)
        return [header] + [rng.randbytes(8) for _ in range(rng.randrange(0, 3))]

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        desktop = Desktop(ctx, agent, me)
        await desktop.hello()
        for _ in range(300):
            assert desktop.send_raw(*junk())
        ready = await desktop.hello()  # still answering, in order, after all of it
        assert ready.node == agent.name
        assert agent.stats.dropped >= 250
        desktop.close()

    run_with_agent(tmp_path, scenario, preauthorize=me)
    logged = [r.getMessage() for r in caplog.records]
    assert sum("dropped a bad message" in m for m in logged) >= 250
    assert not any("broke its handler" in m for m in logged)  # every case handled on purpose


def test_a_photo_larger_than_one_frame_travels_split_and_comes_back_whole(tmp_path: Path) -> None:
    """A 5 MB PNG crosses the agent's 4 MiB frame limit in slices and is cleaned like any photo."""
    me = KeyPair(*zmq.curve_keypair())
    rgb = np.random.default_rng(3).integers(0, 255, (1300, 1300, 3), dtype=np.uint8)
    mask = np.zeros((1300, 1300), np.uint8)
    mask[600:640, 600:660] = 255
    image = png(rgb)
    assert len(image) > FRAME_BYTES  # noise does not compress

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        desktop = Desktop(ctx, agent, me)
        await desktop.hello(timeout=20)
        settings = JobSettings(model="opencv-telea", hd=ORIGINAL).to_dict()
        job = Job(
            job="big", kind="file", settings=settings, image_name="big.png",
            mask_name="big_mask.png",
        )  # fmt: skip
        alive = desktop.keep_alive()  # decoding and encoding 5 MB of noise takes seconds
        reply, payload = await desktop.ask(job, image, png(mask), timeout=60)
        alive.cancel()
        assert isinstance(reply, Result), reply
        expected = process_arrays(rgb, mask, create_model("opencv-telea", "cpu"), ORIGINAL)
        assert np.array_equal(decoded(payload[0]), expected)
        desktop.close()

    run_with_agent(tmp_path, scenario, preauthorize=me, workers=1)


def test_strangers_cannot_hold_more_than_a_few_stalled_handshakes(tmp_path: Path) -> None:
    """20 connections that stall in their handshake: beyond 16 they are cut; paired work goes on."""
    me = KeyPair(*zmq.curve_keypair())

    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        host, port = "127.0.0.1", agent.port
        loop = asyncio.get_running_loop()
        desktop = Desktop(ctx, agent, me)
        await desktop.hello()
        stalled = [
            await loop.run_in_executor(None, stalled_handshake, host, port, 1 << 20, 1000)
            for _ in range(MAX_HANDSHAKING + 4)
        ]
        try:
            await until(lambda: agent.handshakes.cut >= 1, timeout=5)
            assert len(agent.handshakes._handshaking) <= MAX_HANDSHAKING
            assert (await desktop.hello()).slots == 0  # a paired desktop is still served
            desktop.close()
        finally:
            for sock in stalled:
                sock.close()
        await until(lambda: not agent.handshakes._handshaking, timeout=5)
        # A frame over the 4 MiB limit ends a stranger's connection at its header.
        big = await loop.run_in_executor(None, stalled_handshake, host, port, 268_000_000, 0)
        try:
            big.settimeout(5)  # a connection left open times out here and fails the test
            with contextlib.suppress(ConnectionResetError):  # closed with our bytes unread
                while big.recv(4096):  # maybe the agent's greeting, then the end
                    pass
        finally:
            big.close()

    run_with_agent(tmp_path, scenario, preauthorize=me)


def test_a_pending_peer_may_send_only_a_small_pair(tmp_path: Path) -> None:
    async def scenario(agent: Agent, ctx: zmq.asyncio.Context) -> None:
        code = agent.codes.issue()
        pairing = Desktop(ctx, agent, pairing_keypair(code, agent.public_key))
        dropped = agent.stats.dropped
        padded = Pair(code=code, desktop_name="x" * 20_000, desktop_key="k")
        assert pairing.send(padded)
        with pytest.raises(TimeoutError):
            await pairing.recv(timeout=1.0)
        assert agent.stats.dropped == dropped + 1 and agent.codes.live() == [code]
        pairing.close()

    run_with_agent(tmp_path, scenario)
