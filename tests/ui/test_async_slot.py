"""@async_slot: a failing coroutine slot is logged and shown; pending ones are cancelled at quit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox, QWidget

from lama_desktop.cluster.scheduler import PairingFailed
from lama_desktop.engine.modelstore import DownloadError
from lama_desktop.ui import async_slot as slots
from tests.ui.conftest import LoopRunner

# The offscreen platform reports that it cannot propagate size hints whenever a window shows.
pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


class Photo(QWidget):
    @slots.async_slot
    async def open_photo(self, fail: bool) -> str:
        await asyncio.sleep(0)
        if fail:
            raise ValueError("photo.jpg: the file is truncated")
        return "ok"

    @slots.async_slot
    async def wait_forever(self) -> None:
        await asyncio.Event().wait()


@pytest.fixture
def shown() -> Iterator[list[tuple[str, str]]]:
    seen: list[tuple[str, str]] = []
    slots.set_error_handler(lambda _parent, title, error: seen.append((title, str(error))))
    yield seen
    slots.set_error_handler(slots.show_error)


def test_failure_is_logged_and_shown(
    qtbot: Any, qloop: LoopRunner, shown: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    widget = Photo()
    qtbot.addWidget(widget)
    assert qloop.run(widget.open_photo(False)) == "ok"
    assert shown == []
    task = widget.open_photo(True)
    with pytest.raises(ValueError):
        qloop.run(task)
    assert shown == [("Open photo failed", "photo.jpg: the file is truncated")]
    assert "Photo.open_photo failed" in caplog.text and "truncated" in caplog.text


def test_default_handler_opens_a_message_box(qtbot: Any, qloop: LoopRunner) -> None:
    widget = Photo()
    qtbot.addWidget(widget)
    widget.show()
    with pytest.raises(ValueError):
        qloop.run(widget.open_photo(True))
    boxes = [b for b in widget.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1 and "truncated" in boxes[0].text()
    boxes[0].close()


def test_cancel_pending_stops_unfinished_slots(qtbot: Any, qloop: LoopRunner) -> None:
    widget = Photo()
    qtbot.addWidget(widget)
    task = widget.wait_forever()
    qloop.run(asyncio.sleep(0.01))
    assert task in slots.pending_tasks()
    assert slots.cancel_pending() == [task]
    qloop.run(asyncio.gather(task, return_exceptions=True))
    assert task.cancelled() and task not in slots.pending_tasks()


class Failing(QWidget):
    @slots.async_slot(title="Could not pair")
    async def fail(self, error: Exception) -> None:
        raise error

    @slots.async_slot
    async def outer(self, error: Exception) -> None:
        await self.fail(error)  # one slot awaiting another: the same failure, shown once


@pytest.mark.parametrize(
    ("error", "handled"),
    [
        (PairingFailed("the agent refused the link: its code was already used"), True),
        (DownloadError("Could not download big-lama.pt (offline)"), True),
        (RuntimeError("a bug"), False),
    ],
)
def test_handled_errors_log_one_line_and_bugs_their_traceback(
    qtbot: Any, qloop: LoopRunner, shown: list[tuple[str, str]], caplog: pytest.LogCaptureFixture,
    error: Any, handled: bool,
) -> None:  # fmt: skip
    widget = Failing()
    qtbot.addWidget(widget)
    caplog.set_level("DEBUG")
    with pytest.raises(Exception):  # noqa: B017 - the three kinds differ
        qloop.run(widget.outer(error))
    assert shown == [("Could not pair", str(error))]
    loud = [r for r in caplog.records if r.levelno >= 30]
    assert len(loud) == 1
    assert (loud[0].exc_info is None) is handled
    assert loud[0].levelname == ("WARNING" if handled else "ERROR")
