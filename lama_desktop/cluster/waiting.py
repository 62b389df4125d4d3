"""Why a batch's queued jobs wait: one reason in the user's words, derived from the pure state."""

from __future__ import annotations

from collections.abc import Iterable

from lama_desktop.cluster.events import JobState, NodeState
from lama_desktop.cluster.records import BatchRecord, JobRecord, NodeRecord, Unfit

# When nodes disagree, the reason of the node that comes closest to running the job wins.
_CLOSEST_FIRST: tuple[Unfit, ...] = ("", "memory", "size", "gpu", "model")
_GIB = 1 << 30


Memo = dict[tuple[str, str, int], tuple[str, str]]


def batch_waiting(
    batch: BatchRecord,
    head: JobRecord | None,
    nodes: Iterable[NodeRecord],
    *,
    queue_paused: bool,
    now: float,
    memo: Memo | None = None,
) -> tuple[str, str]:
    """(reason, missing model) for a batch; ("", "") when none of its jobs is queued.

    `head` is the batch's next queued job (jobs of one batch share model and device).
    `memo` keeps the answer per kind of job across the batches of one pass: most batches ask
    for the same model and device, and the nodes do not change within a pass.
    """
    if not batch.counts[JobState.QUEUED] or head is None:
        return "", ""
    if queue_paused:
        return "queue paused", ""
    if batch.paused:
        return "batch paused", ""
    key = (head.model, head.device, head.memory)
    if memo is not None and key in memo:
        return memo[key]
    reason = job_waiting(head, list(nodes), now)
    if memo is not None:
        memo[key] = reason
    return reason


def job_waiting(job: JobRecord, nodes: list[NodeRecord], now: float) -> tuple[str, str]:
    """Why `job` is not running on any of `nodes` (the best reason first), and the model no
    node has when that is the reason."""
    working = [n for n in nodes if n.enabled and n.state in (NodeState.IDLE, NodeState.BUSY)]
    if not working:
        if any(n.enabled and n.state == NodeState.STARTING for n in nodes):
            return "nodes are starting", ""
        if any(n.state in (NodeState.REFUSED, NodeState.VERSION_MISMATCH) for n in nodes):
            return "every node refused this desktop", ""
        if nodes and not any(n.enabled for n in nodes):
            return "every node is switched off", ""
        return "no node connected", ""
    closest = min((n.unfit(job) for n in working), key=_CLOSEST_FIRST.index)
    if closest == "model":
        return f"no node has model {job.model}", job.model
    if closest == "gpu":
        return "no node has a GPU", ""
    if closest == "size":
        return f"needs {job.memory / _GIB:.1f} GiB, more than any node has", ""
    if closest == "memory":
        return "waiting for memory", ""
    if all(n.declined_until > now for n in working):
        return "nodes are full", ""
    return "all nodes busy", ""
