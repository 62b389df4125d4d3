"""Journal: batches, jobs and nodes survive a reopen; resume rules for outputs already written."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import pytest

from lama_desktop.cluster.events import BatchState, JobState
from lama_desktop.cluster.journal import (
    Journal,
    StoredBatch,
    StoredJob,
    StoredNode,
    default_journal_path,
)


def make_batch(
    tmp_path: Path, n: int = 3, created: float | None = None
) -> tuple[StoredBatch, list[StoredJob]]:
    batch = StoredBatch(
        "b1",
        "holiday",
        str(tmp_path / "out"),
        {"model": "opencv-ns"},
        False,
        BatchState.QUEUED,
        created=time.time() if created is None else created,
    )
    jobs = [
        StoredJob(
            f"j{i}", "b1", i, f"/in/{i}.jpg", f"/m/{i}.png", str(tmp_path / "out" / f"{i}.jpg")
        )
        for i in range(n)
    ]
    return batch, jobs


def test_default_path_follows_lama_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAMA_DATA_DIR", str(tmp_path / "d"))
    assert default_journal_path() == tmp_path / "d" / "journal.sqlite3"


def test_batch_and_job_updates_survive_a_reopen_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    batch, jobs = make_batch(tmp_path)
    journal.add_batch(batch, jobs)
    journal.update_jobs(
        [
            StoredJob(**{**jobs[0].__dict__, "state": JobState.DONE, "seconds": 1.5, "node": "n1"}),
            StoredJob(
                **{**jobs[1].__dict__, "state": JobState.FAILED, "attempts": 3, "reason": "bad"}
            ),
        ]
    )
    journal.update_batch("b1", BatchState.RUNNING, True, 4)
    journal.close()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"

    again = Journal(path)
    [(stored, stored_jobs)] = again.unfinished()
    assert stored.settings == {"model": "opencv-ns"} and stored.paused and stored.position == 4
    assert [j.state for j in stored_jobs] == [JobState.DONE, JobState.FAILED, JobState.QUEUED]
    assert stored_jobs[0].seconds == 1.5 and stored_jobs[0].node == "n1"
    assert stored_jobs[1].reason == "bad" and stored_jobs[1].attempts == 3
    again.close()


def test_finished_batches_are_not_resumed(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    batch, jobs = make_batch(tmp_path)
    journal.add_batch(batch, jobs)
    journal.update_batch("b1", BatchState.DONE, False, 0)
    assert journal.unfinished() == []
    assert journal.batch("b1") is not None and journal.batch("b1").state == BatchState.DONE
    journal.delete_batch("b1")
    assert journal.batch("b1") is None and journal.jobs("b1") == []
    journal.close()


def test_a_damaged_batch_row_is_skipped_and_the_others_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    batch, jobs = make_batch(tmp_path)
    journal.add_batch(batch, jobs)
    other = StoredBatch("b2", "broken", str(tmp_path / "o2"), {}, False, BatchState.QUEUED)
    journal.add_batch(other, [StoredJob("k0", "b2", 0, "/in/x.jpg", "/m/x.png", "/o2/x.jpg")])
    journal.close()
    with sqlite3.connect(path) as db:  # another version wrote a state this one does not know
        db.execute("UPDATE jobs SET state='teleported' WHERE job_id='k0'")
    journal = Journal(path)
    resumed = journal.unfinished()
    assert [b.batch_id for b, _ in resumed] == ["b1"]
    assert "b2 cannot be read" in caplog.text
    journal.close()


def test_output_written_after_submission_but_not_journaled_counts_as_done(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    batch, jobs = make_batch(tmp_path, created=time.time() - 60)
    journal.add_batch(batch, jobs)
    out = Path(jobs[1].output)
    out.parent.mkdir(parents=True)
    out.write_bytes(b"written just before the crash")
    old = Path(jobs[2].output)
    old.write_bytes(b"stale file from before the batch (overwrite run)")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    [(_, stored_jobs)] = journal.unfinished()
    assert [j.state for j in stored_jobs] == [JobState.QUEUED, JobState.DONE, JobState.QUEUED]
    journal.close()


def test_a_failed_transaction_leaves_nothing_behind(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    batch, jobs = make_batch(tmp_path)
    with pytest.raises(sqlite3.IntegrityError):
        journal.add_batch(batch, [*jobs, jobs[0]])  # duplicate job id
    assert journal.batch("b1") is None and journal.jobs("b1") == []
    journal.close()


def test_paired_nodes_registry(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    journal = Journal(path)
    journal.save_node(StoredNode("n1", "attic", "tcp://10.0.0.2:7890", "K" * 40, added=1.0))
    journal.save_node(StoredNode("n2", "garage", "tcp://10.0.0.3:7890", "L" * 40, added=2.0))
    journal.set_node_enabled("n1", False)
    journal.close()
    again = Journal(path)
    assert [(n.node_id, n.enabled) for n in again.nodes()] == [("n1", False), ("n2", True)]
    again.remove_node("n1")
    assert [n.name for n in again.nodes()] == ["garage"]
    again.close()


def test_other_schema_version_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    db.commit()
    db.close()
    with pytest.raises(RuntimeError, match="schema 99"):
        Journal(path)


def test_prune_finished_forgets_finished_batches_and_their_jobs(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.sqlite3")
    states = {
        "old": BatchState.DONE,
        "open": BatchState.RUNNING,
        "just": BatchState.RUNNING,
        "gone": BatchState.CANCELLED,
    }
    for batch_id, state in states.items():
        batch, jobs = make_batch(tmp_path, n=2)
        jobs = [StoredJob(**{**j.__dict__, "job_id": f"{batch_id}{i}", "batch_id": batch_id})
                for i, j in enumerate(jobs)]  # fmt: skip
        journal.add_batch(StoredBatch(**{**batch.__dict__, "batch_id": batch_id}), jobs)
        journal.update_batch(batch_id, state, False, 0)
    # "just" finished, but its final state is not written yet: the scheduler names it.
    journal.prune_finished(["just"])
    assert [b.batch_id for b, _ in journal.unfinished()] == ["open"]
    assert journal.batch("old") is None and journal.batch("just") is None
    assert journal.jobs("old") == [] and journal.jobs("gone") == []
    assert len(journal.jobs("open")) == 2
    journal.close()
