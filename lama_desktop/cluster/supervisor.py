"""Starts, watches, restarts (with backoff), stops and kills worker subprocesses.

`WorkerSupervisor` does no I/O of its own: the agent calls `tick(now)` a few times a second and
acts on the `WorkerExited` events it returns, and the process start is an injected function, so
the restart and kill logic is tested with fake processes and a fake clock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

import psutil

from lama_desktop.cluster import hardware, worker_logs
from lama_desktop.cluster.worker_link import WorkerLink, launcher

log = logging.getLogger(__name__)

BACKOFF_START_S = 0.5
BACKOFF_MAX_S = 30.0
HEALTHY_AFTER_S = 60.0  # a worker up this long resets its backoff
STOP_GRACE_S = 5.0
WORKER_SILENCE_S = 10.0  # a worker that says nothing this long is hung; it is killed
WORKER_START_S = 120.0  # how long a new worker may take before its first message


class WorkerStatus(StrEnum):
    STARTING = "starting"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    CRASHED = "crashed"


class ProcessLike(Protocol):
    """The part of subprocess.Popen the supervisor uses."""

    pid: int

    def poll(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


Spawn = Callable[[str, str], ProcessLike]  # (worker id, device) -> started process


@dataclass
class WorkerSlot:
    """One worker's life: its process, status, running job and restart plan."""

    worker_id: str
    device: str
    status: WorkerStatus = WorkerStatus.STOPPED
    process: ProcessLike | None = None
    job: str | None = None
    models: list[str] = field(default_factory=list)
    backoff: float = BACKOFF_START_S
    started_at: float = 0.0
    last_seen: float = 0.0
    restart_at: float | None = None
    kill_at: float | None = None
    restart_after_stop: bool = False  # a cancel stops the worker, which then comes straight back
    retired: bool = False  # removed by set_count/stop_all: never restarted
    restarts: int = 0


@dataclass(frozen=True)
class WorkerExited:
    """A worker process ended. `job` was running on it; `crashed` when nobody asked it to stop."""

    worker_id: str
    job: str | None
    returncode: int
    crashed: bool
    cancelled: bool


