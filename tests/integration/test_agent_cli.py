"""`lama-agent` as a real process: link on start, pair/keys subcommands, drain on SIGTERM."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import psutil
import pytest
import zmq
import zmq.asyncio
from PIL import Image

from lama_desktop.cluster import hardware
from lama_desktop.cluster.keys import AuthorizedKeys, PairingLink
from lama_desktop.cluster.pairing_session import request_pairing
from lama_desktop.cluster.protocol import (
    Disconnect,
    Heartbeat,
    Hello,
    Job,
    Ready,
    Result,
    decode,
    encode,
)
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.pipeline import JobSettings
from tests.plugins.crashy_engine import PAUSE_MARKER

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def agent_cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "lama_desktop.cluster.agent_cli",
            *args,
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )


def start_agent(data_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """Run lama-agent on a free loopback port; its log goes to DATA_DIR/../agent.err."""
    data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, LAMA_PLUGINS="tests.plugins.crashy_engine", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "lama_desktop.cluster.agent_cli", "--bind"]
    command += ["tcp://127.0.0.1:0", "--data-dir", str(data_dir), "--no-announce", *extra]
    with (data_dir.parent / "agent.err").open("w") as log:  # the child keeps its own copy
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, env=env)


def read_link(process: subprocess.Popen[str]) -> PairingLink:
    assert process.stdout is not None
    for _ in range(5):
        line = process.stdout.readline()
        if line.startswith("lama://"):
            return PairingLink.parse(line)
    raise AssertionError("no pairing link printed")


def pair(link: PairingLink, public: bytes, name: str) -> str:
    """Pair `public` as a desktop does (a connection made with the code's pairing key)."""

    async def run() -> str:
        ctx = zmq.asyncio.Context()
        try:
            return await request_pairing(
                ctx, link, desktop_key=public, desktop_name=name, timeout=10
            )
        finally:
            ctx.term()

    return asyncio.run(run())


class Client:
    """A blocking Curve ROUTER client, enough for one desktop's conversation."""

    def __init__(self, ctx: zmq.Context, link: PairingLink, name: str | None = None) -> None:
        public, secret = zmq.curve_keypair()
        self.public = public
        self.paired_with = pair(link, public, name) if name else None
        self.sock = ctx.socket(zmq.ROUTER)
        self.sock.curve_secretkey, self.sock.curve_publickey = secret, public
        self.sock.curve_serverkey = link.server_key.encode()
        self.sock.setsockopt(zmq.CONNECT_ROUTING_ID, b"node")
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(link.address)

    def send(self, msg: object, *payload: bytes) -> None:
        self.sock.send_multipart([b"node", *encode(msg, *payload)])  # type: ignore[arg-type]

    def recv(self, timeout: float = 10.0) -> tuple[object, list[bytes]]:
        deadline = time.monotonic() + timeout
        while self.sock.poll(int(max(deadline - time.monotonic(), 0) * 1000)):
            frames = self.sock.recv_multipart()
            msg, payload = decode(frames[1:])
            if not isinstance(msg, Heartbeat | Ready):
                return msg, [bytes(p) for p in payload]
        raise TimeoutError("agent did not answer")


def png(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return out.getvalue()


def test_agent_prints_a_link_pairs_drains_on_sigterm_and_exits_0(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    process = start_agent(data_dir, "--workers", "1", "--device", "cpu", "--name", "spare-box")
    ctx = zmq.Context()
    try:
        link = read_link(process)
        assert link.host == "127.0.0.1" and link.code
        client = Client(ctx, link, name="Studio PC")  # paired first, then connected
        assert client.paired_with == "spare-box"
        assert [k.name for k in AuthorizedKeys(data_dir / "authorized_keys").list()] == [
            "Studio PC"
        ]
        # `lama-agent pair` issues a fresh code to the running agent through its data folder.
        fresh = agent_cli("pair", data_dir=data_dir)
        assert fresh.returncode == 0, fresh.stderr
        fresh_link = PairingLink.parse(fresh.stdout)
        assert fresh_link.port == link.port and fresh_link.code != link.code
        assert (data_dir / "pairing-codes" / fresh_link.code).exists()
        listed = agent_cli("keys", "list", data_dir=data_dir)
        assert "Studio PC" in listed.stdout and client.public.decode() in listed.stdout
        # A job that takes 1.5 s is running when SIGTERM arrives: it finishes, then the agent exits.
        client.send(Hello(desktop="d", name="Studio PC"))
        rgb = np.full((32, 32, 3), 90, np.uint8)
        rgb[0, 0] = PAUSE_MARKER
        mask = np.zeros((32, 32), np.uint8)
        mask[8:16, 8:16] = 255
        settings = JobSettings(model="crashy", hd=HDConfig(strategy=HDStrategy.ORIGINAL))
        job = Job(job="slow", kind="file", settings=settings.to_dict(), image_name="a.png",
                  mask_name="m.png")  # fmt: skip
        quick = msgspec.structs.replace(job, job="quick")
        plain = rgb.copy()
        plain[0, 0] = (1, 2, 3)
        client.send(quick, png(plain), png(mask))  # its answer proves a worker is ready
        reply, _ = client.recv(timeout=20)
        assert isinstance(reply, Result) and reply.job == "quick", reply
        client.send(job, png(rgb), png(mask))
        time.sleep(0.5)  # an idle worker gets the job at once; it takes 1.5 s
        process.send_signal(signal.SIGTERM)
        reply, payload = client.recv(timeout=15)
        assert isinstance(reply, Result) and reply.job == "slow", reply
        assert payload[0].startswith(b"\x89PNG")
        goodbye, _ = client.recv(timeout=10)
        assert isinstance(goodbye, Disconnect)
        assert process.wait(timeout=15) == 0
        log = (data_dir / "agent.log").read_text()
        assert "listening on tcp://127.0.0.1:" in log and "paired desktop Studio PC" in log
        assert log.strip().endswith("agent spare-box stopped")
        # Revoking the desktop's key by name, after the agent is gone.
        revoked = agent_cli("keys", "revoke", "Studio PC", data_dir=data_dir)
        assert revoked.returncode == 0 and "Revoked" in revoked.stdout
        assert AuthorizedKeys(data_dir / "authorized_keys").list() == []
        assert agent_cli("keys", "revoke", "nobody", data_dir=data_dir).returncode == 1
        assert agent_cli("pair", data_dir=data_dir).returncode == 1  # no agent running now
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()
        ctx.destroy(linger=0)
    assert not psutil.pid_exists(process.pid) or psutil.Process(process.pid).status() == "zombie"


def test_port_in_use_and_bad_arguments_give_clear_errors(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        result = subprocess.run(
            [sys.executable, "-m", "lama_desktop.cluster.agent_cli", "--bind",
             f"tcp://127.0.0.1:{port}", "--data-dir", str(tmp_path), "--no-announce",
             "--workers", "0"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    finally:
        taken.close()
    assert result.returncode == 1
    assert f"cannot listen on tcp://127.0.0.1:{port}" in result.stderr
    assert "in use" in result.stderr
    bad = agent_cli("--bind", "127.0.0.1:7890", data_dir=tmp_path)
    assert bad.returncode == 2 and "tcp://HOST:PORT" in bad.stderr
    bad = agent_cli("--workers", "many", data_dir=tmp_path)
    assert bad.returncode == 2 and "--workers" in bad.stderr
    if hardware.gpu_count() == 0:
        bad = agent_cli("--device", "cuda:0", "--no-announce", data_dir=tmp_path)
        assert bad.returncode == 2 and "no NVIDIA GPU" in bad.stderr
