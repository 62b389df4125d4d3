"""SchedulerState without sockets or clocks: routing, leases, retries, poison, pause, cancel."""

from __future__ import annotations

from lama_desktop.cluster.events import BatchChanged, BatchState, JobState, NodeState
from lama_desktop.cluster.protocol import GpuMetrics, Metrics
from lama_desktop.cluster.state import (
    Action,
    BatchFinished,
    CancelOnNode,
    Dispatch,
    JobSpec,
    JournalJob,
    NodeLost,
    Publish,
    SchedulerState,
    WriteOutput,
)

GB = 1 << 30


def dispatches(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.node_id, a.job_id) for a in actions if isinstance(a, Dispatch)]


def make_state(nodes: dict[str, int], **kwargs: object) -> SchedulerState:
    state = SchedulerState(**kwargs)  # type: ignore[arg-type]
    for node_id, slots in nodes.items():
        state.add_node(node_id, node_id, f"tcp://127.0.0.1/{node_id}", 0.0)
        state.node_ready(node_id, 0.0, slots=slots, models=["opencv-ns"], device="cpu")
    return state


def specs(n: int, prefix: str = "j", **kwargs: object) -> list[JobSpec]:
    return [JobSpec(f"{prefix}{i}", f"/in/{i}.png", f"/out/{i}.png", **kwargs) for i in range(n)]  # type: ignore[arg-type]


def finish(state: SchedulerState, node: str, job: str, now: float = 1.0) -> list[Action]:
    actions = state.job_result(node, job, 0.1, now)
    assert WriteOutput(job) in actions
    return actions + state.output_written(job, now)


def test_idle_nodes_fill_before_any_node_gets_a_second_job_then_prefetch() -> None:
    state = make_state({"a": 2, "b": 1, "c": 1})
    actions = state.submit_batch("b1", "batch", "/out", specs(20), 0.0)
    sent = dispatches(actions)
    first_four = [node for node, _ in sent[:4]]
    assert sorted(first_four) == ["a", "a", "b", "c"]  # one job per slot first
    # then one prefetched job per busy slot, no more
    assert len(sent) == 8
    assert {n: first_four.count(n) for n in "abc"} == {"a": 2, "b": 1, "c": 1}
    assert [n for n, _ in sent].count("a") == 4
    assert [job for _, job in sent] == [f"j{i}" for i in range(8)]  # queue order kept


def test_result_frees_a_slot_and_the_next_job_goes_out() -> None:
    state = make_state({"a": 1})
    sent = dispatches(state.submit_batch("b1", "batch", "/out", specs(3), 0.0))
    assert sent == [("a", "j0"), ("a", "j1")]
    actions = finish(state, "a", "j0")
    assert dispatches(actions) == [("a", "j2")]
    assert state.jobs["j0"].state == JobState.DONE


def test_job_is_done_only_after_its_output_is_written() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(1), 0.0)
    state.job_result("a", "j0", 0.5, 1.0)
    assert state.jobs["j0"].state == JobState.RUNNING
    actions = state.output_written("j0", 1.1)
    assert state.jobs["j0"].state == JobState.DONE
    assert JournalJob("j0") in actions and BatchFinished("b1") in actions


def test_output_write_failure_fails_the_job_with_the_reason() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(1), 0.0)
    state.job_result("a", "j0", 0.5, 1.0)
    state.output_failed("j0", "disk full", 1.1)
    assert state.jobs["j0"].state == JobState.FAILED
    assert state.jobs["j0"].reason == "disk full"


def test_interactive_job_jumps_ahead_of_every_batch_job() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(5), 0.0)
    actions = state.submit_interactive(JobSpec("edit", "canvas"), 0.1)
    assert dispatches(actions) == []  # node full (1 running + 1 prefetched)
    actions = finish(state, "a", "j0")
    assert dispatches(actions) == [("a", "edit")]


def test_node_death_puts_its_jobs_back_at_once_and_another_node_runs_them() -> None:
    state = make_state({"a": 1, "b": 1})
    state.submit_batch("b1", "batch", "/out", specs(4), 0.0)
    on_a = sorted(state.nodes["a"].assigned)
    state.node_seen("b", 2.5)
    actions = state.tick(3.5)  # a silent for 3.5 s > 3 s, b seen 1 s ago
    assert NodeLost("a", "silent for 3.5 s") in actions
    assert state.nodes["a"].state == NodeState.OFFLINE
    for job_id in on_a:
        assert state.jobs[job_id].state == JobState.QUEUED
        assert state.jobs[job_id].attempts == 0  # the node failed, not the job
    # b's lease holds two already; it gets the rest as it finishes
    done = sorted(state.nodes["b"].assigned)
    actions = finish(state, "b", done[0], 3.6)
    assert dispatches(actions) == [("b", on_a[0])]


