"""A worker subprocess on its own: READY, jobs, bad frames, DISCONNECT, and no orphans."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import zmq
from PIL import Image

from lama_desktop.cluster.protocol import (
    Disconnect,
    Failed,
    Heartbeat,
    Job,
    Ready,
    Result,
    decode,
    encode,
)
from lama_desktop.cluster.supervisor import worker_command
from lama_desktop.engine.base import create_model
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings, process_arrays

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def recv(sock: zmq.Socket, timeout: float = 20.0) -> tuple[object, list[bytes]]:
    deadline = time.monotonic() + timeout
    while sock.poll(int(max(deadline - time.monotonic(), 0) * 1000)):
        frames = sock.recv_multipart()
        msg, payload = decode(frames[1:])
        if not isinstance(msg, Heartbeat):
            return msg, [bytes(p) for p in payload]
    raise TimeoutError("worker said nothing")


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_worker_speaks_the_protocol_and_leaves_on_disconnect(tmp_path: Path) -> None:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    endpoint = f"ipc://{tmp_path}/w.sock"
    router.bind(endpoint)
    worker = subprocess.Popen(worker_command(endpoint, "w7", "cpu"))
    try:
        ready, _ = recv(router)
        assert isinstance(ready, Ready) and ready.node == "w7" and ready.slots == 1
        assert "opencv-ns" in ready.models and "lama" not in ready.models
        router.send_multipart([b"w7", b"\x00not msgpack"])  # dropped, the worker carries on
        rgb = np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)
        mask = np.zeros((40, 40), np.uint8)
        mask[5:15, 5:25] = 1
        hd = HDConfig(strategy=HDStrategy.ORIGINAL)
        settings = JobSettings(model="opencv-ns", hd=hd).to_dict()
        job = Job(job="a", kind="array", settings=settings, image_name="", mask_name="",
                  shape=[40, 40])  # fmt: skip
        router.send_multipart([b"w7", *encode(job, rgb.tobytes(), mask.tobytes())])
        result, payload = recv(router)
        assert isinstance(result, Result) and result.worker == "w7" and result.seconds > 0
        out = np.frombuffer(payload[0], np.uint8).reshape(40, 40, 3)
        assert np.array_equal(out, process_arrays(rgb, mask, create_model("opencv-ns"), hd))
        # A mask frame of the wrong size is the job's fault, reported, not a crash.
        router.send_multipart([b"w7", *encode(job, rgb.tobytes(), b"short")])
        failed, _ = recv(router)
        assert isinstance(failed, Failed) and "mask" in failed.reason and not failed.crashed
        router.send_multipart([b"w7", *encode(Disconnect(reason="test over"))])
        assert worker.wait(timeout=10) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        ctx.destroy(linger=0)


def test_workers_die_with_a_killed_agent(tmp_path: Path) -> None:
    """SIGKILL the agent (no chance to clean up): its workers must not live on as orphans."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "lama_desktop.cluster.agent_cli", "--bind",
               "tcp://127.0.0.1:0", "--data-dir", str(tmp_path), "--no-announce",
               "--workers", "2", "--device", "cpu"]  # fmt: skip
    agent = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 20
        while len(workers) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
            workers = psutil.Process(agent.pid).children()
        assert len(workers) == 2
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        _gone, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == []
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        for process in workers:
            if process.is_running():
                process.kill()


def test_worker_leaves_when_its_agent_falls_silent_or_its_parent_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lama_desktop.cluster import worker as worker_module

    monkeypatch.setattr(worker_module, "MIN_SILENCE_S", 0.5)
    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(f"ipc://{tmp_path}/nobody.sock")  # no agent will ever answer
        silent = worker_module.Worker(sock, "w", "cpu", heartbeat=0.1, parent=os.getppid())
        started = time.monotonic()
        assert silent.run() == 3
        assert 0.4 < time.monotonic() - started < 3.0
        orphan = worker_module.Worker(sock, "w", "cpu", heartbeat=0.1, parent=os.getppid() + 1)
        started = time.monotonic()
        assert orphan.run() == 3  # reparented: the agent that started it is gone
        assert time.monotonic() - started < 0.5
        sock.close()
    finally:
        ctx.term()
