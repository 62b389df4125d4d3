"""The scheduler's per-node transport seam: `NodeLink` out to a node, `NodeEvents` back in.

The scheduler talks to a node only through its `NodeLink`: `send_job` (a typed `protocol.Job`
and its payload frames: image + mask), `cancel`, `reset` when the node is lost and `close` when
it is removed. Whatever the node answers comes back as stimuli on `NodeEvents` (READY, RESULT,
FAILED, down), which feed the pure `SchedulerState`; the scheduler's journal, outputs and
events then follow for free.

Today every node is a ZeroMQ agent (`links.ZmqNodeLink` over the one Curve ROUTER of
`links.NodeLinks`; its hello/heartbeat/pairing lifecycle is in `nodes`). A node of another
kind, e.g. an IOPaint-compatible HTTP endpoint, is one new `NodeLink` class put in
`Scheduler.node_links[node_id]`: it POSTs each job, and reports `node_ready` (with the slots
and models it offers), `job_result`/`job_failed` for each answer (the job id on the wire is the
one in the `Job` it was given) and `node_down` when the endpoint stops answering.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Protocol

from lama_desktop.cluster import protocol as p


class NodeLink(ABC):
    """How jobs reach one node."""

    node_id: str

    @property
    @abstractmethod
    def name(self) -> str:
        """The node's name, for logs and results."""

    @abstractmethod
    def send_job(self, msg: p.Job, *payload: Any) -> bool:
        """Hand the job to the node without blocking; False when it cannot be reached."""

    @abstractmethod
    def cancel(self, wire_job: str) -> bool:
        """Ask the node to stop the job with this wire id (it answers FAILED cancelled)."""

    @abstractmethod
    def reset(self) -> None:
        """The node was lost: drop whatever is still on its way to it, never deliver it late."""

    @abstractmethod
    def close(self) -> None:
        """The node was removed: release the connection for good."""

    async def wait_closed(self) -> None:  # noqa: B027 - a link with no tasks has nothing to wait for
        """After `close`: until the link's own tasks and connections have ended."""


class NodeEvents(Protocol):
    """The stimuli a link reports; each becomes a call on the pure SchedulerState."""

    def node_ready(self, node_id: str, msg: p.Ready) -> None: ...

    def job_result(self, node_id: str, msg: p.Result, payload: list[Any]) -> None: ...

    def job_failed(self, node_id: str, msg: p.Failed) -> None: ...

    def node_down(self, node_id: str, reason: str) -> None: ...

    def node_seen(self, node_id: str) -> None: ...
