"""The journal while the scheduler runs: a deleted file is written again from memory, and a write
that fails (an UPDATE that finds no row) is logged and told at once, never lost silently."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path

import pytest
import zmq

from lama_desktop.cluster.events import BatchState, Event, JobState, Notice
from lama_desktop.cluster.journal import Journal, StoredBatch, StoredJob, StoredNode
from lama_desktop.cluster.keys import load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.engine.plan import plan_batch
from tests.integration.cluster_support import make_folder, wait_for

pytestmark = pytest.mark.integration

SETTINGS = JobSettings(model="opencv-ns", device="cpu")


def _journal_with_a_node(path: Path) -> None:
    journal = Journal(path)
    key = zmq.curve_keypair()[0].decode()
    journal.save_node(StoredNode("n-studio", "studio", "tcp://127.0.0.1:9", key, True, 1.0))
    journal.close()


def _rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


async def _started(tmp_path: Path, notices: list[Notice]) -> Scheduler:
    keypair = load_or_create_keypair(tmp_path / "desktop.key")
    scheduler = Scheduler(journal=tmp_path / "journal.sqlite3", keypair=keypair, name="desk")

    def on_event(event: Event) -> None:
        if isinstance(event, Notice):
            notices.append(event)

    scheduler.events.subscribe(on_event)
    await scheduler.start()
    return scheduler


def test_a_journal_deleted_while_running_is_written_again_from_memory(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    _journal_with_a_node(path)
    images, masks = make_folder(tmp_path, 3)
    notices: list[Notice] = []

    async def body() -> None:
        scheduler = await _started(tmp_path, notices)
        try:
            batch = scheduler.submit_batch(
                plan_batch(images, masks, tmp_path / "out"), SETTINGS, "b"
            )
            first, second, _third = scheduler.state.batches[batch].job_ids
            scheduler.cancel_job(first)
            await wait_for(lambda: _rows(path, "SELECT count(*) FROM jobs") == [(3,)], 5, "rows")
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            await wait_for(lambda: bool(notices), 5, "the recreated journal")
            assert notices[0].title == "Job journal recreated"
            scheduler.cancel_job(second)  # lands in the new file
            await asyncio.sleep(0.3)
        finally:
            await scheduler.stop()

    asyncio.run(body())
    journal = Journal(path)
    try:
        assert [n.node_id for n in journal.nodes()] == ["n-studio"]
        [(stored, jobs)] = journal.unfinished()
        assert stored.name == "b" and stored.settings["model"] == "opencv-ns"
        assert [j.state for j in jobs] == [JobState.CANCELLED, JobState.CANCELLED, JobState.QUEUED]
    finally:
        journal.close()


def test_an_update_that_finds_no_row_is_told_at_once_and_the_batch_written_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "journal.sqlite3"
    _journal_with_a_node(path)
    images, masks = make_folder(tmp_path, 3)
    notices: list[Notice] = []

    async def body() -> None:
        scheduler = await _started(tmp_path, notices)
        try:
            batch = scheduler.submit_batch(
                plan_batch(images, masks, tmp_path / "out"), SETTINGS, "b"
            )
            job = scheduler.state.batches[batch].job_ids[1]
            await wait_for(lambda: _rows(path, "SELECT count(*) FROM jobs") == [(3,)], 5, "rows")
            with sqlite3.connect(path) as db:  # rows lost behind the scheduler's back
                db.execute("DELETE FROM jobs WHERE job_id=?", (job,))
                db.execute("DELETE FROM nodes")
            scheduler.cancel_job(job)
            await wait_for(lambda: bool(notices), 5, "the missing job row to be told")
            assert f"no job row for {job}" in notices[0].text
            await wait_for(
                lambda: (
                    _rows(path, f"SELECT state FROM jobs WHERE job_id='{job}'") == [("cancelled",)]
                ),
                5,
                "the batch written again",
            )
            scheduler.set_node_enabled("n-studio", False)
            await wait_for(lambda: len(notices) == 2, 5, "the failed node write to be told")
            assert "no node row for n-studio" in notices[1].text
        finally:
            await scheduler.stop()

    with caplog.at_level(logging.ERROR, logger="lama_desktop.cluster.journal_writer"):
        asyncio.run(body())
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("no job row" in e for e in errors) and any("no node row" in e for e in errors)


def test_a_resumed_batch_removes_the_temp_outputs_its_killed_writer_left(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    images, masks = make_folder(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    journal = Journal(path)
    plan = plan_batch(images, masks, out)
    batch = StoredBatch("b1", "b", str(out), SETTINGS.to_dict(), False, BatchState.RUNNING)
    rows = [
        StoredJob(f"b1-{i}", "b1", i, str(j.image), str(j.mask), str(j.output))
        for i, j in enumerate(plan.jobs)
    ]
    journal.add_batch(batch, rows)
    journal.close()
    leftover = out / f".{plan.jobs[1].output.name}.deadbeef.tmp"
    leftover.write_bytes(b"half a photo: the app was killed mid-write")
    unrelated = out / ".other.png.deadbeef.tmp"
    unrelated.write_bytes(b"not this batch's")

    async def body() -> None:
        scheduler = await _started(tmp_path, [])
        try:
            assert "b1" in scheduler.state.batches  # resumed
            await wait_for(lambda: not leftover.exists(), 5, "the leftover to be removed")
        finally:
            await scheduler.stop()

    asyncio.run(body())
    assert unrelated.exists()


def test_changes_a_flush_had_taken_when_stop_cancelled_it_are_still_written(
    tmp_path: Path,
) -> None:
    # stop() cancels the flush loop wherever it is; a flush that had already taken the dirty
    # jobs but not written them yet must hand them back, so the final flush writes them.
    path = tmp_path / "journal.sqlite3"
    images, masks = make_folder(tmp_path, 2)
    held = threading.Event()

    async def body() -> str:
        scheduler = await _started(tmp_path, [])
        try:
            batch = scheduler.submit_batch(
                plan_batch(images, masks, tmp_path / "out"), SETTINGS, "b"
            )
            job = scheduler.state.batches[batch].job_ids[0]
            await wait_for(lambda: _rows(path, "SELECT count(*) FROM jobs") == [(2,)], 5, "rows")
            scheduler.writer.db.submit(held.wait, 10)  # the journal thread is busy for now
            scheduler.cancel_job(job)
            await wait_for(lambda: not scheduler.writer.dirty_jobs, 5, "a flush to take the job")
        finally:
            asyncio.get_running_loop().call_later(0.3, held.set)
            await scheduler.stop()
        return job

    job = asyncio.run(body())
    assert _rows(path, f"SELECT state FROM jobs WHERE job_id='{job}'") == [("cancelled",)]
