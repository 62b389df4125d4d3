"""A large batch is queued a chunk per loop turn (the app's GUI loop never stands still for
seconds), counts all its jobs from the start, and a stop midway loses none of them."""

from __future__ import annotations

import asyncio
import gc
import weakref
from pathlib import Path

import pytest

from lama_desktop.cluster.events import BatchChanged, Event, JobChanged, JobState
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import FEED_PER_TURN, Scheduler
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import BatchPlan, PlannedJob
from tests.integration.cluster_support import wait_for

pytestmark = pytest.mark.integration

COUNT = 3 * FEED_PER_TURN + 500
SETTINGS = JobSettings(model="opencv-ns", device="cpu")


def _scheduler(tmp_path: Path, **options: bool) -> Scheduler:
    keypair = load_or_create_keypair(tmp_path / "desktop.key")
    journal = tmp_path / "journal.sqlite3"
    return Scheduler(journal=journal, keypair=keypair, name="desk", **options)


def _plan(root: Path, count: int = COUNT) -> BatchPlan:
    jobs = [
        PlannedJob(root / "in" / f"{i}.png", root / "masks" / f"{i}.png", root / "out" / f"{i}.png")
        for i in range(count)
    ]
    return BatchPlan(jobs=jobs, skipped=[], already_done=[])


def test_a_large_batch_is_queued_over_loop_turns_and_a_stop_midway_loses_none(
    tmp_path: Path,
) -> None:
    async def first_run() -> str:
        scheduler = _scheduler(tmp_path)
        await scheduler.start()
        events: list[Event] = []
        scheduler.events.subscribe(events.append)
        batch_id = scheduler.submit_batch(_plan(tmp_path), SETTINGS, "big")
        record = scheduler.state.batches[batch_id]
        assert len(record.job_ids) == FEED_PER_TURN  # the rest come on later loop turns
        assert record.view(scheduler.state, 0.0).total == COUNT  # counted from the start
        between: list[int] = []
        asyncio.get_running_loop().call_soon(lambda: between.append(len(record.job_ids)))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert between and FEED_PER_TURN < between[0] < COUNT  # other work ran between chunks
        told = {e.job.job_id for e in events if isinstance(e, JobChanged)}
        assert FEED_PER_TURN < len(told) < COUNT  # each chunk told as it is queued
        assert all(e.batch.total == COUNT for e in events if isinstance(e, BatchChanged))
        await scheduler.stop()  # midway: the journal has the whole batch all the same
        assert len(record.job_ids) < COUNT
        return batch_id

    async def second_run(batch_id: str) -> None:
        scheduler = _scheduler(tmp_path)
        await scheduler.start()
        try:
            await wait_for(lambda: not scheduler.state.missing_jobs(batch_id), 10, "the feed")
            record = scheduler.state.batches[batch_id]
            assert record.resumed and len(record.job_ids) == COUNT
            assert record.counts[JobState.QUEUED] == COUNT  # no node yet: all wait
        finally:
            await scheduler.stop()

    batch_id = asyncio.run(first_run())
    asyncio.run(second_run(batch_id))


def test_the_apps_scheduler_holds_the_collector_while_it_queues_and_frees_it_after(
    tmp_path: Path,
) -> None:
    async def run() -> None:
        scheduler = _scheduler(tmp_path, pause_collector=True)
        await scheduler.start()
        try:
            frozen = gc.get_freeze_count()
            # A whole number of chunks: the last one leaves the jobs' generator unfinished.
            plan = _plan(tmp_path / "a", 4 * FEED_PER_TURN)
            planned = weakref.ref(plan)
            first = scheduler.submit_batch(plan, SETTINGS, "a")
            del plan  # as the app's batch dialog goes
            assert not gc.isenabled()  # no full collection walks the loop while it queues
            await wait_for(lambda: not scheduler.state.missing_jobs(first), 10, "the feed")
            assert gc.isenabled() and gc.get_freeze_count() > frozen + 4 * FEED_PER_TURN
            # Nothing keeps the plan once queued (a reference cycle would, for good: the
            # collector froze it); the scheduler keeps only its jobs.
            await wait_for(lambda: planned() is None, 10, "the plan to go")
            second = scheduler.submit_batch(_plan(tmp_path / "b"), SETTINGS, "b")
            assert scheduler.state.missing_jobs(second) and not gc.isenabled()
        finally:
            await scheduler.stop()  # midway through the second feed
        assert gc.isenabled()

    was = gc.isenabled()
    gc.enable()
    try:
        asyncio.run(run())
    finally:
        gc.unfreeze()
        if not was:
            gc.disable()
