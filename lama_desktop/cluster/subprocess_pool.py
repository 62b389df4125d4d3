"""Today's worker pool: worker subprocesses under a WorkerSupervisor, behind a private ROUTER."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Literal

import zmq
import zmq.asyncio

from lama_desktop.cluster import hardware
from lama_desktop.cluster.agent_rundir import remove_dead_run_dirs
from lama_desktop.cluster.pool import PoolListener, WorkerExit, WorkerPool
from lama_desktop.cluster.protocol import (
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
from lama_desktop.cluster.routers import configure_router, send_now, serve_router
from lama_desktop.cluster.supervisor import (
    WorkerStatus,
    WorkerSupervisor,
    describe_exit,
    plan_workers,
    popen_spawner,
)
from lama_desktop.cluster.worker_link import WorkerLink

log = logging.getLogger(__name__)

TICK_S = 0.05  # how often worker exits and restarts are looked at


class SubprocessPool(WorkerPool):
    """One worker process per slot, on a private link (ipc://, or loopback tcp with Curve)."""

    def __init__(
        self,
        workers: int | Literal["auto"] | str = "auto",
        device: str = "auto",
        *,
        grace: float = 5.0,
        log_level: str = "INFO",
        max_message_bytes: int,
    ) -> None:
        self.device = device
        self.grace = grace
        self.log_level = log_level
        self.max_message_bytes = max_message_bytes
        self._wanted = workers
        self._plan: tuple[list[str], int | None] = ([], None)
        self._models: list[str] = []
        self._info: NodeInfo | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._link: WorkerLink | None = None
        self._listener: PoolListener | None = None
        self.supervisor: WorkerSupervisor | None = None

    def validate(self) -> None:
        self._plan = plan_workers(self._wanted, self.device)

    async def start(self, listener: PoolListener) -> None:
        devices, threads = self._plan
        self._listener = listener
        # Workers get their own context: the agent's ZAP handler lives on its context, and
        # the private ipc link must never depend on it.
        self.context = zmq.asyncio.Context()
        remove_dead_run_dirs()  # left by agents killed before they could clean up
        self.back = self.context.socket(zmq.ROUTER)
        configure_router(self.back, self.max_message_bytes)
        self._link = WorkerLink()  # ipc://, or tcp on 127.0.0.1 with Curve (Windows)
        self._link.bind(self.back)
        self.supervisor = WorkerSupervisor(
            popen_spawner(self._link, threads, log_level=self.log_level), grace=self.grace
        )
        self.supervisor.set_count(devices, time.monotonic())
        self._models = hardware.models_present()
        self._info = hardware.node_info()
        self._tasks = [
            asyncio.create_task(
                serve_router(self.back, self._on_worker, "worker"), name="agent-workers"
            ),
            asyncio.create_task(self._tick(), name="agent-tick"),
        ]

    async def stop(self) -> None:
        assert self.supervisor is not None, "start() first"
        for slot in self.supervisor.slots.values():
            if slot.process is not None:
                self._send(slot.worker_id, Disconnect(reason="agent stopping"))
        self.supervisor.stop_all(time.monotonic())
        while not self.supervisor.all_stopped():
            await asyncio.sleep(TICK_S)  # the tick task collects exits and kills past the grace
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.back.close(linger=200)
        self.context.term()
        if self._link is not None:
            self._link.close()
        self.supervisor = None

    def slots(self) -> int:
        assert self.supervisor is not None
        return sum(1 for s in self.supervisor.slots.values() if not s.retired)

    def models(self) -> list[str]:
        return list(self._models)

    def info(self) -> NodeInfo:
        assert self._info is not None, "start() first"
        return self._info

    def describe(self) -> str:
        devices = self._plan[0]
        return f"{len(devices)} worker(s) on {', '.join(devices) or 'none'}"

    def submit(self, job: Job, payload: list[Any]) -> str | None:
        assert self.supervisor is not None
        idle = self.supervisor.idle_workers()
        if not idle or not self._send(idle[0], job, payload):
            return None
        self.supervisor.mark_busy(idle[0], job.job)
        return idle[0]

    def cancel(self, worker: str, job: str) -> None:
        if self.supervisor is not None:
            self.supervisor.stop_job(worker, time.monotonic())

    def set_workers(self, count: int) -> None:
        assert self.supervisor is not None, "start() first"
        devices, _threads = plan_workers(count, self.device)
        self.supervisor.set_count(devices, time.monotonic())

    def beat(self) -> None:
        assert self.supervisor is not None
        for slot in self.supervisor.slots.values():
            if slot.process is not None:
                self._send(slot.worker_id, Heartbeat())
        self._refresh_models()

    def _refresh_models(self) -> None:
        assert self.supervisor is not None
        ready = [s.models for s in self.supervisor.slots.values() if s.models]
        if ready:  # none ready (all restarting): keep announcing what they last had
            self._models = sorted(set().union(*ready))

    def _send(self, worker_id: str, msg: Any, payload: list[Any] | None = None) -> bool:
        return send_now(self.back, worker_id.encode(), msg, payload or [])

    def _on_worker(self, frames: list[zmq.Frame]) -> None:
        assert self.supervisor is not None and self._listener is not None
        worker_id = frames[0].bytes.decode("utf-8", "replace")
        slot = self.supervisor.heard_from(worker_id, time.monotonic())
        if slot is None:
            return  # a worker we no longer run (an old process still draining its socket)
        try:
            msg, payload = decode(frames[1:], max_frame_bytes=self.max_message_bytes)
        except ProtocolError as exc:
            log.warning("dropped a bad message from worker %s: %s", worker_id, exc)
            return
        if isinstance(msg, Ready):
            if slot.status == WorkerStatus.STARTING:
                # NVML numbered the GPU this worker was pinned to; torch must see the same one.
                mismatch = hardware.pin_mismatch(slot.device, msg.devices)
                if mismatch is not None:
                    log.warning("worker %s: %s", worker_id, mismatch)
            self.supervisor.mark_ready(worker_id, msg.models)
            self._refresh_models()
            self._listener.workers_changed()
        elif isinstance(msg, Result | Failed) and self._listener.job_answered(
            worker_id, msg, list(payload)
        ):
            self.supervisor.mark_idle(worker_id, time.monotonic())
            self._listener.workers_free()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            assert self.supervisor is not None and self._listener is not None
            try:
                for event in self.supervisor.tick(time.monotonic()):
                    reason = describe_exit(event.returncode)
                    self._listener.worker_exited(
                        WorkerExit(event.job, reason, event.crashed, event.cancelled)
                    )
                self._listener.workers_free()
            except Exception:  # one bad tick must not end restarts and dispatch for good
                log.exception("agent tick failed")
