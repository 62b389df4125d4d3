"""WorkerSupervisor logic with fake processes and a fake clock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil

from lama_desktop.cluster.supervisor import (
    BACKOFF_MAX_S,
    HEALTHY_AFTER_S,
    WorkerStatus,
    WorkerSupervisor,
    describe_exit,
)


class FakeProcess:
    """Enough of Popen: a return code that a test sets, and the signals it was sent."""

    next_pid = 100

    def __init__(self, ignores_sigterm: bool = False) -> None:
        FakeProcess.next_pid += 1
        self.pid = FakeProcess.next_pid
        self.returncode: int | None = None
        self.signals: list[int] = []
        self.ignores_sigterm = ignores_sigterm

    def poll(self) -> int | None:
        return self.returncode

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        if sig == signal.SIGTERM and not self.ignores_sigterm:
            self.returncode = -signal.SIGTERM

    def kill(self) -> None:
        self.signals.append(signal.SIGKILL)
        self.returncode = -signal.SIGKILL


class Spawner:
    def __init__(self) -> None:
        self.started: list[tuple[str, str, FakeProcess]] = []
        self.ignore_sigterm = False

    def __call__(self, worker_id: str, device: str) -> FakeProcess:
        process = FakeProcess(self.ignore_sigterm)
        self.started.append((worker_id, device, process))
        return process

    def latest(self, worker_id: str) -> FakeProcess:
        return [p for w, _d, p in self.started if w == worker_id][-1]


def test_start_ready_busy_idle() -> None:
    spawn = Spawner()
    sup = WorkerSupervisor(spawn)
    sup.set_count(["cpu", "cuda:0"], now=0.0)
    assert [(w, d) for w, d, _p in spawn.started] == [("w0", "cpu"), ("w1", "cuda:0")]
    assert {s.status for s in sup.slots.values()} == {WorkerStatus.STARTING}
    assert sup.idle_workers() == []
    sup.heard_from("w1", 0.5)
    sup.mark_ready("w1", ["opencv-ns"])
    assert sup.idle_workers() == ["w1"]
    sup.mark_busy("w1", "job-1")
    assert sup.worker_of("job-1") == "w1" and sup.idle_workers() == []
    sup.mark_idle("w1", 0.6)
    assert sup.slots["w1"].status == WorkerStatus.READY and sup.worker_of("job-1") is None
    assert sup.tick(1.0) == []


def test_crash_reports_the_job_and_restarts_with_doubling_backoff() -> None:
    spawn = Spawner()
    sup = WorkerSupervisor(spawn)
    sup.set_count(["cpu"], now=0.0)
    sup.mark_ready("w0", [])
    sup.mark_busy("w0", "job-1")
    spawn.latest("w0").returncode = -signal.SIGSEGV
    (event,) = sup.tick(1.0)
    assert (event.worker_id, event.job, event.crashed, event.cancelled) == (
        "w0",
        "job-1",
        True,
        False,
    )
    assert "SIGSEGV" in describe_exit(event.returncode)
    assert sup.slots["w0"].status == WorkerStatus.CRASHED
    assert sup.tick(1.4) == [] and len(spawn.started) == 1  # waits its 0.5 s backoff
    sup.tick(1.5)
    assert len(spawn.started) == 2 and sup.slots["w0"].status == WorkerStatus.STARTING
    # Crashing again at once doubles the wait: 1 s, then 2 s, ... capped at 30 s.
    waits = []
    now = 1.5
    for _ in range(8):
        spawn.latest("w0").returncode = 1
        sup.tick(now)
        restart_at = sup.slots["w0"].restart_at
        assert restart_at is not None
        waits.append(restart_at - now)
        now = restart_at
        sup.tick(now)
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0, BACKOFF_MAX_S, BACKOFF_MAX_S, BACKOFF_MAX_S]
    # A worker that ran healthily for a minute starts again from 0.5 s.
    spawn.latest("w0").returncode = 1
    sup.tick(now + HEALTHY_AFTER_S)
    restart_at = sup.slots["w0"].restart_at
    assert restart_at is not None and restart_at - (now + HEALTHY_AFTER_S) == 0.5


def test_cancel_stops_the_worker_and_restarts_it_at_once() -> None:
    spawn = Spawner()
    sup = WorkerSupervisor(spawn)
    sup.set_count(["cpu"], now=0.0)
    sup.mark_ready("w0", [])
    sup.mark_busy("w0", "job-1")
    first = spawn.latest("w0")
    sup.stop_job("w0", now=1.0)
    assert first.signals == [signal.SIGTERM]
    (event,) = sup.tick(1.1)
    assert event.cancelled and not event.crashed and event.job == "job-1"
    assert len(spawn.started) == 2 and sup.slots["w0"].status == WorkerStatus.STARTING


def test_stop_all_terminates_then_kills_after_the_grace() -> None:
    spawn = Spawner()
    spawn.ignore_sigterm = True
    sup = WorkerSupervisor(spawn, grace=2.0)
    sup.set_count(["cpu", "cpu"], now=0.0)
    sup.stop_all(now=10.0)
    assert all(s.status == WorkerStatus.STOPPING for s in sup.slots.values())
    assert sup.tick(11.0) == [] and not sup.all_stopped()
    sup.tick(12.0)  # grace over: SIGKILL
    assert all(p.signals == [signal.SIGTERM, signal.SIGKILL] for _w, _d, p in spawn.started)
    events = sup.tick(12.1)
    assert len(events) == 2 and not any(e.crashed for e in events)
    assert sup.all_stopped() and len(spawn.started) == 2  # nothing restarted
    assert {s.status for s in sup.slots.values()} == {WorkerStatus.STOPPED}


def test_set_count_retires_extra_workers_and_adds_new_ones() -> None:
    spawn = Spawner()
    sup = WorkerSupervisor(spawn)
    sup.set_count(["cpu", "cpu", "cpu"], now=0.0)
    sup.set_count(["cpu"], now=1.0)
    sup.tick(1.1)
    assert [s.status for s in sup.slots.values()] == [
        WorkerStatus.STARTING,
        WorkerStatus.STOPPED,
        WorkerStatus.STOPPED,
    ]
    sup.set_count(["cpu", "cpu"], now=2.0)
    assert [w for w, _d, _p in spawn.started] == ["w0", "w1", "w2", "w3"]


def test_turning_workers_down_spares_busy_ones_until_their_job_is_done() -> None:
    spawn = Spawner()
    sup = WorkerSupervisor(spawn)
    sup.set_count(["cpu", "cpu"], now=0.0)
    for worker in ("w0", "w1"):
        sup.mark_ready(worker, [])
    sup.mark_busy("w0", "job-1")
    sup.set_count(["cpu"], now=1.0)  # the idle w1 goes
    assert sup.slots["w1"].status == WorkerStatus.STOPPING
    assert sup.slots["w0"].status == WorkerStatus.BUSY
    sup.set_count([], now=2.0)  # w0 is busy: it finishes first
    assert spawn.latest("w0").signals == [] and sup.idle_workers() == []
    sup.mark_idle("w0", now=3.0)
    assert spawn.latest("w0").signals == [signal.SIGTERM]
    events = sup.tick(3.1)
    assert {e.worker_id for e in events} == {"w0", "w1"} and not any(e.job for e in events)
    assert sup.all_stopped() and len(spawn.started) == 2


def test_a_silent_worker_is_killed_and_restarted() -> None:
    spawn = Spawner()
    sup = WorkerSupervisor(spawn, silence=5.0)
    sup.set_count(["cpu"], now=0.0)
    sup.heard_from("w0", 3.0)
    assert sup.tick(7.9) == []
    sup.tick(8.1)
    assert spawn.latest("w0").signals == [signal.SIGKILL]
    (event,) = sup.tick(8.2)
    assert event.crashed


def test_a_new_worker_gets_time_to_import_before_it_counts_as_silent() -> None:
    from lama_desktop.cluster.supervisor import WORKER_START_S

    spawn = Spawner()
    sup = WorkerSupervisor(spawn, silence=5.0)
    sup.set_count(["cpu"], now=0.0)
    sup.tick(30.0)  # never heard from yet: still importing, not hung
    assert spawn.latest("w0").signals == []
    sup.tick(WORKER_START_S + 1)
    assert spawn.latest("w0").signals == [signal.SIGKILL]


def test_a_spawn_that_fails_is_retried_later() -> None:
    calls = []

    def spawn(worker_id: str, device: str) -> FakeProcess:
        calls.append(worker_id)
        if len(calls) == 1:
            raise OSError("no such python")
        return FakeProcess()

    sup = WorkerSupervisor(spawn)
    sup.set_count(["cpu"], now=0.0)
    assert sup.slots["w0"].status == WorkerStatus.CRASHED
    sup.tick(0.6)
    assert calls == ["w0", "w0"] and sup.slots["w0"].status == WorkerStatus.STARTING


def test_real_process_exit_codes_are_seen() -> None:
    """The supervisor against real subprocesses: a segfault is a crash, SIGTERM stops."""
    crash = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)"]
    sleep = [sys.executable, "-c", "import time; time.sleep(30)"]
    commands = {"w0": crash, "w1": sleep}
    sup = WorkerSupervisor(lambda w, d: subprocess.Popen(commands[w]), grace=3.0)
    sup.set_count(["cpu", "cpu"], now=time.monotonic())
    deadline = time.monotonic() + 10
    crashed = []
    while not crashed and time.monotonic() < deadline:
        crashed = [e for e in sup.tick(time.monotonic()) if e.crashed]
        time.sleep(0.02)
    assert crashed[0].worker_id == "w0" and crashed[0].returncode == -signal.SIGSEGV
    sleeper = sup.slots["w1"].process
    assert sleeper is not None
    sup.stop_all(time.monotonic())
    while not sup.all_stopped() and time.monotonic() < deadline:
        sup.tick(time.monotonic())
        time.sleep(0.02)
    assert sup.all_stopped() and not psutil.pid_exists(sleeper.pid)
