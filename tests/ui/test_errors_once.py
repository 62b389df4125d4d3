"""Errors once, in words (issue 7 section 5): a bad photo gives one dialog and one log line
without a traceback; quitting with unsaved edits (Discard) leaves no error behind."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PySide6.QtWidgets import QApplication, QMessageBox

from lama_desktop.cluster.events import EventBus
from lama_desktop.config import AppDirs, AppSettings
from lama_desktop.ui.editor.commands import InpaintRound
from tests.ui.conftest import LoopRunner, Recorder, write_photo
from tests.ui.test_editor import message_box

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


def make_window(qtbot: Any, settings: AppSettings, dirs: AppDirs, track: bool = True) -> Any:
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    bus = EventBus()
    # Opening, the questions and quitting never reach the scheduler.
    win = MainWindow(SimpleNamespace(events=bus), ClusterBridge(bus), settings, dirs=dirs)
    if track:  # not when the test deletes the window itself, as the app does
        qtbot.addWidget(win)
    win.show()
    return win


@pytest.fixture
def window(qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings) -> Any:
    win = make_window(qtbot, settings, app_env)
    yield win
    win.shutdown()


def visible_boxes() -> list[QMessageBox]:
    return [
        w for w in QApplication.topLevelWidgets() if isinstance(w, QMessageBox) and w.isVisible()
    ]


def test_quit_with_unsaved_edits_and_discard_leaves_no_error(
    qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    win = make_window(qtbot, settings, app_env, track=False)
    photo = tmp_path / "beach.png"
    write_photo(photo)
    qloop.run(win.editor.open_file(photo))
    before = win.editor.canvas.pixels()
    after = before.copy()
    after[10:20, 10:20] = 0
    win.editor.undo_stack.push(InpaintRound(win.editor.canvas, before, after, "erase"))
    assert win.editor.is_modified()
    quits = Recorder(win.quitConfirmed)

    async def scenario() -> None:
        win.request_quit()
        box = await message_box()
        box.button(QMessageBox.StandardButton.Discard).click()
        await quits.wait()

    qloop.run(scenario())
    # What app.run does after a confirmed quit.
    win.shutdown()
    win.deleteLater()
    qtbot.waitUntil(lambda: not __import__("shiboken6").Shiboken.isValid(win), timeout=5000)
    QApplication.processEvents()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_a_bad_photo_from_file_open_is_one_dialog_and_one_line(
    qtbot: Any, qloop: LoopRunner, window: Any, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    import lama_desktop.ui.main_window as main_window

    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not a JPEG")

    async def choose(_parent: Any, _start: Path) -> Path:
        return bad

    monkeypatch.setattr(main_window, "choose_open_path", choose)
    caplog.set_level(logging.DEBUG)

    async def scenario() -> QMessageBox:
        window.open_dialog()  # File > Open: open_dialog awaits open_path, both async slots
        box = await message_box()
        for _ in range(20):  # time for a second report to show up, if there were one
            await asyncio.sleep(0.01)
        return box

    box = qloop.run(scenario())
    assert visible_boxes() == [box]
    assert box.windowTitle() == "Could not open the photo"
    assert box.text().count("holiday.jpg") == 1 and "not an image" in box.text()
    box.close()
    # The terminal (WARNING and up) gets one line, no traceback; the traceback is at DEBUG.
    loud = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(loud) == 1 and loud[0].exc_info is None, caplog.text
    assert "holiday.jpg" in loud[0].getMessage()
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.DEBUG)
