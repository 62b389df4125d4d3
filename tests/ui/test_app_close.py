"""Closing the window (issue 4 section 6): with queued work and a tray host the app keeps working
in the tray and says so once; without work, or without a tray host, closing is a quit."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox

from lama_desktop.cluster.events import BatchChanged, BatchState, BatchView, EventBus
from lama_desktop.config import AppDirs, AppSettings
from tests.ui.conftest import LoopRunner, Recorder
from tests.ui.test_editor import message_box

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


@pytest.fixture
def window(qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings) -> Any:
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    bus = EventBus()
    # Closing never reaches the scheduler: it only reads the bridge's batches.
    win = MainWindow(SimpleNamespace(events=bus), ClusterBridge(bus), settings, dirs=app_env)
    win.bus = bus
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown()


def queue_batch(bus: EventBus) -> None:
    view = BatchView("b1", "holiday", str(Path("out")), BatchState.RUNNING, total=5, done=1)
    bus.publish(BatchChanged(view))


def test_close_with_work_and_tray_keeps_running(
    qloop: LoopRunner, window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[bool] = []
    monkeypatch.setattr(type(window.tray), "available", staticmethod(lambda: True))
    monkeypatch.setattr(window.tray, "notify_once_kept_running", lambda: told.append(True))
    quits = Recorder(window.quitConfirmed)
    queue_batch(window.bus)
    assert window.unfinished_batches() == 1
    window.close()
    qloop.run(qloop_idle())
    assert window.isHidden() and told == [True] and quits.calls == []


def test_close_without_tray_asks_and_cancel_keeps_window(
    qloop: LoopRunner, window: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(type(window.tray), "available", staticmethod(lambda: False))
    quits = Recorder(window.quitConfirmed)
    queue_batch(window.bus)

    async def scenario() -> None:
        window.close()
        box = await message_box()
        assert "1 batch(es) are not finished" in box.text()
        box.button(QMessageBox.StandardButton.Cancel).click()
        await qloop_idle()

    qloop.run(scenario())
    assert window.isVisible() and quits.calls == []


def test_close_with_nothing_queued_quits_and_saves_settings(
    qloop: LoopRunner, window: Any, app_env: AppDirs
) -> None:
    from lama_desktop.config import load_settings

    window.settings.brush_size = 77
    quits = Recorder(window.quitConfirmed)
    window.close()
    qloop.run(quits.wait())
    assert load_settings(app_env.settings_file).brush_size == 77


async def qloop_idle() -> None:
    import asyncio

    for _ in range(5):
        await asyncio.sleep(0.01)


def test_cluster_menu_pauses_and_resumes_the_queue(qloop: LoopRunner, window: Any) -> None:
    from lama_desktop.cluster.events import QueuePaused

    calls: list[str] = []

    def pause() -> None:
        calls.append("pause")
        window.bus.publish(QueuePaused(True))

    def resume() -> None:
        calls.append("resume")
        window.bus.publish(QueuePaused(False))

    window.scheduler.pause, window.scheduler.resume = pause, resume
    window.toggle_queue()
    window._update_pause_action()
    assert window.pause_action.text() == "&Resume queue"
    window.toggle_queue()
    assert calls == ["pause", "resume"] and not window.bridge.is_paused()
