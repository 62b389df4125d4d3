"""SchedulerState at 100,000 jobs: `tick` looks at the leased jobs only, never at every job."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, ValuesView
from typing import Any

import pytest

from lama_desktop.cluster.events import BatchState, JobChanged, JobState
from lama_desktop.cluster.records import JobRecord
from lama_desktop.cluster.state import (
    BatchFinished,
    CancelOnNode,
    Dispatch,
    JobSpec,
    JournalJob,
    Publish,
    SchedulerState,
)


class NoScanDict(dict[str, JobRecord]):
    """The jobs table, refusing any walk over all of it (lookups by id still work)."""

    def _refuse(self) -> Any:
        raise AssertionError("walked every job ever submitted")

    def __iter__(self) -> Iterator[str]:
        return self._refuse()  # type: ignore[no-any-return]

    def values(self) -> ValuesView[JobRecord]:
        return self._refuse()  # type: ignore[no-any-return]

    def items(self) -> ItemsView[str, JobRecord]:
        return self._refuse()  # type: ignore[no-any-return]


def test_tick_touches_only_the_leased_jobs_of_100000() -> None:
    state = SchedulerState(job_timeout=10.0)
    state.add_node("a", "a", "tcp://127.0.0.1:1", 0.0)
    state.node_ready("a", 0.0, slots=5, models=["opencv-ns"], device="cpu")
    done = [
        JobSpec(f"old{i}", f"/in/{i}.png", f"/out/{i}.png", state=JobState.DONE)
        for i in range(100_000)
    ]
    state.submit_batch("old", "old", "/out", done, 0.0)
    active = [JobSpec(f"new{i}", f"/in/n{i}.png", f"/out/n{i}.png") for i in range(12)]
    sent = state.submit_batch("new", "new", "/out", active, 0.0)
    leased = {a.job_id for a in sent if isinstance(a, Dispatch)}
    assert len(leased) == 10  # 5 slots + 1 prefetched each; 2 stay queued

    state.jobs = NoScanDict(state.jobs)
    state.node_seen("a", 5.0)
    assert state.tick(5.0) == []  # nothing timed out, nothing walked

    state.node_seen("a", 10.5)
    actions = state.tick(10.5)
    cancelled = {a.job_id for a in actions if isinstance(a, CancelOnNode)}
    assert cancelled == leased  # exactly the leased ten timed out
    again = {a.job_id for a in actions if isinstance(a, Dispatch)}
    assert again == leased  # retried at once: a re-queued job keeps its place in the queue
    assert sum(j.state == JobState.RUNNING for j in dict.values(state.jobs)) == 10


def test_finished_and_cancelled_jobs_leave_the_lease_index() -> None:
    state = SchedulerState(job_timeout=10.0)
    state.add_node("a", "a", "tcp://127.0.0.1:1", 0.0)
    state.node_ready("a", 0.0, slots=1, models=["opencv-ns"], device="cpu")
    state.submit_batch("b", "b", "/out", [JobSpec(f"j{i}", "/i", "/o") for i in range(3)], 0.0)
    state.job_result("a", "j0", 0.1, 1.0)
    state.output_written("j0", 1.0)
    state.cancel_batch("b", 2.0)
    state.job_failed("a", "j1", "cancelled", 2.1, cancelled=True)
    state.jobs = NoScanDict(state.jobs)
    state.node_seen("a", 20.0)
    # Every job is final: a tick long after the timeout cancels nothing on the node.
    assert not [a for a in state.tick(20.0) if isinstance(a, CancelOnNode)]


def _told(actions: list[Any]) -> list[Any]:
    return [
        a.event.job for a in actions if isinstance(a, Publish) and isinstance(a.event, JobChanged)
    ]


def test_a_large_batch_comes_in_chunks_and_cannot_finish_before_its_last_job() -> None:
    state = SchedulerState()
    done = [JobSpec(f"j{i}", f"/in/{i}", f"/out/{i}", state=JobState.DONE) for i in range(2500)]
    first = state.submit_batch("b", "b", "/out", done[:1000], 0.0, resumed=True, total=2500)
    assert len(_told(first)) == 1000 and state.missing_jobs("b") == 1500
    views = [a.event.batch for a in first if isinstance(a, Publish) and hasattr(a.event, "batch")]
    assert views[-1].total == 2500 and views[-1].done == 1000
    assert views[-1].state != BatchState.DONE  # 1,000 of 2,500 done: not finished
    assert not any(isinstance(a, BatchFinished) for a in first)
    second = state.add_jobs("b", done[1000:2000], 1.0)
    assert len(_told(second)) == 1000 and not any(isinstance(a, BatchFinished) for a in second)
    last = state.add_jobs("b", done[2000:], 2.0)
    assert BatchFinished("b") in last and state.missing_jobs("b") == 0
    with pytest.raises(ValueError, match="2501 of 2500"):
        state.add_jobs("b", [JobSpec("extra", "/in/x")], 3.0)


def test_jobs_of_a_batch_cancelled_while_it_comes_in_arrive_cancelled_and_journaled() -> None:
    state = SchedulerState()
    state.add_node("a", "a", "tcp://127.0.0.1:1", 0.0)
    state.node_ready("a", 0.0, slots=1, models=["opencv-ns"], device="cpu")
    jobs = [JobSpec(f"j{i}", f"/in/{i}", f"/out/{i}") for i in range(30)]
    sent = state.submit_batch("b", "b", "/out", jobs[:10], 0.0, total=30)
    assert sum(isinstance(a, Dispatch) for a in sent) == 2  # 1 slot + 1 prefetched
    cancelled = state.cancel_batch("b", 1.0)
    assert not any(isinstance(a, BatchFinished) for a in cancelled)  # 20 jobs still to come
    rest = state.add_jobs("b", jobs[10:], 2.0)
    assert {j.state for j in _told(rest)} == {JobState.CANCELLED}
    journaled = {a.job_id for a in rest if isinstance(a, JournalJob)}
    assert journaled == {f"j{i}" for i in range(10, 30)}
    assert not any(isinstance(a, Dispatch) for a in rest)
    assert BatchFinished("b") in rest  # the last job came: the batch ends, cancelled
    assert state.batches["b"].view(state, 2.0).state == BatchState.CANCELLED
