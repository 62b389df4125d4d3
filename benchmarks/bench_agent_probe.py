"""What a stranger can make an agent hold before authenticating (JSON on stdout).

Starts a real `lama-agent` (no workers) on 127.0.0.1, measures its RSS, then opens N raw TCP
connections that each send a ZMTP 3 greeting asking for CURVE and one handshake command whose
header claims `--claim` bytes, followed by that many bytes less one, and then stall: the most
a peer can make libzmq buffer before the Curve handshake (and so ZAP) can finish. Reports the
agent's RSS growth with the stalled connections open, how many the agent cut, and whether a
paired desktop is still served meanwhile.

Before issue 8 the agent's MAXMSGSIZE was 256 MiB on its public socket: a claim of 268 MB made
it hold about 250 MB per connection (four connections: 909 MB). Goal: 8 stalled connections
leave the agent under +64 MB and serving paired desktops.

    python benchmarks/bench_agent_probe.py [--connections 8] [--claim BYTES]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import zmq
import zmq.asyncio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from lama_desktop.cluster import protocol as p  # noqa: E402
from lama_desktop.cluster.keys import PairingLink  # noqa: E402
from lama_desktop.cluster.pairing_session import request_pairing  # noqa: E402

GREETING = b"\xff" + b"\x00" * 8 + b"\x7f" + b"\x03\x00" + b"CURVE".ljust(20, b"\x00")
GREETING += b"\x00" + b"\x00" * 31  # as-server = 0, filler: 64 bytes in all


def stalled_handshake(host: str, port: int, claim: int, send: int) -> socket.socket:
    """A connection that claims a `claim`-byte handshake command, sends `send` bytes of it, stalls.

    The caller closes the socket. Sending stops early if the agent closes the connection.
    """
    sock = socket.create_connection((host, port), timeout=5)
    chunk = b"\x00" * 65536
    sent = 0
    try:
        sock.sendall(GREETING)
        sock.sendall(bytes([0x06]) + struct.pack(">Q", claim))  # command frame, 8-byte size
        while sent < send:
            sent += sock.send(chunk[: min(len(chunk), send - sent)])
    except OSError:
        pass  # the agent cut it: exactly what a bound should do
    return sock


def start_agent(data_dir: Path) -> tuple[subprocess.Popen[str], PairingLink]:
    command = [sys.executable, "-m", "lama_desktop.cluster.agent_cli", "--bind"]
    command += ["tcp://127.0.0.1:0", "--data-dir", str(data_dir), "--no-announce"]
    command += ["--workers", "0"]
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert process.stdout is not None
    for _ in range(10):
        line = process.stdout.readline()
        if line.startswith("lama://"):
            return process, PairingLink.parse(line)
    process.kill()
    raise RuntimeError("the agent printed no pairing link")


async def paired_desktop_served(link: PairingLink) -> bool:
    """Pair a fresh key with the link, connect with it, and get READY within 5 s."""
    public, secret = zmq.curve_keypair()
    ctx = zmq.asyncio.Context()
    try:
        await request_pairing(ctx, link, desktop_key=public, desktop_name="probe", timeout=10)
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.curve_secretkey, sock.curve_publickey = secret, public
        sock.curve_serverkey = link.server_key.encode()
        sock.connect(link.address)
        await sock.send_multipart(p.encode(p.Hello(desktop="probe", name="probe")))
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if await sock.poll(500):
                msg, _ = p.decode(await sock.recv_multipart())
                if isinstance(msg, p.Ready):
                    sock.close()
                    return True
        sock.close()
        return False
    finally:
        ctx.term()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--claim", type=int, default=268_000_000)
    parser.add_argument("--quick", action="store_true", help="(same run; kept for run_all)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, link = start_agent(Path(tmp))
        agent = psutil.Process(process.pid)
        try:
            time.sleep(1.0)
            before = agent.memory_info().rss
            results = {}
            for claim in (args.claim, p.FRAME_BYTES - 64):
                socks = [
                    stalled_handshake(link.host, link.port, claim, min(claim - 1, 300_000_000))
                    for _ in range(args.connections)
                ]
                time.sleep(1.0)
                peak = agent.memory_info().rss
                served = asyncio.run(paired_desktop_served(link)) if claim == args.claim else None
                for sock in socks:
                    sock.close()
                results[str(claim)] = {
                    "rss_added_mb": round((peak - before) / 2**20, 1),
                    "paired_desktop_served": served,
                }
            goal_mb = 64
            worst = max(r["rss_added_mb"] for r in results.values())
            print(
                json.dumps(
                    {
                        "benchmark": "agent_unauthenticated_memory",
                        "connections": args.connections,
                        "frame_limit_bytes": p.FRAME_BYTES,
                        "agent_rss_before_mb": round(before / 2**20, 1),
                        "by_claimed_bytes": results,
                        "worst_rss_added_mb": worst,
                        "goal_rss_added_mb": goal_mb,
                        "goal_met": worst < goal_mb
                        and bool(results[str(args.claim)]["paired_desktop_served"]),
                    },
                    indent=2,
                )
            )
        finally:
            process.terminate()
            process.wait(timeout=15)


if __name__ == "__main__":
    main()
