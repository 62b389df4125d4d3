"""A journal damaged on disk: moved aside on open, a fresh one started, and what reads kept."""

from __future__ import annotations

import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from lama_desktop.cluster.events import BatchState, JobState
from lama_desktop.cluster.journal import Journal, StoredBatch, StoredJob, StoredNode
from lama_desktop.cluster.journal_salvage import find_damage

PAGE = 4096
JOBS = 3000


def _fill(path: Path, tmp_path: Path, jobs: int = JOBS) -> None:
    """Two paired nodes, an open batch of `jobs` jobs and a finished one."""
    journal = Journal(path)
    journal.save_node(StoredNode("n1", "attic", "tcp://10.0.0.2:7890", "K" * 40, added=1.0))
    journal.save_node(StoredNode("n2", "garage", "tcp://10.0.0.3:7890", "L" * 40, False, 2.0))
    open_batch = StoredBatch(
        "b1", "holiday", str(tmp_path / "out"), {"model": "opencv-ns"}, False,
        BatchState.RUNNING, created=time.time(),
    )  # fmt: skip
    rows = [
        StoredJob(f"b1-{i}", "b1", i, f"/in/{i:05}.jpg", f"/m/{i:05}.png", f"/o/{i:05}.jpg")
        for i in range(jobs)
    ]
    journal.add_batch(open_batch, rows)
    journal.update_jobs([StoredJob(**{**rows[7].__dict__, "state": JobState.FAILED})])
    done = StoredBatch("b0", "old", "/o0", {}, False, BatchState.DONE, created=1.0)
    journal.add_batch(done, [StoredJob("b0-0", "b0", 0, "/a.jpg", "/a.png", "/o0/a.jpg")])
    journal.close()


def _checkpoint(path: Path) -> None:
    """Move every commit from the -wal into the main file (so a page there is the only copy)."""
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def _jobs_leaf_in_the_middle(path: Path) -> int:
    """The page number of a leaf page of the jobs table, half-way through it."""
    db = sqlite3.connect(path)
    try:
        pages = [
            n for (n,) in db.execute(
                "SELECT pageno FROM dbstat WHERE name='jobs' AND pagetype='leaf' ORDER BY pageno"
            )
        ]  # fmt: skip
    finally:
        db.close()
    assert len(pages) > 10, "the jobs table should span many pages"
    return pages[len(pages) // 2]


def _damage_page(path: Path, pageno: int, content: bytes) -> None:
    with path.open("r+b") as handle:
        handle.seek((pageno - 1) * PAGE)
        handle.write(content)


def _aside(tmp_path: Path, name: str = "j.sqlite3") -> list[Path]:
    found = tmp_path.glob(f"{name}.damaged-*")
    return sorted(p for p in found if not p.name.endswith(("-wal", "-shm")))


def test_a_journal_overwritten_with_garbage_is_moved_aside_and_replaced(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "j.sqlite3"
    _fill(path, tmp_path, jobs=20)
    garbage = bytes(range(256)) * 64
    path.write_bytes(garbage)
    journal = Journal(path)
    try:
        assert journal.recovery is not None
        assert "not a database" in journal.recovery.problem
        [aside] = _aside(tmp_path)
        assert aside.read_bytes() == garbage  # kept untouched for a post-mortem
        assert journal.recovery.damaged == aside
        assert (journal.recovery.nodes, journal.recovery.batches) == (0, 0)
        assert not journal.recovery.readable and journal.recovery.lost == 0
        assert journal.nodes() == [] and journal.unfinished() == []
        journal.save_node(StoredNode("n9", "new", "tcp://10.0.0.9:1", "M" * 40))  # usable
    finally:
        journal.close()
    assert "journal was damaged" in caplog.text and str(aside) in caplog.text
    again = Journal(path)  # the fresh journal is sound: nothing is moved aside twice
    assert again.recovery is None and [n.node_id for n in again.nodes()] == ["n9"]
    again.close()
    assert len(_aside(tmp_path)) == 1


@pytest.mark.parametrize(
    "content", [bytes(PAGE), b"\xa5\x17" * (PAGE // 2)], ids=["zeroed", "garbled"]
)
def test_one_bad_page_loses_only_its_rows(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "j.sqlite3"
    _fill(path, tmp_path)
    _checkpoint(path)
    _damage_page(path, _jobs_leaf_in_the_middle(path), content)
    assert find_damage(path) is not None
    journal = Journal(path)
    try:
        recovery = journal.recovery
        assert recovery is not None
        # Paired nodes first, with their enabled flag; the finished batch is not carried over.
        assert [(n.node_id, n.enabled) for n in journal.nodes()] == [("n1", True), ("n2", False)]
        [(batch, jobs)] = journal.unfinished()
        assert batch.batch_id == "b1" and batch.settings == {"model": "opencv-ns"}
        # One 4 KB leaf holds a few dozen job rows: those are lost, every other row is kept.
        assert JOBS - 150 < len(jobs) < JOBS
        assert recovery.jobs == len(jobs) and recovery.batches == 1 and recovery.nodes == 2
        assert 0 < recovery.lost <= 150
        assert [j.seq for j in jobs] == sorted(j.seq for j in jobs)
        assert jobs[0].seq == 0 and jobs[-1].seq == JOBS - 1  # both sides of the hole survive
        assert {j.job_id: j.state for j in jobs}["b1-7"] == JobState.FAILED
        assert "could not be read" in recovery.message()
        assert len(_aside(tmp_path)) == 1
    finally:
        journal.close()


def test_commits_only_in_the_wal_are_recovered_and_the_wal_goes_aside(tmp_path: Path) -> None:
    source = tmp_path / "live" / "j.sqlite3"
    source.parent.mkdir()
    _fill(source, tmp_path, jobs=JOBS)
    _checkpoint(source)
    leaf = _jobs_leaf_in_the_middle(source)
    db = sqlite3.connect(source)
    db.execute("PRAGMA wal_autocheckpoint=0")
    db.execute("UPDATE nodes SET name='loft' WHERE node_id='n1'")
    db.commit()
    path = tmp_path / "j.sqlite3"  # the files as a crash leaves them: the update is in the WAL
    for suffix in ("", "-wal", "-shm"):
        shutil.copyfile(f"{source}{suffix}", f"{path}{suffix}")
    db.close()
    _damage_page(path, leaf, bytes(PAGE))
    wal = Path(f"{path}-wal").read_bytes()
    journal = Journal(path)
    try:
        assert journal.recovery is not None
        aside = journal.recovery.damaged
        assert Path(f"{aside}-wal").read_bytes() == wal  # moved along, untouched
        assert [n.name for n in journal.nodes()] == ["loft", "garage"]
    finally:
        journal.close()


def test_a_sound_journal_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    _fill(path, tmp_path, jobs=10)
    journal = Journal(path)
    assert journal.recovery is None and len(journal.nodes()) == 2
    journal.close()
    assert _aside(tmp_path) == []
