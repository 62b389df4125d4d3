"""The private agent-to-worker link: ipc:// where the OS has it, else tcp on 127.0.0.1 with Curve.

Windows has no ipc:// in ZeroMQ, so there the workers connect over loopback TCP, which any local
user could reach; Curve with keys made fresh for each agent run keeps them out (a client must
know the server's public key, and it is only ever written to the workers' stdin). The stdin pipe
stays open for the worker's life: it is also how a worker learns that its agent is gone
(see parent_watch). LAMA_WORKER_TRANSPORT=tcp forces the portable path on Linux and macOS too.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

import zmq

from lama_desktop.cluster.agent_rundir import make_run_dir

TRANSPORT_ENV = "LAMA_WORKER_TRANSPORT"  # "ipc", "tcp" or unset (ipc where available)
# Set on a worker started through a WorkerLink: its stdin carries the link's keys, then EOF
# when the agent is gone.
LINK_ENV = "LAMA_WORKER_LINK"
WORKER_FLAG = "--lama-worker"  # argv[1] of a frozen executable started as a worker


def launcher() -> list[str]:
    """How to start a worker: the frozen executable itself, or this Python with the module."""
    if getattr(sys, "frozen", False):
        return [sys.executable, WORKER_FLAG]
    return [sys.executable, "-m", "lama_desktop.cluster.worker"]


def choose_transport(environ: dict[str, str] | None = None) -> str:
    """The link's transport, ipc or tcp: the switch first, else ipc wherever the OS has it."""
    env = os.environ if environ is None else environ
    forced = env.get(TRANSPORT_ENV, "").strip().lower()
    if forced in ("ipc", "tcp"):
        return forced
    if forced:
        raise ValueError(f"{TRANSPORT_ENV} must be ipc or tcp, not {forced!r}")
    return "ipc" if os.name == "posix" and zmq.has("ipc") else "tcp"


class LinkedProcess:
    """A worker process and the write end of its stdin pipe, closed once the process is gone."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.pid = process.pid

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None:
            self.close_pipe()
        return code

    def send_signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def kill(self) -> None:
        self.process.kill()

    def close_pipe(self) -> None:
        pipe: IO[bytes] | None = self.process.stdin
        if pipe is not None and not pipe.closed:
            with contextlib.suppress(OSError):  # the worker may already have gone
                pipe.close()


class WorkerLink:
    """The agent's end: binds the ROUTER the workers connect to and starts them."""

    def __init__(self, transport: str | None = None) -> None:
        self.transport = transport or choose_transport()
        self.endpoint = ""
        self._dir: Path | None = None
        self._server: tuple[bytes, bytes] | None = None  # (public, secret)
        self._client: tuple[bytes, bytes] | None = None

    def bind(self, sock: zmq.Socket) -> str:
        """Secure and bind `sock`; returns the endpoint workers connect to."""
        if self.transport == "ipc":
            self._dir = make_run_dir()  # mode 0700, with our pid inside
            sock.bind(f"ipc://{self._dir / 'workers.sock'}")
        else:
            self._server = zmq.curve_keypair()
            self._client = zmq.curve_keypair()
            sock.setsockopt(zmq.CURVE_SERVER, 1)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self._server[1])
            sock.bind("tcp://127.0.0.1:*")
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def secrets(self) -> dict[str, str]:
        """What a worker needs besides the endpoint (the Curve keys on tcp), as one JSON line."""
        if self._server is None or self._client is None:
            return {}
        return {
            "server_public": self._server[0].decode(),
            "public": self._client[0].decode(),
            "secret": self._client[1].decode(),
        }

    def start(self, command: list[str], env: dict[str, str], **popen: Any) -> LinkedProcess:
        """Start a worker with its stdin as the link's pipe: the keys, then held open."""
        env = {**env, LINK_ENV: "1"}
        process = subprocess.Popen(command, env=env, stdin=subprocess.PIPE, **popen)
        linked = LinkedProcess(process)
        assert process.stdin is not None
        try:
            process.stdin.write(json.dumps(self.secrets()).encode() + b"\n")
            process.stdin.flush()
        except OSError:  # it died at once; the supervisor collects the exit
            linked.close_pipe()
        return linked

    def close(self) -> None:
        """Remove the ipc socket's folder (the keys die with this object)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def secure_worker_socket(sock: zmq.Socket, secrets: dict[str, str]) -> None:
    """The worker's end: a Curve client when the link gave keys (tcp), nothing on ipc."""
    if secrets:
        sock.setsockopt(zmq.CURVE_SERVERKEY, secrets["server_public"].encode())
        sock.setsockopt(zmq.CURVE_PUBLICKEY, secrets["public"].encode())
        sock.setsockopt(zmq.CURVE_SECRETKEY, secrets["secret"].encode())