def test_late_result_from_a_node_declared_dead_is_dropped_once_done_elsewhere() -> None:
    state = make_state({"a": 1, "b": 1})
    state.submit_batch("b1", "batch", "/out", specs(1), 0.0)
    assert state.jobs["j0"].node == "a"
    state.node_seen("b", 3.0)
    state.tick(3.5)
    assert state.jobs["j0"].node == "b"
    finish(state, "b", "j0", 4.0)
    actions = state.job_result("a", "j0", 0.1, 4.5)  # a comes back with the same job
    assert not any(isinstance(a, WriteOutput) for a in actions)
    assert state.jobs["j0"].state == JobState.DONE


def test_result_from_old_node_wins_and_cancels_the_rerun() -> None:
    state = make_state({"a": 1, "b": 1})
    state.submit_batch("b1", "batch", "/out", specs(1), 0.0)
    state.node_seen("b", 3.0)
    state.tick(3.5)
    actions = state.job_result("a", "j0", 0.1, 3.6)
    assert WriteOutput("j0") in actions and CancelOnNode("b", "j0") in actions
    state.output_written("j0", 3.7)
    later = state.job_result("b", "j0", 0.1, 3.8)  # b had finished anyway
    assert not any(isinstance(a, WriteOutput) for a in later)


def test_three_failed_attempts_fail_the_job_with_the_last_reason() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(1), 0.0)
    for attempt in (1, 2, 3):
        assert state.jobs["j0"].attempts == attempt
        actions = state.job_failed("a", "j0", f"bad pixels {attempt}", 1.0)
    assert state.jobs["j0"].state == JobState.FAILED
    assert state.jobs["j0"].reason == "bad pixels 3"
    assert dispatches(actions) == []
    assert state.batches["b1"].view(state, 1.0).state == BatchState.FAILED


def test_bad_input_fails_at_once_without_retries() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(2), 0.0)
    actions = state.job_failed("a", "j0", "x.jpg: the file is truncated", 1.0, permanent=True)
    assert state.jobs["j0"].state == JobState.FAILED
    assert state.jobs["j0"].attempts == 1
    assert state.jobs["j0"].reason == "x.jpg: the file is truncated"
    assert ("a", "j0") not in dispatches(actions)
    assert state.jobs["j1"].state == JobState.RUNNING


def test_three_worker_crashes_make_the_job_poison_and_the_rest_completes() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(2), 0.0)
    for _ in range(3):
        state.job_failed("a", "j0", "worker died (SIGABRT)", 1.0, crashed=True)
        if state.jobs["j0"].state == JobState.RUNNING:
            continue
    assert state.jobs["j0"].state == JobState.POISON
    assert "3 times" in state.jobs["j0"].reason and "SIGABRT" in state.jobs["j0"].reason
    finish(state, "a", "j1")
    assert state.jobs["j1"].state == JobState.DONE


def test_missing_model_routes_around_the_node_without_spending_an_attempt() -> None:
    state = SchedulerState()
    for node in ("a", "b"):
        state.add_node(node, node, node, 0.0)
        state.node_ready(node, 0.0, slots=1, models=["lama"], device="cpu")
    state.submit_batch("b1", "batch", "/out", specs(1, model="lama", memory=0), 0.0)
    first = state.jobs["j0"].node
    assert first is not None
    actions = state.job_failed(first, "j0", "no lama here", 1.0, missing_model=True)
    other = "b" if first == "a" else "a"
    assert dispatches(actions) == [(other, "j0")]
    assert state.jobs["j0"].attempts == 1
    assert not state.nodes[first].can_run(state.jobs["j0"])


def test_capability_routing_model_device_and_memory() -> None:
    state = SchedulerState()
    state.add_node("cpu", "cpu", "x", 0.0)
    state.node_ready("cpu", 0.0, slots=1, models=["opencv-ns"], device="cpu", ram_total=8 * GB)
    state.add_node("gpu", "gpu", "y", 0.0)
    state.node_ready(
        "gpu",
        0.0,
        slots=1,
        models=["lama", "opencv-ns"],
        device="RTX",
        has_gpu=True,
        vram_total=4 * GB,
    )
    jobs = [
        JobSpec("needs-lama", "a", model="lama"),
        JobSpec("needs-cuda", "b", model="opencv-ns", device="cuda"),
        JobSpec("too-big", "c", model="opencv-ns", device="cpu", memory=16 * GB),
        JobSpec("fits-cpu", "d", model="opencv-ns", device="cpu", memory=2 * GB),
    ]
    sent = dict((j, n) for n, j in dispatches(state.submit_batch("b", "b", "/o", jobs, 0.0)))
    assert sent["needs-lama"] == "gpu" and sent["needs-cuda"] == "gpu"
    assert "too-big" not in sent  # bigger than any node: waits, never sent to die
    assert sent["fits-cpu"] == "cpu"


