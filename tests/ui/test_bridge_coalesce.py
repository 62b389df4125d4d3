"""ClusterBridge gathering events: one update per frame, each job once with its latest view."""

from __future__ import annotations

import pytest

from lama_desktop.cluster.events import (
    BatchChanged,
    BatchState,
    BatchView,
    EventBus,
    JobChanged,
    JobState,
    JobView,
    Notice,
    QueuePaused,
)
from lama_desktop.ui.bridge import ClusterBridge
from lama_desktop.ui.queue_model import FETCH_ROWS, QueueModel

pytestmark = pytest.mark.gui


def job(i: int, state: JobState = JobState.QUEUED, batch_id: str = "b1") -> JobView:
    return JobView(f"j{i}", batch_id, f"/photos/{i}.png", None, state)


def batch(total: int, batch_id: str = "b1") -> BatchView:
    return BatchView(batch_id, "holiday", "/out", BatchState.RUNNING, total)


def test_events_are_gathered_and_handed_on_once_per_flush(qtbot) -> None:
    bus = EventBus()
    bridge = ClusterBridge(bus, coalesce_ms=20)
    flushes: list[list[JobView]] = []
    bridge.jobsChanged.connect(flushes.append)
    notices: list[str] = []
    bridge.noticeRaised.connect(lambda title, _text: notices.append(title))
    bus.publish(BatchChanged(batch(3)))
    for i in range(3):
        bus.publish(JobChanged(job(i)))
    bus.publish(JobChanged(job(1, JobState.RUNNING)))
    bus.publish(Notice("first", ""))
    bus.publish(Notice("second", ""))
    bus.publish(QueuePaused(True))
    assert flushes == [] and bridge.batch("b1") is None  # nothing yet: gathered
    qtbot.waitUntil(lambda: bool(flushes), timeout=2000)
    assert len(flushes) == 1
    assert [(j.job_id, j.state) for j in flushes[0]] == [
        ("j0", JobState.QUEUED),
        ("j2", JobState.QUEUED),
        ("j1", JobState.RUNNING),  # once, with its latest view
    ]
    assert bridge.batch("b1") is not None and bridge.is_paused()
    assert notices == ["first", "second"]  # notices are never merged
    bridge.close()


def test_a_huge_batch_becomes_rows_in_chunks_as_the_view_asks(qtbot) -> None:
    bus = EventBus()
    bridge = ClusterBridge(bus, coalesce_ms=20)
    model = QueueModel(bridge)
    count = FETCH_ROWS * 2 + 10
    bus.publish(BatchChanged(batch(count)))
    for i in range(count):
        bus.publish(JobChanged(job(i)))
    bridge.flush()
    parent = model.index(0, 0)
    assert model.rowCount(parent) == FETCH_ROWS and model.canFetchMore(parent)
    model.fetchMore(parent)
    assert model.rowCount(parent) == FETCH_ROWS * 2
    model.fetchMore(parent)
    assert model.rowCount(parent) == count and not model.canFetchMore(parent)
    # An update of a shown job changes its row; one beyond them is only remembered.
    changed: list[int] = []
    model.dataChanged.connect(lambda top, bottom: changed.extend([top.row(), bottom.row()]))
    bus.publish(JobChanged(job(3, JobState.DONE)))
    bridge.flush()
    assert changed == [3, 3]
    assert model.data(model.index(3, 1, parent)) == "done"
    bridge.close()


def test_jobs_of_a_large_batch_beyond_the_first_chunk_wait_for_fetch(qtbot) -> None:
    bus = EventBus()
    bridge = ClusterBridge(bus)  # events at once: rows appear as jobs arrive, up to a chunk
    model = QueueModel(bridge)
    bus.publish(BatchChanged(batch(FETCH_ROWS + 5)))
    for i in range(FETCH_ROWS + 5):
        bus.publish(JobChanged(job(i)))
    parent = model.index(0, 0)
    assert model.rowCount(parent) == FETCH_ROWS
    assert model.canFetchMore(parent)
    bridge.close()
