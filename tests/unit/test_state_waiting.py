"""SchedulerState says why a batch's queued jobs wait, for every queued state, without sockets."""

from __future__ import annotations

from lama_desktop.cluster.events import BatchChanged, BatchView
from lama_desktop.cluster.protocol import Metrics
from lama_desktop.cluster.state import Action, JobSpec, Publish, SchedulerState

GB = 1 << 30


def last_view(actions: list[Action], batch_id: str = "b1") -> BatchView | None:
    views = [
        a.event.batch
        for a in actions
        if isinstance(a, Publish)
        and isinstance(a.event, BatchChanged)
        and a.event.batch.batch_id == batch_id
    ]
    return views[-1] if views else None


def jobs(n: int, **kwargs: object) -> list[JobSpec]:
    return [JobSpec(f"j{i}", f"/in/{i}.png", f"/out/{i}.png", **kwargs) for i in range(n)]  # type: ignore[arg-type]


def ready(state: SchedulerState, node: str, now: float = 0.0, **kwargs: object) -> list[Action]:
    state.add_node(node, node, f"tcp://127.0.0.1/{node}", now)
    options: dict[str, object] = {"slots": 1, "models": ["opencv-ns"], "device": "cpu"}
    options.update(kwargs)
    return state.node_ready(node, now, **options)  # type: ignore[arg-type]


def test_no_node_then_starting_then_running_says_why_at_each_step() -> None:
    state = SchedulerState()
    view = last_view(state.submit_batch("b1", "b", "/out", jobs(2), 0.0))
    assert view is not None and view.waiting == "no node connected"
    view = last_view(state.add_node("a", "a", "tcp://127.0.0.1/a", 0.1))
    assert view is not None and view.waiting == "nodes are starting"
    actions = state.node_ready("a", 0.2, slots=1, models=["opencv-ns"], device="cpu")
    # One slot plus one prefetched: both jobs are out, none waits.
    view = last_view(actions)
    assert view is not None and view.waiting == "" and view.running == 2


def test_all_nodes_busy_when_the_queue_is_longer_than_the_slots() -> None:
    state = SchedulerState()
    ready(state, "a")
    view = last_view(state.submit_batch("b1", "b", "/out", jobs(5), 0.0))
    assert view is not None and view.waiting == "all nodes busy"


def test_paused_queue_and_paused_batch_are_named() -> None:
    state = SchedulerState()
    state.pause(True, 0.0)
    view = last_view(state.submit_batch("b1", "b", "/out", jobs(1), 0.0))
    assert view is not None and view.waiting == "queue paused"
    state.pause(False, 0.1)
    view = last_view(state.pause_batch("b1", True, 0.2))
    assert view is not None and view.waiting == "batch paused"


def test_missing_model_names_the_model_and_clears_when_a_node_gets_it() -> None:
    state = SchedulerState()
    ready(state, "a")  # opencv only
    view = last_view(state.submit_batch("b1", "b", "/out", jobs(1, model="lama"), 0.0))
    assert view is not None
    assert (view.waiting, view.missing_model) == ("no node has model lama", "lama")
    actions = state.node_ready("a", 1.0, slots=1, models=["opencv-ns", "lama"], device="cpu")
    view = last_view(actions)
    assert view is not None and (view.waiting, view.missing_model) == ("", "")


def test_a_node_that_reports_the_model_missing_makes_the_batch_say_so() -> None:
    state = SchedulerState()
    ready(state, "a", models=["opencv-ns", "lama"])
    state.submit_batch("b1", "b", "/out", jobs(1, model="lama"), 0.0)
    view = last_view(state.job_failed("a", "j0", "no lama file", 0.5, missing_model=True))
    assert view is not None and view.waiting == "no node has model lama"


def test_gpu_size_memory_and_switched_off_nodes() -> None:
    state = SchedulerState()
    ready(state, "a", ram_total=4 * GB)
    view = last_view(state.submit_batch("g", "b", "/out", jobs(1, device="cuda"), 0.0), "g")
    assert view is not None and view.waiting == "no node has a GPU"
    big = [JobSpec("big", "/in/big.png", "/out/big.png", memory=8 * GB)]
    view = last_view(state.submit_batch("s", "b", "/out", big, 0.0), "s")
    assert view is not None and view.waiting == "needs 8.0 GiB, more than any node has"
    # Busy with another job and too little free RAM for this one: it waits for memory.
    state2 = SchedulerState()
    ready(state2, "a", ram_total=8 * GB)
    state2.node_seen("a", 0.0, Metrics(cpu_percent=1, load1=0, ram_used=7 * GB, ram_total=8 * GB))
    state2.submit_batch("x", "b", "/out", jobs(1), 0.0)
    more = [JobSpec("m", "/in/m.png", "/out/m.png", memory=2 * GB)]
    view = last_view(state2.submit_batch("m", "b", "/out", more, 0.1), "m")
    assert view is not None and view.waiting == "waiting for memory"
    view = last_view(state.set_node_enabled("a", False, 1.0), "g")
    assert view is not None and view.waiting == "every node is switched off"


def test_a_dead_node_turns_busy_into_no_node_connected() -> None:
    state = SchedulerState(dead_after=3.0)
    ready(state, "a")
    state.submit_batch("b1", "b", "/out", jobs(4), 0.0)
    view = last_view(state.tick(10.0))
    assert view is not None and view.waiting == "no node connected"


def test_a_finished_batch_can_be_forgotten_and_late_answers_are_dropped() -> None:
    state = SchedulerState()
    ready(state, "a")
    state.submit_batch("b1", "b", "/out", jobs(1), 0.0)
    state.submit_batch("b2", "b", "/out", jobs(0), 0.0)  # empty: finished at once
    assert state.forget_batch("b1", 1.0) == []  # still running: kept
    state.cancel_batch("b1", 1.0)
    actions = state.forget_batch("b1", 2.0)
    removed = [a.event for a in actions if isinstance(a, Publish)]
    assert len(removed) == 1 and isinstance(removed[0], BatchChanged) and removed[0].removed
    assert "b1" not in state.batches and "j0" not in state.jobs
    # The node's confirmation of the cancel arrives later: dropped, and its slot is free.
    state.job_failed("a", "j0", "cancelled", 3.0, cancelled=True)
    assert not state.nodes["a"].assigned