def test_busy_node_without_free_memory_gets_no_prefetch() -> None:
    state = SchedulerState()
    state.add_node("a", "a", "x", 0.0)
    state.node_ready("a", 0.0, slots=1, models=[], device="RTX", has_gpu=True, vram_total=8 * GB)
    state.node_seen(
        "a",
        0.0,
        Metrics(
            cpu_percent=1,
            load1=0,
            ram_used=1,
            ram_total=2,
            gpus=[GpuMetrics(index=0, vram_free=1 * GB)],
        ),
    )
    sent = dispatches(state.submit_batch("b", "b", "/o", specs(2, memory=3 * GB), 0.0))
    assert sent == [("a", "j0")]  # idle: tries; busy and no room: no second job


def test_per_job_timeout_cancels_on_node_and_retries() -> None:
    state = make_state({"a": 1}, job_timeout=10.0)
    state.submit_batch("b1", "batch", "/out", specs(1), 0.0)
    state.node_seen("a", 10.5)
    actions = state.tick(10.5)
    assert CancelOnNode("a", "j0") in actions
    assert dispatches(actions) == [("a", "j0")]
    assert state.jobs["j0"].attempts == 2 and "timed out" in state.jobs["j0"].reason
    # the timed-out lease's FAILED(cancelled) does not disturb the retry (lease 2)
    state.job_failed("a", "j0", "cancelled", 10.6, cancelled=True, lease=1)
    assert state.jobs["j0"].state == JobState.RUNNING and state.jobs["j0"].lease == 2
    actions = state.job_failed("a", "j0", "cancelled", 10.7, cancelled=True, lease=2)
    assert state.jobs["j0"].state == JobState.CANCELLED


def test_cancel_queued_and_running_jobs_and_batch() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(4), 0.0)
    actions = state.cancel_batch("b1", 1.0)
    cancels = [a for a in actions if isinstance(a, CancelOnNode)]
    assert sorted(c.job_id for c in cancels) == ["j0", "j1"]
    assert all(j.state == JobState.CANCELLED for j in state.jobs.values())
    assert BatchFinished("b1") in actions
    assert state.batches["b1"].view(state, 1.0).state == BatchState.CANCELLED
    # a result that still arrives for a cancelled job is not written
    late = state.job_result("a", "j0", 0.1, 1.2)
    assert not any(isinstance(a, WriteOutput) for a in late)
    assert dispatches(late) == []


def test_cancel_does_not_interrupt_an_output_being_written() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(1), 0.0)
    state.job_result("a", "j0", 0.1, 1.0)
    assert state.cancel_job("j0", 1.0) == []
    state.output_written("j0", 1.1)
    assert state.jobs["j0"].state == JobState.DONE


def test_pause_queue_and_pause_one_batch() -> None:
    state = make_state({"a": 1})
    state.pause(True, 0.0)
    assert dispatches(state.submit_batch("b1", "batch", "/out", specs(2), 0.0)) == []
    assert dispatches(state.submit_interactive(JobSpec("edit", "canvas"), 0.0)) == [("a", "edit")]
    assert state.batches["b1"].view(state, 0.0).state == BatchState.PAUSED
    state.pause_batch("b1", True, 0.1)
    assert dispatches(state.pause(False, 0.2)) == []
    assert dispatches(state.pause_batch("b1", False, 0.3)) == [("a", "j0")]


def test_move_batch_changes_which_batch_runs_first() -> None:
    state = make_state({"a": 1})
    state.pause(True, 0.0)
    state.submit_batch("b1", "one", "/out", specs(2, "x"), 0.0)
    state.submit_batch("b2", "two", "/out", specs(2, "y"), 0.0)
    state.move_batch("b2", -1, 0.0)
    assert state.batches["b2"].position == 0 and state.batches["b1"].position == 1
    assert [n for _, n in dispatches(state.pause(False, 0.1))] == ["y0", "y1"]


