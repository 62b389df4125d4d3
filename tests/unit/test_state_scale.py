"""SchedulerState at 100,000 jobs: `tick` looks at the leased jobs only, never at every job."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, ValuesView
from typing import Any

from lama_desktop.cluster.events import JobChanged, JobState
from lama_desktop.cluster.records import JobRecord
from lama_desktop.cluster.state import CancelOnNode, Dispatch, JobSpec, Publish, SchedulerState


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


def test_a_large_batch_is_told_a_thousand_jobs_at_a_time_with_their_current_view() -> None:
    state = SchedulerState()
    state.add_node("a", "a", "tcp://127.0.0.1:1", 0.0)
    state.node_ready("a", 0.0, slots=1, models=["opencv-ns"], device="cpu")
    jobs = [JobSpec(f"j{i}", f"/in/{i}.png", f"/out/{i}.png") for i in range(2500)]
    actions = state.submit_batch("b", "b", "/out", jobs, 0.0)
    told = [
        a.event.job for a in actions if isinstance(a, Publish) and isinstance(a.event, JobChanged)
    ]
    assert len({j.job_id for j in told}) == 1000 and state.unannounced() == 1500
    state.cancel_job("j2400", 1.0)  # changed before it was told: told as it is now
    later = []
    while state.unannounced():
        later += [
            a.event.job
            for a in state.announce(1000)
            if isinstance(a, Publish) and isinstance(a.event, JobChanged)
        ]
    views = {j.job_id: j for j in later}
    assert len(later) == 1500 and set(views) == {f"j{i}" for i in range(1000, 2500)}
    assert views["j2400"].state == JobState.CANCELLED
    assert views["j1500"].state == JobState.QUEUED
