"""The agent's worker-pool seam: where a node's jobs run (subprocesses today, Ray actors next).

The agent owns the desktops, the job queue and the answers; a `WorkerPool` owns the workers.
A pool reports back through the `PoolListener` the agent passes to `start`:

- `workers_changed()` when its slots or models may have changed (a worker became ready, the
  pool grew or shrank at run time): the agent then re-sends READY to every greeted desktop if
  the slots or models differ from what it last announced, and dispatches queued jobs;
- `job_answered(worker, msg, payload)` with a worker's RESULT or FAILED; True means the agent
  took the answer and the worker is free again (then the pool calls `workers_free()`);
- `worker_exited(exit)` when a worker (process or actor) ended: its job, if any, fails back to
  the desktop, whose scheduler requeues it;
- `workers_free()` when queued jobs may now find a free worker.

A pool that loses what runs its workers (a Ray cluster) says why in `unavailable()` and calls
`workers_changed()` before failing its running jobs, so desktops hear the node is down first.

A second pool (`RayPool`: slots = live Ray actors) is one new file implementing `WorkerPool`,
passed to `Agent(pool=...)`; the agent needs no branch for it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Protocol

from lama_desktop.cluster.protocol import Failed, Job, NodeInfo, Result


@dataclass(frozen=True)
class WorkerExit:
    """A worker ended; `job` is the job it was running, if any."""

    job: str | None
    reason: str  # what the desktop is told, e.g. "worker crashed (signal 9)"
    crashed: bool
    cancelled: bool  # it was stopped to cancel its job


class PoolListener(Protocol):
    """What a pool tells the agent (see the module docstring)."""

    def workers_changed(self) -> None: ...

    def job_answered(self, worker: str, msg: Result | Failed, payload: list[Any]) -> bool: ...

    def worker_exited(self, exit: WorkerExit) -> None: ...

    def workers_free(self) -> None: ...


class WorkerPool(ABC):
    """The workers behind one agent: started, sized, given jobs, stopped."""

    @abstractmethod
    def validate(self) -> None:
        """Raise ValueError (with a one-line reason) if the pool cannot run as configured.

        Called before the agent opens any socket, so nothing is left open on failure.
        """

    @abstractmethod
    async def start(self, listener: PoolListener) -> None:
        """Start the workers; from now on report to `listener` (needs a running loop)."""

    @abstractmethod
    async def stop(self) -> None:
        """Ask every worker to stop, wait for them (killing past a grace) and release all.

        Jobs still running end through `worker_exited` while this waits.
        """

    @abstractmethod
    def slots(self) -> int:
        """How many jobs can run at once now (live workers, not those being retired)."""

    @abstractmethod
    def models(self) -> list[str]:
        """The models the workers can run, as READY announces them."""

    @abstractmethod
    def info(self) -> NodeInfo:
        """The hardware READY describes (CPU, RAM, GPUs) for the scheduler's routing."""

    @abstractmethod
    def describe(self) -> str:
        """One phrase for the log, e.g. "2 worker(s) on cpu, cpu"."""

    @abstractmethod
    def submit(self, job: Job, payload: list[Any]) -> str | None:
        """Start the job on a free worker; its id, or None if none is free or it failed to send.

        The answer comes later through `job_answered` or `worker_exited`.
        """

    @abstractmethod
    def cancel(self, worker: str, job: str) -> None:
        """Stop the job running on `worker`; it ends through `worker_exited(cancelled=True)`."""

    @abstractmethod
    def set_workers(self, count: int) -> None:
        """Run `count` workers from now on (0: none); raises ValueError for an impossible one."""

    @abstractmethod
    def beat(self) -> None:
        """Called every agent heartbeat: keep-alives to workers and a fresh look at models."""

    def unavailable(self) -> str | None:
        """Why the pool cannot run jobs now (its cluster is unreachable), or None.

        While it says why, the agent answers desktops with DISCONNECT(reason) instead of READY,
        so they show the node down with the reason; local worker processes never are.
        """
        return None
