"""The portable worker link, forced on Linux: a real worker over tcp+Curve, and the pipe watch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import numpy as np
import psutil
import pytest
import zmq

from lama_desktop.cluster.parent_watch import GONE_EXIT_CODE, WATCH_ENV
from lama_desktop.cluster.protocol import Disconnect, Heartbeat, Job, Ready, Result, decode, encode
from lama_desktop.cluster.supervisor import worker_command
from lama_desktop.cluster.worker_link import LinkedProcess, WorkerLink
from lama_desktop.engine.base import create_model
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings, process_arrays

pytestmark = pytest.mark.integration

PIPE_ONLY = {**os.environ, WATCH_ENV: "pipe"}  # no PDEATHSIG: the pipe alone must do it


def recv(sock: zmq.Socket, timeout: float = 30.0) -> object:
    deadline = time.monotonic() + timeout
    while sock.poll(int(max(deadline - time.monotonic(), 0) * 1000)):
        msg, _payload = decode(sock.recv_multipart()[1:])
        if not isinstance(msg, Heartbeat):
            return msg
    raise TimeoutError("worker said nothing")


@pytest.fixture
def tcp_link() -> Iterator[tuple[WorkerLink, zmq.Socket]]:
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    link = WorkerLink("tcp")
    link.bind(router)
    yield link, router
    link.close()
    ctx.destroy(linger=0)


def stop(worker: LinkedProcess) -> None:
    if worker.poll() is None:
        worker.kill()
        worker.process.wait()
    worker.poll()  # closes the pipe


def test_a_worker_runs_a_job_over_tcp_with_curve_and_strangers_are_not_heard(
    tcp_link: tuple[WorkerLink, zmq.Socket],
) -> None:
    link, router = tcp_link
    assert link.endpoint.startswith("tcp://127.0.0.1:")
    worker = link.start(worker_command(link.endpoint, "w1", "cpu"), PIPE_ONLY)
    stranger_ctx = zmq.Context()
    try:
        assert isinstance(recv(router), Ready)
        # Without the keys from the pipe, a local process gets no message through.
        stranger = stranger_ctx.socket(zmq.DEALER)
        stranger.setsockopt(zmq.LINGER, 0)
        stranger.connect(link.endpoint)
        stranger.send_multipart(encode(Heartbeat()))
        rgb = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        mask[4:12, 4:20] = 1
        hd = HDConfig(strategy=HDStrategy.ORIGINAL)
        settings = JobSettings(model="opencv-ns", hd=hd).to_dict()
        job = Job(job="j", kind="array", settings=settings, image_name="", mask_name="",
                  shape=[32, 32])  # fmt: skip
        router.send_multipart([b"w1", *encode(job, rgb.tobytes(), mask.tobytes())])
        deadline = time.monotonic() + 30
        while router.poll(int((deadline - time.monotonic()) * 1000)):
            frames = router.recv_multipart()
            assert frames[0] == b"w1"  # never the stranger
            msg, payload = decode(frames[1:])
            if isinstance(msg, Result):
                break
        else:
            raise AssertionError("no result")
        out = np.frombuffer(payload[0], np.uint8).reshape(32, 32, 3)
        assert np.array_equal(out, process_arrays(rgb, mask, create_model("opencv-ns"), hd))
        router.send_multipart([b"w1", *encode(Disconnect(reason="done"))])
        assert worker.process.wait(timeout=10) == 0
    finally:
        stop(worker)
        stranger_ctx.destroy(linger=0)


def test_a_worker_leaves_when_its_pipe_closes_while_its_parent_lives(
    tcp_link: tuple[WorkerLink, zmq.Socket],
) -> None:
    link, router = tcp_link
    worker = link.start(worker_command(link.endpoint, "w2", "cpu"), PIPE_ONLY)
    try:
        assert isinstance(recv(router), Ready)
        worker.close_pipe()  # what the OS does when the agent dies, on every platform
        assert worker.process.wait(timeout=10) == GONE_EXIT_CODE
    finally:
        stop(worker)


ORPHAN_MAKER = """
import os, sys, time, zmq
from lama_desktop.cluster.supervisor import worker_command
from lama_desktop.cluster.worker_link import WorkerLink
ctx = zmq.Context()
router = ctx.socket(zmq.ROUTER)
link = WorkerLink("tcp")
link.bind(router)
worker = link.start(worker_command(link.endpoint, "w3", "cpu"), dict(os.environ))
print(worker.pid, flush=True)
time.sleep(60)
"""


def test_an_orphaned_worker_exits_when_its_agent_is_killed() -> None:
    """SIGKILL the parent while the worker is still starting: no prctl, only the pipe."""
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_MAKER], env=PIPE_ONLY, stdout=subprocess.PIPE, text=True
    )
    worker: psutil.Process | None = None
    try:
        assert parent.stdout is not None
        worker = psutil.Process(int(parent.stdout.readline()))
        parent.kill()
        parent.wait(timeout=10)
        parent.stdout.close()
        worker.wait(timeout=15)  # raises TimeoutExpired if it lives on
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if worker is not None and worker.is_running():
            worker.kill()
