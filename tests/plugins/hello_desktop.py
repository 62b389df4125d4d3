"""A desktop in its own process, for tests that freeze it (SIGSTOP stops libzmq's threads too).

    python -m tests.plugins.hello_desktop ENDPOINT SERVER_KEY PUBLIC SECRET

Says HELLO to the agent until READY, prints "ready", then sends a heartbeat every 0.1 s.
"""

from __future__ import annotations

import contextlib
import sys
import time

import zmq

from lama_desktop.cluster.protocol import Heartbeat, Hello, Ready, decode, encode


def main() -> None:
    endpoint, server, public, secret = sys.argv[1:5]
    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.CURVE_SERVERKEY, server.encode())
    sock.setsockopt(zmq.CURVE_PUBLICKEY, public.encode())
    sock.setsockopt(zmq.CURVE_SECRETKEY, secret.encode())
    sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
    sock.setsockopt(zmq.CONNECT_ROUTING_ID, b"node")
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    ready = False
    while True:
        message = Heartbeat() if ready else Hello(desktop="frozen", name="frozen desktop")
        with contextlib.suppress(zmq.ZMQError):  # not connected yet
            sock.send_multipart([b"node", *encode(message)], flags=zmq.DONTWAIT)
        deadline = time.monotonic() + 0.1
        while (left := deadline - time.monotonic()) > 0 and sock.poll(int(left * 1000)):
            msg, _ = decode(sock.recv_multipart()[1:])
            if isinstance(msg, Ready) and not ready:
                ready = True
                print("ready", flush=True)


if __name__ == "__main__":
    main()
