"""The Ray driver subprocess: Ray actors on an existing cluster, run for the agent's RayPool.

Run as `python -m lama_desktop.cluster.ray_driver --connect ipc://... --address ADDRESS`.
Ray's client library blocks without end once a cluster's head is gone (ray.init, resource
queries, actor creation), so it lives in this process, never in the agent: the agent's
supervisor kills a silent driver and restarts it with backoff, and the agent stays up.

It speaks the worker protocol to the pool over a private ipc:// socket: READY whenever the live
actors change (slots = actors ready, `info.pool` = "Ray: N actors on M nodes"), RESULT or
FAILED per job (FAILED crashed=True when its actor died), HEARTBEAT, and DISCONNECT(reason)
just before it exits because the cluster cannot be reached or its actors cannot start.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import logging
import os
import queue
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import ray
import zmq

from lama_desktop.cluster.protocol import (
    MAX_MESSAGE_BYTES,
    Cancel,
    Disconnect,
    Failed,
    Heartbeat,
    Job,
    NodeInfo,
    ProtocolError,
    Ready,
    decode,
    encode,
)
from lama_desktop.cluster.ray_actor import InpaintActor
from lama_desktop.cluster.ray_plan import ActorPlan, cluster_info
from lama_desktop.cluster.worker import _die_with_parent
from lama_desktop.cluster.worker_logs import setup_worker_logging

log = logging.getLogger("lama_desktop.ray_driver")

CONNECT_TIMEOUT_S = 20.0
LOOK_EVERY_S = 1.0  # how often the cluster's resources are read (autoscaling, lost nodes)
LOOK_TIMEOUT_S = 5.0  # a resource read this slow means the cluster's head is gone
MAX_START_FAILURES = 3  # actors that die before READY in a row, with none ready: give up
MIN_SILENCE_S = 10.0
EXIT_UNREACHABLE = 4


def first_line(exc: BaseException) -> str:
    """An exception as one short line (Ray's errors run to pages)."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


@dataclass
class ActorSlot:
    """One Ray actor: its handle, whether it said READY, and the job it runs."""

    name: str
    handle: Any
    ready: bool = False
    models: list[str] = field(default_factory=list)
    node: str = ""
    info: NodeInfo | None = None
    job: str | None = None
    cancelled: bool = False


class RayDriver:
    """Connects, sizes the actor set to the cluster, runs jobs; one thread owns the socket."""

    def __init__(
        self, sock: zmq.Socket, address: str, plan: ActorPlan, heartbeat: float, parent: int
    ) -> None:
        self.socket = sock
        self.address = address
        self.plan = plan
        self.heartbeat = heartbeat
        self.parent = parent
        self.silence = max(3 * heartbeat, MIN_SILENCE_S)
        self.plugins = os.environ.get("LAMA_PLUGINS", "")
        self.actors: dict[str, ActorSlot] = {}
        self.remote: Any = None
        self._next = 0
        self._failures = 0
        self._last_failure = ""
        self._announced: tuple[int, list[str], int] | None = None
        # Ray's callbacks (another thread) hand finished calls over through this queue and
        # wake the main loop with a byte, so no answer waits for a poll timeout.
        self._done: queue.SimpleQueue[tuple[str, str, concurrent.futures.Future[Any]]]
        self._done = queue.SimpleQueue()
        self._wake_read, self._wake_write = socket.socketpair()
        self._wake_read.setblocking(False)
        self._calls = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ray-look")

    def _send(self, msg: Any, payload: list[bytes] | None = None) -> None:
        self.socket.send_multipart(encode(msg, *(payload or [])), copy=False)

    def _wake(self, kind: str, name: str, future: concurrent.futures.Future[Any]) -> None:
        self._done.put((kind, name, future))
        with contextlib.suppress(OSError):
            self._wake_write.send(b"!")

    # -- the main loop --------------------------------------------------------------------------

    def run(self) -> int:
        """Serve the pool until it says stop, goes away, or the cluster is lost; the exit code."""
        reason = self._connect()
        if reason is not None:
            return self._give_up(reason)
        self.remote = ray.remote(InpaintActor)
        self._announce(force=True)
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_read, zmq.POLLIN)
        look: concurrent.futures.Future[dict[str, float]] | None = None
        look_at = last_heard = last_sent = time.monotonic()
        while True:
            now = time.monotonic()
            if now - last_heard > self.silence or os.getppid() != self.parent:
                log.warning("ray driver: agent gone; exiting")
                return 3
            if now - last_sent >= self.heartbeat:
                self._send(Heartbeat())
                last_sent = now
            if look is None and now >= look_at:
                look, look_at = self._calls.submit(ray.cluster_resources), now
            elif look is not None and look.done():
                try:
                    self._resize(look.result())
                except Exception as exc:  # a failed read is a cluster we cannot talk to
                    return self._give_up(f"lost the Ray cluster at {self.address}: "
                                         f"{first_line(exc)}")  # fmt: skip
                look, look_at = None, now + LOOK_EVERY_S
            elif look is not None and now - look_at > LOOK_TIMEOUT_S:
                return self._give_up(
                    f"lost the Ray cluster at {self.address}: no answer for {LOOK_TIMEOUT_S:.0f} s"
                )
            while not self._done.empty():
                reason = self._finished(*self._done.get())
                if reason is not None:
                    return self._give_up(reason)
            ready = dict(poller.poll(timeout=int(min(self.heartbeat, LOOK_EVERY_S) * 1000)))
            if self._wake_read.fileno() in ready:
                with contextlib.suppress(BlockingIOError):
                    self._wake_read.recv(4096)
            if self.socket not in ready:
                continue
            frames = self.socket.recv_multipart(copy=False)
            last_heard = time.monotonic()
            try:
                msg, payload = decode(frames, max_frame_bytes=MAX_MESSAGE_BYTES)
            except ProtocolError as exc:
                log.warning("ray driver: dropped a bad message: %s", exc)
                continue
            if isinstance(msg, Disconnect):
                log.info("ray driver: asked to stop (%s)", msg.reason)
                ray.shutdown()  # our actors end with their driver
                return 0
            if isinstance(msg, Job):
                self._start_job(msg, payload)
            elif isinstance(msg, Cancel):
                self._cancel(msg.job)

    def _connect(self) -> str | None:
        """ray.init in a thread (it can block for good); None once connected, else why not."""
        started = time.monotonic()
        init = self._calls.submit(
            ray.init,
            address=self.address,
            namespace="lama-desktop",
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        while time.monotonic() - started < CONNECT_TIMEOUT_S:
            try:
                init.result(timeout=self.heartbeat)
            except concurrent.futures.TimeoutError:
                self._send(Heartbeat())  # still connecting: the supervisor must not kill us
                continue
            except Exception as exc:
                return f"cannot reach the Ray cluster at {self.address}: {first_line(exc)}"
            log.info("ray driver: connected to %s", self.address)
            return None
        return f"the Ray cluster at {self.address} did not answer in {CONNECT_TIMEOUT_S:.0f} s"

    def _give_up(self, reason: str) -> int:
        log.error("ray driver: %s", reason)
        self._send(Disconnect(reason=reason))
        return EXIT_UNREACHABLE

    # -- actors ---------------------------------------------------------------------------------

    def _resize(self, resources: dict[str, float]) -> None:
        """Follow the cluster: start actors it has room for, retire those it has lost room for."""
        count, options, device = self.plan.size(resources)
        missing = count - len(self.actors)
        for _ in range(max(missing, 0)):
            name = f"ray-a{self._next}"
            self._next += 1
            threads = int(options.get("num_cpus", 1)) if device == "cpu" else None
            handle = self.remote.options(max_restarts=0, **options).remote(
                name, device, threads, self.plugins
            )
            self.actors[name] = ActorSlot(name, handle)
            handle.ready.remote().future().add_done_callback(
                lambda f, n=name: self._wake("ready", n, f)
            )
        # Too many (a node left, a GPU went away): idle actors go, those not ready first.
        idle = [a for a in self.actors.values() if a.job is None]
        for slot in sorted(idle, key=lambda a: a.ready)[: max(-missing, 0)]:
            self._drop(slot)

    def _drop(self, slot: ActorSlot) -> None:
        self.actors.pop(slot.name, None)
        with contextlib.suppress(Exception):  # it may be dead already
            ray.kill(slot.handle, no_restart=True)
        self._announce()

    def _finished(self, kind: str, name: str, future: concurrent.futures.Future[Any]) -> str | None:
        """A READY or a job came back from actor `name`; a reason to give up, else None."""
        slot = self.actors.get(name)
        if slot is None:
            return None  # dropped meanwhile
        if kind == "ready":
            try:
                slot.models, slot.node, slot.info = future.result()
            except Exception as exc:
                self._failures += 1
                self._last_failure = first_line(exc)
                log.error("ray actor %s did not start: %s", name, self._last_failure)
                self._drop(slot)
                if self._failures >= MAX_START_FAILURES and not any(
                    a.ready for a in self.actors.values()
                ):
                    return f"Ray actors cannot start on {self.address}: {self._last_failure}"
                return None
            slot.ready, self._failures = True, 0
            self._announce()
            return None
        job, slot.job = slot.job or "", None
        try:
            reply, output = future.result()
        except Exception as exc:  # the actor died (killed, out of memory, its node lost)
            if slot.cancelled:
                reply = Failed(job=job, reason="cancelled", cancelled=True)
            else:
                log.error("ray actor %s died running job %s: %s", name, job, first_line(exc))
                reason = f"Ray actor {name} died: {first_line(exc)}"
                reply = Failed(job=job, reason=reason, crashed=True)
            output = []
            self._drop(slot)
        self._send(reply, output)
        return None

    def _start_job(self, msg: Job, payload: list[Any]) -> None:
        free = [a for a in self.actors.values() if a.ready and a.job is None]
        if not free:  # an actor died since the pool counted its slots: the job goes elsewhere
            self._send(Failed(job=msg.job, reason="no free Ray actor", declined=True))
            return
        slot = free[0]
        slot.job, slot.cancelled = msg.job, False
        ref = slot.handle.run.remote(msg, bytes(payload[0]), bytes(payload[1]))
        ref.future().add_done_callback(lambda f, n=slot.name: self._wake("run", n, f))

    def _cancel(self, job: str) -> None:
        for slot in self.actors.values():
            if slot.job == job:
                # An actor call cannot be interrupted: the actor goes, and a new one replaces it.
                slot.cancelled = True
                with contextlib.suppress(Exception):
                    ray.kill(slot.handle, no_restart=True)

    def _announce(self, force: bool = False) -> None:
        """READY to the pool when the ready actors, their models or their nodes changed."""
        ready = [a for a in self.actors.values() if a.ready]
        models = sorted(set.intersection(*(set(a.models) for a in ready))) if ready else []
        nodes = {a.node: a.info for a in ready if a.info is not None}
        key = (len(ready), models, len(nodes))
        if key == self._announced and not force:
            return
        self._announced = key
        info = cluster_info(self.address, len(ready), nodes, gpus=self.plan.uses_gpus(ready))
        self._send(Ready(node="ray", info=info, slots=len(ready), models=models, version=""))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the Ray driver subprocess."""
    parser = argparse.ArgumentParser(prog="lama-ray-driver", description=__doc__)
    parser.add_argument("--connect", required=True, help="the agent's ipc:// endpoint")
    parser.add_argument("--id", required=True, help="this driver's routing id")
    parser.add_argument("--address", required=True, help="the Ray cluster, or auto")
    parser.add_argument("--device", default="auto", help="auto (GPUs if any) or cpu")
    parser.add_argument("--cpus-per-actor", type=float, default=4.0)
    parser.add_argument("--max-actors", type=int, default=None)
    parser.add_argument("--heartbeat", type=float, default=1.0)
    parser.add_argument("--parent", type=int, default=0, help="the agent's pid")
    args = parser.parse_args(argv)
    _die_with_parent()
    parent = args.parent or os.getppid()
    if os.getppid() != parent:
        return 3
    setup_worker_logging("ray-driver")  # JSON lines that the agent logs again
    context = zmq.Context()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.ROUTING_ID, args.id.encode())
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    sock.setsockopt(zmq.LINGER, 1000)
    sock.setsockopt(zmq.SNDTIMEO, 5000)
    sock.connect(args.connect)
    plan = ActorPlan(args.device, args.cpus_per_actor, args.max_actors)
    try:
        code = RayDriver(sock, args.address, plan, args.heartbeat, parent).run()
    except zmq.Again:
        log.error("ray driver: agent not answering; exiting")
        code = 3
    sock.close(linger=1000)
    context.term()
    # Ray's threads may be stuck on a dead cluster; do not wait for them.
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
