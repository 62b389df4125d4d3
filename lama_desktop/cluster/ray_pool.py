"""A worker pool of Ray actors on an existing Ray cluster, driven by a supervised subprocess.

`lama-agent --ray ADDRESS` runs this pool instead of worker processes. The Ray client lives in
one `ray_driver` subprocess under the same `WorkerSupervisor` as worker processes: a driver
that loses its cluster says why (DISCONNECT) and exits, a hung one is killed, and either is
restarted with backoff (0.5 s doubling to 30 s), so the agent retries the cluster for good while
its desktops see the node down with the reason. Slots are the driver's ready actors.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import zmq
import zmq.asyncio

from lama_desktop.cluster import hardware, worker_logs
from lama_desktop.cluster.agent_rundir import make_run_dir, remove_dead_run_dirs
from lama_desktop.cluster.pool import PoolListener, WorkerExit, WorkerPool
from lama_desktop.cluster.protocol import (
    Cancel,
    Disconnect,
    Failed,
    Heartbeat,
    Job,
    NodeInfo,
    ProtocolError,
    Ready,
    Result,
    decode,
)
from lama_desktop.cluster.ray_plan import ActorPlan, pool_label
from lama_desktop.cluster.routers import configure_router, send_now, serve_router
from lama_desktop.cluster.supervisor import ProcessLike, Spawn, WorkerSupervisor, describe_exit

log = logging.getLogger(__name__)

TICK_S = 0.05
RAY_MISSING = "Ray is not installed here: pip install 'lama-desktop[ray]'"


class RayPool(WorkerPool):
    """Ray actors as workers: one job per ready actor, bytes through the agent only."""

    def __init__(
        self,
        address: str,
        plan: ActorPlan,
        *,
        grace: float = 5.0,
        log_level: str = "INFO",
        max_message_bytes: int,
    ) -> None:
        self.address = address
        self.plan = plan
        self.grace = grace
        self.log_level = log_level
        self.max_message_bytes = max_message_bytes
        self.supervisor: WorkerSupervisor | None = None
        self._listener: PoolListener | None = None
        self._ready: Ready | None = None  # the driver's last READY (None: not connected)
        self._down: str | None = None  # why the cluster cannot be used now
        self._running: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._ipc_dir: Path | None = None
        self._own_info: NodeInfo | None = None

    def validate(self) -> None:
        # Found, not imported: importing Ray costs the agent a second and 100+ MB for nothing.
        if importlib.util.find_spec("ray") is None:
            raise ValueError(RAY_MISSING)

    async def start(self, listener: PoolListener) -> None:
        self._listener = listener
        self.context = zmq.asyncio.Context()
        remove_dead_run_dirs()  # left by agents killed before they could clean up
        self._ipc_dir = make_run_dir()  # mode 0700, with our pid inside
        self.back = self.context.socket(zmq.ROUTER)
        configure_router(self.back, self.max_message_bytes)
        endpoint = f"ipc://{self._ipc_dir / 'driver.sock'}"
        self.back.bind(endpoint)
        self.supervisor = WorkerSupervisor(self._spawner(endpoint), grace=self.grace)
        self.supervisor.set_count(["ray"], time.monotonic())
        self._own_info = hardware.node_info()
        self._tasks = [
            asyncio.create_task(
                serve_router(self.back, self._on_driver, "Ray driver"), name="ray-driver-link"
            ),
            asyncio.create_task(self._tick(), name="ray-driver-tick"),
        ]

    def _spawner(self, endpoint: str) -> Spawn:
        def spawn(worker_id: str, _device: str) -> ProcessLike:
            command = [
                sys.executable, "-m", "lama_desktop.cluster.ray_driver",
                "--connect", endpoint, "--id", worker_id, "--address", self.address,
                "--device", self.plan.device, "--cpus-per-actor", str(self.plan.cpus_per_actor),
                "--parent", str(os.getpid()),
            ]  # fmt: skip
            if self.plan.max_actors is not None:
                command += ["--max-actors", str(self.plan.max_actors)]
            env = dict(os.environ)
            env[worker_logs.LEVEL_ENV], env[worker_logs.FORWARD_ENV] = self.log_level, "1"
            process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE)
            assert process.stderr is not None
            worker_logs.forward(process.stderr, "ray-driver")  # ends when the driver does
            return process

        return spawn

    async def stop(self) -> None:
        assert self.supervisor is not None, "start() first"
        for slot in self.supervisor.slots.values():
            if slot.process is not None:
                self._send(slot.worker_id, Disconnect(reason="agent stopping"))
        self.supervisor.stop_all(time.monotonic())
        while not self.supervisor.all_stopped():
            await asyncio.sleep(TICK_S)  # the tick collects the exit (and fails running jobs)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.back.close(linger=200)
        self.context.term()
        if self._ipc_dir is not None:
            shutil.rmtree(self._ipc_dir, ignore_errors=True)
        self.supervisor = None

    def slots(self) -> int:
        if self._down is not None or self._ready is None:
            return 0
        return self._ready.slots

    def models(self) -> list[str]:
        return list(self._ready.models) if self._ready is not None else []

    def info(self) -> NodeInfo:
        return self._ready.info if self._ready is not None else self._placeholder_info()

    def _placeholder_info(self) -> NodeInfo:
        assert self._own_info is not None, "start() first"
        own = self._own_info
        return NodeInfo(
            hostname=own.hostname, os=own.os, cpu_model=own.cpu_model, cores=own.cores,
            ram_total=own.ram_total, engines=own.engines, pool=pool_label(0, 0),
        )  # fmt: skip

    def describe(self) -> str:
        return f"Ray actors on the cluster at {self.address}"

    def unavailable(self) -> str | None:
        return self._down

    def submit(self, job: Job, payload: list[object]) -> str | None:
        if len(self._running) >= self.slots() or not self._driver_up():
            return None
        assert self.supervisor is not None
        driver = next(iter(self.supervisor.slots))
        if not self._send(driver, job, list(payload)):
            return None
        self._running.add(job.job)
        return driver

    def cancel(self, worker: str, job: str) -> None:
        if job in self._running:
            self._send(worker, Cancel(job=job))

    def set_workers(self, count: int) -> None:
        raise ValueError("a Ray pool follows its cluster; cap it with --workers when starting")

    def beat(self) -> None:
        assert self.supervisor is not None
        for slot in self.supervisor.slots.values():
            if slot.process is not None:
                self._send(slot.worker_id, Heartbeat())

    # -- the driver link ------------------------------------------------------------------------

    def _driver_up(self) -> bool:
        assert self.supervisor is not None
        return any(s.process is not None for s in self.supervisor.slots.values())

    def _send(self, worker_id: str, msg: object, payload: list[object] | None = None) -> bool:
        return send_now(self.back, worker_id.encode(), msg, payload or [])

    def _on_driver(self, frames: list[zmq.Frame]) -> None:
        assert self.supervisor is not None and self._listener is not None
        driver = frames[0].bytes.decode("utf-8", "replace")
        if self.supervisor.heard_from(driver, time.monotonic()) is None:
            return  # a driver we no longer run
        try:
            msg, payload = decode(frames[1:], max_frame_bytes=self.max_message_bytes)
        except ProtocolError as exc:
            log.warning("dropped a bad message from the Ray driver: %s", exc)
            return
        if isinstance(msg, Ready):
            self.supervisor.mark_ready(driver, msg.models)
            if self._down is not None:
                log.info("Ray cluster at %s reachable again", self.address)
            self._ready, self._down = msg, None
            log.info("Ray pool: %s, models %s", msg.info.pool, msg.models)
            self._listener.workers_changed()
        elif isinstance(msg, Disconnect):
            self._lost(msg.reason)
        elif isinstance(msg, Result | Failed) and msg.job in self._running:
            self._running.discard(msg.job)
            if isinstance(msg, Failed) and (msg.crashed or msg.cancelled):
                exit = WorkerExit(msg.job, msg.reason, msg.crashed, msg.cancelled)
                self._listener.worker_exited(exit)
            else:
                self._listener.job_answered(driver, msg, list(payload))
            self._listener.workers_free()

    def _lost(self, reason: str) -> None:
        """The cluster is gone: the node goes down (desktops told first), then its jobs fail."""
        assert self._listener is not None
        if self._down is None:
            log.error("Ray pool down: %s; retrying with backoff", reason)
        self._down, self._ready = reason, None
        self._listener.workers_changed()
        self._fail_running(reason)

    def _fail_running(self, reason: str) -> None:
        assert self._listener is not None
        for job in sorted(self._running):
            self._listener.worker_exited(WorkerExit(job, reason, crashed=False, cancelled=False))
        self._running.clear()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            assert self.supervisor is not None
            try:
                for event in self.supervisor.tick(time.monotonic()):
                    if event.crashed:  # it lost the cluster, hung, or died: retried with backoff
                        exit = describe_exit(event.returncode).replace("worker", "Ray driver")
                        self._lost(self._down or f"lost the Ray cluster at {self.address} ({exit})")
                    else:
                        self._fail_running("agent stopping")
            except Exception:  # one bad tick must not end restarts for good
                log.exception("Ray pool tick failed")
