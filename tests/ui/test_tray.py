"""Tray icon: calm when idle, a progress ring repainted only per whole percent, menu, notices."""

from __future__ import annotations

import pytest
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QSystemTrayIcon, QWidget

from lama_desktop.cluster.events import BatchChanged, BatchState, BatchView, EventBus, QueuePaused
from lama_desktop.ui.bridge import ClusterBridge
from lama_desktop.ui.icons import TrayIconPainter, idle_icon, progress_icon
from lama_desktop.ui.tray import TrayIcon, queue_summary

pytestmark = pytest.mark.gui


class PausingScheduler:
    """Test double with the scheduler's pause/resume contract: it publishes QueuePaused."""

    def __init__(self, bus: EventBus) -> None:
        self.bus, self.calls = bus, []

    def pause(self) -> None:
        self.calls.append("pause")
        self.bus.publish(QueuePaused(True))

    def resume(self) -> None:
        self.calls.append("resume")
        self.bus.publish(QueuePaused(False))


def batch(batch_id: str = "b1", **kw) -> BatchView:
    fields = {"state": BatchState.RUNNING, "total": 200}
    fields.update(kw)
    return BatchView(batch_id, f"batch {batch_id}", "/out", **fields)


@pytest.fixture
def tray(qtbot):
    bus = EventBus()
    window = QWidget()
    qtbot.addWidget(window)
    icon = TrayIcon(ClusterBridge(bus), PausingScheduler(bus), window)
    messages: list[tuple[str, str]] = []
    icon.showMessage = lambda title, text, *a: messages.append((title, text))  # type: ignore[method-assign]
    yield bus, icon, window, messages
    icon.close()


def pixels(icon) -> bytes:
    image = icon.pixmap(64, 64).toImage().convertToFormat(QImage.Format.Format_ARGB32)
    return bytes(image.constBits())


def test_idle_icon_then_progress_ring_only_on_whole_percent(tray) -> None:
    bus, icon, _, _ = tray
    assert pixels(icon.icon()) == pixels(idle_icon())
    assert "Idle" in icon.toolTip()
    start = icon.painter.repaints
    bus.publish(BatchChanged(batch(done=2, running=2, eta_seconds=300)))  # 1 %
    assert icon.painter.repaints == start + 1
    assert pixels(icon.icon()) == pixels(progress_icon(1))
    bus.publish(BatchChanged(batch(done=3, running=2, eta_seconds=290)))  # still 1 %
    bus.publish(BatchChanged(batch(done=3, running=1, eta_seconds=280)))
    assert icon.painter.repaints == start + 1  # no new picture: not noise
    assert "1 running, 196 waiting" in icon.toolTip() and "5 min" in icon.toolTip()
    bus.publish(BatchChanged(batch(done=100, running=2, eta_seconds=100)))  # 50 %
    assert icon.painter.repaints == start + 2
    assert pixels(icon.icon()) == pixels(progress_icon(50))
    assert pixels(progress_icon(50)) != pixels(progress_icon(1))
    bus.publish(BatchChanged(batch(state=BatchState.DONE, done=200)))
    assert pixels(icon.icon()) == pixels(idle_icon()) and "Idle" in icon.toolTip()


def test_menu_pauses_and_resumes_the_queue(tray) -> None:
    _, icon, _, _ = tray
    icon.menu.aboutToShow.emit()
    assert icon.pause_action.text() == "Pause queue"
    icon.pause_action.trigger()
    assert icon.bridge.is_paused() and icon.scheduler.calls == ["pause"]
    icon.menu.aboutToShow.emit()
    assert icon.pause_action.text() == "Resume queue"
    assert "Queue paused" in icon.toolTip()
    icon.pause_action.trigger()
    assert not icon.bridge.is_paused() and icon.scheduler.calls == ["pause", "resume"]


@pytest.mark.qt_log_ignore("This plugin does not support")
def test_show_hide_window_and_quit(tray, qtbot) -> None:
    _, icon, window, _ = tray
    window.show()
    qtbot.waitExposed(window)
    icon.show_action.trigger()
    assert not window.isVisible() and icon.show_action.text() == "Show window"
    icon.show_action.trigger()
    assert window.isVisible() and icon.show_action.text() == "Hide window"
    with qtbot.waitSignal(icon.quitRequested):
        icon.quitRequested.connect(lambda: None)
        icon.quit_action.trigger()


def test_notifications(tray) -> None:
    bus, icon, _, messages = tray
    bus.publish(BatchChanged(batch("b1", total=4, running=1)))
    bus.publish(BatchChanged(batch("b1", total=4, state=BatchState.DONE, done=4)))
    bus.publish(BatchChanged(batch("b2", total=4, running=1)))
    bus.publish(BatchChanged(batch("b2", total=4, state=BatchState.FAILED, done=3, failed=1)))
    bus.publish(BatchChanged(batch("b2", total=4, state=BatchState.FAILED, done=3, failed=1)))
    assert messages == [
        ("Batch finished", "batch b1: 4 of 4 photos done."),
        (
            "Batch finished with failures",
            "batch b2: 1 of 4 photos failed; see the Queue panel for the reasons.",
        ),
    ]
    assert icon.notify_once_kept_running() is True
    assert icon.notify_once_kept_running() is False
    assert messages[-1][0] == "Lama Desktop is still running" and len(messages) == 3


def test_available_follows_qt() -> None:
    assert TrayIcon.available() == QSystemTrayIcon.isSystemTrayAvailable()


def test_queue_summary_and_painter() -> None:
    assert queue_summary([batch(state=BatchState.DONE, done=200)]) == (0, 0, None, None)
    summary = queue_summary(
        [batch("a", total=10, done=5, running=2, eta_seconds=60), batch("b", total=10)]
    )
    assert summary == (2, 13, 60, 25)
    painter = TrayIconPainter()
    assert painter.update(None) is not None and painter.update(None) is None
    assert painter.update(10) is not None and painter.update(10) is None
    assert painter.update(11) is not None and painter.repaints == 3


@pytest.mark.integration
def test_tray_menu_pauses_and_resumes_the_real_scheduler(qtbot, qloop, tmp_path) -> None:
    from lama_desktop.cluster.keys import load_or_create_keypair
    from lama_desktop.cluster.scheduler import Scheduler

    scheduler = Scheduler(
        journal=None, keypair=load_or_create_keypair(tmp_path / "desktop.key"), name="desk"
    )
    qloop.run(scheduler.start())
    window = QWidget()
    qtbot.addWidget(window)
    icon = TrayIcon(ClusterBridge(scheduler.events), scheduler, window)
    try:
        icon.pause_action.trigger()
        qloop.wait_until(icon.bridge.is_paused, timeout=2)
        assert scheduler.snapshot().paused and "Queue paused" in icon.toolTip()
        icon.menu.aboutToShow.emit()
        assert icon.pause_action.text() == "Resume queue"
        icon.pause_action.trigger()
        qloop.wait_until(lambda: not icon.bridge.is_paused(), timeout=2)
        assert not scheduler.snapshot().paused
    finally:
        icon.close()
        qloop.run(scheduler.stop())
