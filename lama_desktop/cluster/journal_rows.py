"""The journal's records (batches, jobs, paired nodes) and how they map to table rows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from lama_desktop.cluster.events import BatchState, JobState

OPEN_BATCH_STATES = (BatchState.QUEUED, BatchState.RUNNING, BatchState.PAUSED)


@dataclass(frozen=True)
class StoredBatch:
    batch_id: str
    name: str
    output_dir: str
    settings: dict[str, Any]
    overwrite: bool
    state: BatchState
    paused: bool = False
    position: int = 0
    created: float = 0.0  # wall-clock time.time() of submission


@dataclass(frozen=True)
class StoredJob:
    job_id: str
    batch_id: str
    seq: int
    image: str
    mask: str
    output: str
    state: JobState = JobState.QUEUED
    attempts: int = 0
    crashes: int = 0
    reason: str = ""
    seconds: float | None = None
    node: str | None = None


@dataclass(frozen=True)
class StoredNode:
    """A paired agent: where it is and the Curve server key it proved it holds."""

    node_id: str
    name: str
    address: str
    server_key: str
    enabled: bool = True
    added: float = 0.0


def job_row(job: StoredJob) -> tuple[Any, ...]:
    return (
        job.job_id,
        job.batch_id,
        job.seq,
        job.image,
        job.mask,
        job.output,
        str(job.state),
        job.attempts,
        job.crashes,
        job.reason,
        job.seconds,
        job.node,
    )


def node_from_row(row: tuple[Any, ...]) -> StoredNode:
    node = StoredNode(row[0], row[1], row[2], row[3], bool(row[4]), row[5])
    if not all(isinstance(v, str) for v in (node.node_id, node.name, node.address)):
        raise TypeError(f"node row {row[:2]!r} holds no text where text belongs")
    return node


def batch_from_row(row: tuple[Any, ...]) -> StoredBatch:
    return StoredBatch(
        batch_id=row[0],
        name=row[1],
        output_dir=row[2],
        settings=json.loads(row[3]),
        overwrite=bool(row[4]),
        state=BatchState(row[5]),
        paused=bool(row[6]),
        position=row[7],
        created=row[8],
    )


def job_from_row(row: tuple[Any, ...]) -> StoredJob:
    return StoredJob(
        job_id=row[0],
        batch_id=row[1],
        seq=row[2],
        image=row[3],
        mask=row[4],
        output=row[5],
        state=JobState(row[6]),
        attempts=row[7],
        crashes=row[8],
        reason=row[9],
        seconds=row[10],
        node=row[11],
    )