def test_retry_failed_requeues_failed_but_not_poison() -> None:
    state = make_state({"a": 1})
    state.submit_batch("b1", "batch", "/out", specs(2), 0.0)
    for _ in range(3):
        state.job_failed("a", "j0", "bad", 1.0)
        state.job_failed("a", "j1", "crash", 1.0, crashed=True)
    assert state.jobs["j0"].state == JobState.FAILED
    assert state.jobs["j1"].state == JobState.POISON
    actions = state.retry_failed("b1", 2.0)
    assert dispatches(actions) == [("a", "j0")]
    assert state.jobs["j0"].attempts == 1 and state.jobs["j1"].state == JobState.POISON


def test_disabled_node_gets_no_new_jobs_and_removed_node_releases_its_jobs() -> None:
    state = make_state({"a": 1, "b": 1})
    state.set_node_enabled("b", False, 0.0)
    sent = dispatches(state.submit_batch("b1", "batch", "/out", specs(3), 0.0))
    assert {n for n, _ in sent} == {"a"}
    actions = state.remove_node("a", 1.0)
    assert NodeLost("a", "removed") in actions
    assert all(j.state == JobState.QUEUED for j in state.jobs.values())
    assert dispatches(state.set_node_enabled("b", True, 1.1))[0][0] == "b"


def test_restored_batch_keeps_done_jobs_and_requeues_running_ones() -> None:
    state = make_state({"a": 4})
    jobs = [
        JobSpec("done", "a", state=JobState.DONE),
        JobSpec("was-running", "b", state=JobState.RUNNING, attempts=1),
        JobSpec("skipped", "c", state=JobState.SKIPPED, reason="output exists"),
    ]
    actions = state.submit_batch("b1", "batch", "/out", jobs, 0.0, resumed=True)
    assert dispatches(actions) == [("a", "was-running")]
    view = state.batches["b1"].view(state, 0.0)
    assert view.resumed and view.done == 2 and view.total == 3


def test_refused_node_and_events_carry_reasons() -> None:
    state = make_state({"a": 1})
    actions = state.node_refused(
        "a", "protocol version mismatch: you speak 1, agent speaks 2", version=True
    )
    views = [a.event.node for a in actions if isinstance(a, Publish) and hasattr(a.event, "node")]
    assert views[-1].state == NodeState.VERSION_MISMATCH and "2" in views[-1].reason


def test_batch_events_count_progress_and_snapshot_matches() -> None:
    state = make_state({"a": 2})
    state.submit_batch("b1", "batch", "/out", specs(3), 0.0)
    finish(state, "a", "j0", 1.0)
    actions = finish(state, "a", "j1", 2.0)
    batch_views = [
        a.event.batch
        for a in actions
        if isinstance(a, Publish) and isinstance(a.event, BatchChanged)
    ]
    last = batch_views[-1]
    assert (last.done, last.running, last.total) == (2, 1, 3)
    assert last.eta_seconds is not None and last.eta_seconds > 0
    snap = state.snapshot(2.0)
    assert snap.batches[0] == state.batches["b1"].view(state, 2.0)
    assert {j.job_id for j in snap.jobs} == {"j0", "j1", "j2"}
    assert snap.nodes[0].jobs_done == 2 and snap.nodes[0].throughput > 0


def test_ten_thousand_jobs_dispatch_quickly() -> None:
    state = make_state({f"n{i}": 4 for i in range(16)})
    state.submit_batch("b1", "big", "/out", specs(10_000), 0.0)
    done = 0
    while done < 10_000:
        running = [(n.node_id, j) for n in state.nodes.values() for j in list(n.assigned)]
        for node_id, job_id in running:
            finish(state, node_id, job_id, 1.0 + done * 1e-4)
            done += 1
    assert state.batches["b1"].view(state, 5.0).state == BatchState.DONE


def test_declined_job_goes_elsewhere_without_an_attempt_and_the_node_rests() -> None:
    state = make_state({"a": 1, "b": 1})
    state.submit_batch("b1", "batch", "/out", specs(1), 0.0)
    first = state.jobs["j0"].node
    assert first is not None
    other = "b" if first == "a" else "a"
    actions = state.job_failed(first, "j0", "node is full", 1.0, declined=True)
    assert dispatches(actions) == [(other, "j0")]
    assert state.jobs["j0"].attempts == 1
    state.job_failed(other, "j0", "node is full", 1.1, declined=True)
    assert state.jobs["j0"].state == JobState.QUEUED  # both resting: it waits, not fails
    assert dispatches(state.tick(2.2))[0][1] == "j0"
