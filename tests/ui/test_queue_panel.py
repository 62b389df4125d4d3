"""Queue panel: a batch -> jobs tree updated in place, progress, reasons and queue commands."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QApplication, QMessageBox

from lama_desktop.cluster.events import (
    BatchChanged,
    BatchState,
    BatchView,
    EventBus,
    JobChanged,
    JobState,
    JobView,
    NodeChanged,
    NodeState,
    NodeView,
    QueuePaused,
)
from lama_desktop.ui.bridge import ClusterBridge
from lama_desktop.ui.model_downloads import ModelDownloads
from lama_desktop.ui.queue_model import COLUMNS, FAILED_ROLE, PROGRESS_ROLE, format_eta
from lama_desktop.ui.queue_panel import QueuePanel

pytestmark = pytest.mark.gui


class RecordingScheduler:
    """Test double for the queue commands; it publishes what the real scheduler would."""

    def __init__(self, bus: EventBus) -> None:
        self.bus, self.calls, self.paused = bus, [], False

    def __getattr__(self, name: str):
        def command(*args):
            self.calls.append((name, *args))

        return command

    def pause(self) -> None:
        self.calls.append(("pause",))
        self.bus.publish(QueuePaused(True))

    def resume(self) -> None:
        self.calls.append(("resume",))
        self.bus.publish(QueuePaused(False))


def batch(batch_id: str = "b1", **kw) -> BatchView:
    fields = {"state": BatchState.RUNNING, "total": 3, "position": 0}
    fields.update(kw)
    return BatchView(batch_id, f"holiday {batch_id}", f"/out/{batch_id}", **fields)


def job(job_id: str, batch_id: str = "b1", **kw) -> JobView:
    fields = {"state": JobState.QUEUED}
    fields.update(kw)
    return JobView(job_id, batch_id, f"/photos/{job_id}.jpg", f"/out/{job_id}.jpg", **fields)


def text(panel: QueuePanel, row: int, column: str, parent=QModelIndex(), role=0):  # noqa: B008
    model = panel.model
    return model.data(model.index(row, COLUMNS.index(column), parent), role or Qt.DisplayRole)


@pytest.fixture
def setup(qtbot, tmp_path):
    bus = EventBus()
    scheduler = RecordingScheduler(bus)
    downloads = ModelDownloads(tmp_path / "models")
    panel = QueuePanel(ClusterBridge(bus), scheduler, downloads=downloads)
    qtbot.addWidget(panel)
    return bus, scheduler, panel


def test_progress_eta_node_and_failure_reason(setup) -> None:
    bus, _, panel = setup
    resets: list[int] = []
    panel.model.modelReset.connect(lambda: resets.append(1))
    bus.publish(BatchChanged(batch(eta_seconds=150)))
    for j in ("j1", "j2", "j3"):
        bus.publish(JobChanged(job(j)))
    parent = panel.model.index(0, 0)
    assert panel.model.rowCount(parent) == 3
    assert text(panel, 0, "Progress") == "0 / 3" and text(panel, 0, "ETA") == "3 min"

    bus.publish(JobChanged(job("j1", state=JobState.DONE, node="studio", seconds=1.25)))
    reason = "cannot decode /photos/j2.jpg: truncated file"
    bus.publish(JobChanged(job("j2", state=JobState.FAILED, node="laptop", reason=reason)))
    bus.publish(BatchChanged(batch(done=1, failed=1, running=1, eta_seconds=40)))
    assert text(panel, 0, "Progress") == "2 / 3, 1 failed"
    assert panel.model.data(panel.model.index(0, 2), PROGRESS_ROLE) == 66
    assert text(panel, 0, "ETA") == "40 s"
    assert text(panel, 0, "Node", parent) == "studio" and text(panel, 0, "Time", parent) == "1.2 s"
    assert text(panel, 1, "State", parent) == "failed"
    assert text(panel, 1, "Reason", parent) == reason
    tooltip = text(panel, 1, "Name", parent, Qt.ToolTipRole)
    assert f"Reason: {reason}" in tooltip and "laptop" in tooltip
    assert resets == []

    # Nodes by the name the user knows them by, once the node is known.
    bus.publish(
        NodeChanged(NodeView("laptop", "Anna's laptop", "tcp://127.0.0.1:1", "CPU", NodeState.BUSY))
    )
    assert text(panel, 1, "Node", parent) == "Anna's laptop"
    assert panel.model.data(panel.model.index(0, 2), FAILED_ROLE) == 33
    bus.publish(BatchChanged(batch(state=BatchState.FAILED, done=2, failed=1)))
    # The other photos are there: a batch with failures is done, with its failures counted.
    assert text(panel, 0, "ETA") == "" and text(panel, 0, "State") == "done, 1 failed"
    panel.tree.setCurrentIndex(panel.model.index(1, 0, parent))
    menu = {a.text(): a for a in panel.context_menu().actions() if a.text()}
    assert menu["Retry failed"].isEnabled() and not menu["Cancel job"].isEnabled()
    menu["Copy error"].trigger()
    assert QApplication.clipboard().text() == reason


def test_resumed_batches_say_so(setup) -> None:
    bus, _, panel = setup
    bus.publish(BatchChanged(batch(resumed=True)))
    assert text(panel, 0, "Name") == "holiday b1 (resumed)"
    assert "Resumed" in text(panel, 0, "Name", role=Qt.ToolTipRole)


def test_jobs_seen_before_their_batch_and_moves(setup) -> None:
    bus, scheduler, panel = setup
    bus.publish(JobChanged(job("early", "b2")))
    bus.publish(BatchChanged(batch("b1", position=0)))
    bus.publish(BatchChanged(batch("b2", position=1)))
    assert panel.model.rowCount(panel.model.index(1, 0)) == 1
    panel.select_batch("b2")
    panel.up_button.click()
    assert scheduler.calls[-1] == ("move_batch", "b2", -1)
    # The scheduler answers with the new positions: rows move, the selection follows.
    bus.publish(BatchChanged(batch("b2", position=0)))
    bus.publish(BatchChanged(batch("b1", position=1)))
    assert [text(panel, r, "Name") for r in (0, 1)] == ["holiday b2", "holiday b1"]
    assert panel.selected().batch_id == "b2"
    child = panel.model.index(0, 0, panel.model.index(0, 0))
    assert panel.model.item(child).job_id == "early"
    assert panel.model.parent(child).row() == 0
    bus.publish(BatchChanged(batch("b2"), removed=True))
    assert panel.model.rowCount() == 1 and text(panel, 0, "Name") == "holiday b1"


def answer_question(qloop, panel, button) -> str:
    """Wait for the window-modal question (opened with open()), press `button`; its text."""
    boxes: list[QMessageBox] = []
    qloop.wait_until(lambda: bool(boxes.extend(
        w for w in panel.findChildren(QMessageBox) if w.isVisible()) or boxes))  # fmt: skip
    question = boxes[0].text()
    boxes[0].button(button).click()
    return question


def test_commands_act_on_the_selection(setup, qloop, monkeypatch) -> None:
    bus, scheduler, panel = setup
    bus.publish(BatchChanged(batch(failed=1, running=1)))
    bus.publish(JobChanged(job("j1", state=JobState.RUNNING)))
    panel.select_batch("b1")
    assert panel.cancel_button.text() == "Cancel batch"
    # Cancelling loses work: it asks first, and "Keep going" keeps it.
    panel.cancel_button.click()
    question = answer_question(qloop, panel, QMessageBox.StandardButton.No)
    assert "2 photo(s) of holiday b1 are not done yet (1 being processed now" in question
    qloop.wait_until(lambda: not any(w.isVisible() for w in panel.findChildren(QMessageBox)))
    assert scheduler.calls == []
    panel.cancel_button.click()
    answer_question(qloop, panel, QMessageBox.StandardButton.Yes)
    qloop.wait_until(lambda: bool(scheduler.calls))
    panel.retry_button.click()
    panel.pause_batch_button.click()
    assert scheduler.calls == [
        ("cancel_batch", "b1"),
        ("retry_failed", "b1"),
        ("pause_batch", "b1"),
    ]
    bus.publish(BatchChanged(batch(state=BatchState.PAUSED, failed=1)))
    assert panel.pause_batch_button.text() == "Resume batch"
    panel.pause_batch_button.click()
    assert scheduler.calls[-1] == ("resume_batch", "b1")

    panel.tree.setCurrentIndex(panel.model.index(0, 0, panel.model.index(0, 0)))
    assert panel.cancel_button.text() == "Cancel job"
    panel.cancel_button.click()
    assert "processed now" in answer_question(qloop, panel, QMessageBox.StandardButton.Yes)
    qloop.wait_until(lambda: scheduler.calls[-1] == ("cancel_job", "j1"))

    assert panel.pause_queue_button.text() == "Pause queue"
    panel.pause_queue_button.click()
    assert panel.pause_queue_button.text() == "Resume queue"
    panel.pause_queue_button.click()
    assert scheduler.calls[-2:] == [("pause",), ("resume",)]

    opened = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    panel.open_button.click()
    assert [u.toLocalFile() for u in opened] == ["/out/b1"]


def test_finished_batch_cannot_be_paused_or_moved(setup) -> None:
    bus, _, panel = setup
    bus.publish(BatchChanged(batch("b1", state=BatchState.DONE, done=3)))
    bus.publish(BatchChanged(batch("b2", position=1)))
    panel.select_batch("b1")
    assert not panel.pause_batch_button.isEnabled() and not panel.down_button.isEnabled()
    assert not panel.cancel_button.isEnabled() and panel.open_button.isEnabled()
    panel.select_batch("b2")
    assert panel.up_button.isEnabled() and not panel.down_button.isEnabled()


def test_format_eta() -> None:
    assert [format_eta(s) for s in (None, 4.4, 59, 61, 3599, 3600 + 20 * 60)] == [
        "", "4 s", "59 s", "2 min", "1 h 00 min", "1 h 20 min",
    ]  # fmt: skip


@pytest.mark.qt_log_ignore("This plugin does not support")
def test_progress_bar_paints(setup, qtbot) -> None:
    bus, _, panel = setup
    bus.publish(BatchChanged(batch(done=2)))
    panel.resize(800, 300)
    panel.show()
    qtbot.waitExposed(panel)
    image = panel.tree.viewport().grab().toImage()
    assert not image.isNull()
    rect = panel.tree.visualRect(panel.model.index(0, 2))
    colours = {image.pixel(x, rect.center().y()) for x in range(rect.left(), rect.right())}
    assert len(colours) > 3  # a bar and its text, not an empty cell


def test_queued_photos_say_why_they_wait_and_a_missing_model_can_be_downloaded(setup, tmp_path):
    bus, _, panel = setup
    bus.publish(BatchChanged(batch(state=BatchState.QUEUED, waiting="no node connected")))
    bus.publish(JobChanged(job("j1")))
    bus.publish(JobChanged(job("j2", attempts=1, reason="worker crashed")))
    parent = panel.model.index(0, 0)
    assert text(panel, 0, "Reason") == "waiting: no node connected"
    assert text(panel, 0, "Reason", parent) == "waiting: no node connected"
    assert not panel.download_button.isVisibleTo(panel)
    changed: list[int] = []
    panel.model.dataChanged.connect(lambda top, *_: changed.append(top.column()))
    waiting = "no node has model lama"
    bus.publish(BatchChanged(batch(state=BatchState.QUEUED, waiting=waiting, missing_model="lama")))
    # The job rows follow their batch's reason (one range for all of them), last error kept.
    assert COLUMNS.index("Reason") in changed
    assert text(panel, 0, "Reason", parent) == f"waiting: {waiting}"
    assert text(panel, 1, "Reason", parent) == f"waiting: {waiting} (last try: worker crashed)"
    assert panel.download_button.isVisibleTo(panel)
    assert panel.download_button.text() == "Download lama"
    panel.select_batch("b1")
    assert "waiting: no node has model lama" in panel.details.text()
    bus.publish(BatchChanged(batch(state=BatchState.RUNNING, running=1)))
    assert text(panel, 0, "Reason") == "" and not panel.download_button.isVisibleTo(panel)


def test_failure_reason_is_readable_without_a_tooltip(setup) -> None:
    bus, _, panel = setup
    reason = "cannot decode /photos/j2.jpg: truncated file (only 1200 of 48000 bytes)"
    bus.publish(BatchChanged(batch(state=BatchState.FAILED, done=2, failed=1)))
    bus.publish(JobChanged(job("j2", state=JobState.FAILED, node="laptop", reason=reason)))
    panel.tree.setCurrentIndex(panel.model.index(0, 0, panel.model.index(0, 0)))
    assert reason in panel.details.text() and panel.details.wordWrap()


def test_cancelled_batch_shows_how_far_it_got_not_a_full_bar(setup) -> None:
    bus, _, panel = setup
    bus.publish(BatchChanged(batch(state=BatchState.CANCELLED, total=10, done=3, cancelled=7)))
    assert panel.model.data(panel.model.index(0, 2), PROGRESS_ROLE) == 30
    assert text(panel, 0, "State") == "cancelled, 7 not run"
    assert text(panel, 0, "Progress") == "3 / 10"
    # A photo cancelled alone in a batch that went on leaves the total: done is 100 %.
    bus.publish(BatchChanged(batch(state=BatchState.DONE, total=10, done=9, cancelled=1)))
    assert panel.model.data(panel.model.index(0, 2), PROGRESS_ROLE) == 100


def test_clear_finished_and_open_folder_without_a_file_manager(setup, monkeypatch) -> None:
    bus, scheduler, panel = setup
    bus.publish(BatchChanged(batch(state=BatchState.RUNNING)))
    assert not panel.clear_button.isEnabled()
    bus.publish(BatchChanged(batch("b2", state=BatchState.DONE, done=3, position=1)))
    assert panel.clear_button.isEnabled()
    panel.clear_button.click()
    assert scheduler.calls[-1] == ("clear_finished",)

    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: False)
    panel.select_batch("b2")
    assert panel.open_output_folder() is False
    box = panel.path_box
    assert box.isVisible() and "/out/b2" in box.text()
    copy = next(b for b in box.buttons() if b.text() == "Copy path")
    copy.click()
    assert QApplication.clipboard().text() == "/out/b2" and box.isVisible()
    box.close()


def test_download_button_fetches_the_missing_model_off_the_gui_thread(
    setup, qloop, qtbot, monkeypatch
) -> None:
    import threading

    from lama_desktop.engine.modelstore import ModelStore
    from lama_desktop.ui.editor.model_banner import ModelBanner

    bus, _, panel = setup
    fetched: list[tuple[str, bool]] = []
    release = threading.Event()

    def download(store, name, progress=None, url=None):
        fetched.append((name, threading.current_thread() is threading.main_thread()))
        progress(5 << 20, 10 << 20)
        release.wait(10)
        store.root.mkdir(parents=True, exist_ok=True)
        store.path(name).write_bytes(b"model")
        return store.path(name)

    monkeypatch.setattr(ModelStore, "download", download)
    # The editor's banner shares the app's downloads: it follows one the panel started.
    banner = ModelBanner(panel.downloads)
    qtbot.addWidget(banner)
    banner.show_for("lama")
    downloaded: list[str] = []
    panel.downloads.downloaded.connect(downloaded.append)
    waiting = "no node has model lama"
    bus.publish(BatchChanged(batch(state=BatchState.QUEUED, waiting=waiting, missing_model="lama")))
    panel.download_button.click()
    qloop.wait_until(lambda: "5 of 10 MiB" in panel.download_button.text(), timeout=5)
    assert not panel.download_button.isEnabled()
    assert banner.downloading() and not banner._button.isEnabled()
    assert banner._bar.value() == 5 and banner._bar.maximum() == 10
    banner._button.click()  # disabled: nothing happens
    qloop.run(banner.download(), timeout=5)  # joins the running one: no second fetch
    release.set()
    qloop.wait_until(lambda: downloaded == ["lama"], timeout=5)
    assert fetched == [("lama", False)]
    assert panel.download_button.text() == "lama downloaded"
    assert not panel.download_button.isEnabled()
    assert banner.isHidden()  # the editor now uses the model