def describe_exit(returncode: int) -> str:
    """A human reason for a process exit code (negative = killed by that signal)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of memory?)" if -returncode == signal.SIGKILL else ""
        return f"worker process killed by {name}{hint}"
    return f"worker process exited with code {returncode}"


class WorkerSupervisor:
    """N worker subprocesses with statuses, restarts with backoff and graceful stop."""

    def __init__(
        self,
        spawn: Spawn,
        *,
        grace: float = STOP_GRACE_S,
        silence: float = WORKER_SILENCE_S,
    ) -> None:
        self._spawn = spawn
        self.grace = grace
        self.silence = silence
        self.slots: dict[str, WorkerSlot] = {}
        self._next_index = 0

    # -- life cycle ---------------------------------------------------------------------------

    def set_count(self, devices: list[str], now: float) -> None:
        """Run one worker per entry of `devices`: start missing ones, stop extra ones."""
        active = [s for s in self.slots.values() if not s.retired]
        # The newest idle workers go first; a busy one finishes its job, then stops (mark_idle).
        extra = len(active) - len(devices)
        by_business = sorted(reversed(active), key=lambda s: s.status == WorkerStatus.BUSY)
        for slot in by_business[: max(extra, 0)]:
            if slot.status == WorkerStatus.BUSY:
                slot.retired = True
            else:
                self._retire(slot, now)
        for device in devices[len(active) :]:
            worker_id = f"w{self._next_index}"
            self._next_index += 1
            slot = WorkerSlot(worker_id, device)
            self.slots[worker_id] = slot
            self._start(slot, now)

    def stop_all(self, now: float) -> None:
        """Ask every worker to stop (SIGTERM); `tick` kills those still alive after the grace."""
        for slot in self.slots.values():
            self._retire(slot, now)

    def stop_job(self, worker_id: str, now: float) -> None:
        """Interrupt the job running on a worker by stopping it; it is restarted at once."""
        slot = self.slots[worker_id]
        slot.restart_after_stop = True
        self._terminate(slot, now)

    def all_stopped(self) -> bool:
        """True when no worker process is left running."""
        return all(s.process is None for s in self.slots.values())

    def _retire(self, slot: WorkerSlot, now: float) -> None:
        slot.retired = True
        slot.restart_after_stop = False
        slot.restart_at = None
        if slot.process is None:
            slot.status = WorkerStatus.STOPPED
        else:
            self._terminate(slot, now)

    def _terminate(self, slot: WorkerSlot, now: float) -> None:
        if slot.process is None or slot.status == WorkerStatus.STOPPING:
            return
        slot.status = WorkerStatus.STOPPING
        slot.kill_at = now + self.grace
        with contextlib.suppress(ProcessLookupError):  # already gone: tick() collects it
            slot.process.send_signal(signal.SIGTERM)

    def _start(self, slot: WorkerSlot, now: float) -> None:
        slot.restart_at = None
        slot.kill_at = None
        slot.job = None
        slot.models = []
        slot.started_at = slot.last_seen = now
        try:
            slot.process = self._spawn(slot.worker_id, slot.device)
        except OSError as exc:
            log.error("could not start worker %s: %s", slot.worker_id, exc)
            slot.process = None
            self._schedule_restart(slot, now)
            return
        slot.status = WorkerStatus.STARTING
        log.info("worker %s started (pid %d, %s)", slot.worker_id, slot.process.pid, slot.device)

    def _schedule_restart(self, slot: WorkerSlot, now: float) -> None:
        if now - slot.started_at >= HEALTHY_AFTER_S:
            slot.backoff = BACKOFF_START_S  # it ran fine for a while: this is a fresh failure
        slot.status = WorkerStatus.CRASHED
        slot.restart_at = now + slot.backoff
        log.warning("worker %s restarts in %.1f s", slot.worker_id, slot.backoff)
        slot.backoff = min(slot.backoff * 2, BACKOFF_MAX_S)

    # -- what the worker says -----------------------------------------------------------------

    def heard_from(self, worker_id: str, now: float) -> WorkerSlot | None:
        """Any message from a worker proves it alive; returns its slot (None if unknown)."""
        slot = self.slots.get(worker_id)
        if slot is not None and slot.process is not None:
            slot.last_seen = now
            return slot
        return None

    def mark_ready(self, worker_id: str, models: list[str]) -> None:
        """The worker sent READY: it can take a job."""
        slot = self.slots[worker_id]
        slot.models = list(models)
        if slot.status in (WorkerStatus.STARTING, WorkerStatus.BUSY):
            slot.status = WorkerStatus.READY
            slot.job = None

    def mark_busy(self, worker_id: str, job: str) -> None:
        """A job was handed to the worker."""
        slot = self.slots[worker_id]
        slot.status, slot.job = WorkerStatus.BUSY, job

    def mark_idle(self, worker_id: str, now: float) -> None:
        """The worker answered its job (RESULT or FAILED); a retired one now stops."""
        slot = self.slots[worker_id]
        if slot.status == WorkerStatus.BUSY:
            slot.status, slot.job = WorkerStatus.READY, None
            if slot.retired:
                self._retire(slot, now)

    def idle_workers(self) -> list[str]:
        """Workers ready for a job, in start order."""
        return [s.worker_id for s in self.slots.values() if s.status == WorkerStatus.READY]

    def worker_of(self, job: str) -> str | None:
        """The worker running `job`, if any."""
        return next((s.worker_id for s in self.slots.values() if s.job == job), None)

    # -- the clock ----------------------------------------------------------------------------

    def tick(self, now: float) -> list[WorkerExited]:
        """Collect exits, kill workers past their grace or silent too long, start due restarts."""
        events = []
        for slot in self.slots.values():
            if slot.process is not None:
                code = slot.process.poll()
                if code is not None:
                    events.append(self._exited(slot, code, now))
                elif slot.kill_at is not None and now >= slot.kill_at:
                    log.warning("worker %s ignored SIGTERM; killing it", slot.worker_id)
                    slot.kill_at = None
                    slot.process.kill()
                elif slot.status != WorkerStatus.STOPPING and now - slot.last_seen > (
                    # A new worker is still importing (torch from a cold disk can take tens of
                    # seconds); only a worker that has spoken once is held to `silence`.
                    max(self.silence, WORKER_START_S)
                    if slot.last_seen == slot.started_at
                    else self.silence
                ):
                    log.warning(
                        "worker %s silent for %.0f s; killing it",
                        slot.worker_id,
                        now - slot.last_seen,
                    )
                    slot.process.kill()  # its exit is collected, as a crash, on a later tick
                    slot.last_seen = now
            elif slot.restart_at is not None and now >= slot.restart_at and not slot.retired:
                slot.restarts += 1
                self._start(slot, now)
        return events

    def _exited(self, slot: WorkerSlot, code: int, now: float) -> WorkerExited:
        asked = slot.status == WorkerStatus.STOPPING
        event = WorkerExited(
            slot.worker_id,
            slot.job,
            code,
            crashed=not asked,
            cancelled=asked and slot.restart_after_stop,
        )
        slot.process, slot.job, slot.kill_at = None, None, None
        if slot.retired:
            slot.status = WorkerStatus.STOPPED
            log.info("worker %s stopped (%s)", slot.worker_id, describe_exit(code))
        elif asked:
            slot.restart_after_stop = False
            log.info("worker %s stopped to cancel its job; restarting", slot.worker_id)
            self._start(slot, now)
        else:
            log.error("worker %s died: %s", slot.worker_id, describe_exit(code))
            self._schedule_restart(slot, now)
        return event


def worker_command(endpoint: str, worker_id: str, device: str, heartbeat: float = 1.0) -> list[str]:
    """The command line of one worker subprocess."""
    return [
        *launcher(),  # this Python with the module, or the frozen executable
        "--connect", endpoint, "--id", worker_id, "--device", device,
        "--heartbeat", str(heartbeat), "--parent", str(os.getpid()),
    ]  # fmt: skip


def worker_env(device: str, base: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """The environment and --device of a worker for `device`.

    A "cuda:N" worker is pinned to GPU N (CUDA_VISIBLE_DEVICES, PCI bus order, so torch's
    numbering agrees with NVML's) and runs on its only visible GPU, cuda:0.
    """
    env = dict(base)
    pin = hardware.cuda_pin_env(device)
    if not pin:
        return env, device
    env.update(pin)
    return env, "cuda:0"


def popen_spawner(
    link: WorkerLink, threads: int | None = None, heartbeat: float = 1.0, log_level: str = "INFO"
) -> Spawn:
    """A Spawn that runs real worker subprocesses connecting to `link`'s endpoint.

    Workers log at `log_level` to a pipe that this process reads: each record is logged again
    here under `lama_desktop.worker.<id>` (see worker_logs), so it lands wherever this
    process logs (the app's log file; lama-agent's terminal and file).
    """

    def spawn(worker_id: str, device: str) -> ProcessLike:
        env, worker_device = worker_env(device, os.environ)
        env[worker_logs.LEVEL_ENV] = log_level
        env[worker_logs.FORWARD_ENV] = "1"
        if threads:
            # The worker's share of the cores: OpenMP/MKL read these at start-up, and the
            # worker hands LAMA_TORCH_THREADS to models that take a `threads` option.
            for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "LAMA_TORCH_THREADS"):
                env[var] = str(threads)
        process = link.start(
            worker_command(link.endpoint, worker_id, worker_device, heartbeat),
            env,
            stderr=subprocess.PIPE,
        )
        assert process.process.stderr is not None
        worker_logs.forward(process.process.stderr, worker_id)  # ends when the worker does
        return process

    return spawn


def plan_workers(
    workers: int | str, device: str, cores: int | None = None
) -> tuple[list[str], int | None]:
    """Devices of the workers to run, and the CPU threads each CPU worker gets.

    `auto`: one worker per NVIDIA GPU, else one CPU worker using every physical core
    (hyper-threads only slow convolutions down). Asking for CUDA without a GPU is an error.
    """
    if cores is None:
        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    gpus = hardware.gpu_count() if device.startswith(("auto", "cuda")) else 0
    if device.startswith("cuda") and gpus == 0:
        raise ValueError(f"--device {device} asked for, but no NVIDIA GPU was found here")
    if device.startswith("cuda:") and int(device[5:]) >= gpus:
        raise ValueError(f"--device {device} does not exist: this machine has {gpus} GPU(s)")
    if workers == "auto":
        if device.startswith("cuda:"):
            return [device], None
        if gpus and device != "cpu":
            return [f"cuda:{i}" for i in range(gpus)], None
        return ["cpu"], cores
    count = int(workers)
    if count < 0:
        raise ValueError(f"workers must be 'auto' or a number >= 0, not {workers}")
    if device in ("auto", "cuda"):
        devices = [f"cuda:{i % gpus}" for i in range(count)] if gpus else ["cpu"] * count
    else:
        devices = [device] * count
    cpu_workers = devices.count("cpu")
    return devices, max(1, cores // cpu_workers) if cpu_workers else None
