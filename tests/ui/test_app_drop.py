"""Drag and drop on the main window: one photo opens in the editor; a folder opens the batch
dialog, whose OK queues the batch on the real scheduler, which cleans the paired photos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent

from lama_desktop.config import AppDirs, AppSettings
from tests.ui.conftest import LoopRunner, write_photo

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


@pytest.fixture
def window(qtbot: Any, cluster: Any, settings: AppSettings, app_env: AppDirs) -> Any:
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    win = MainWindow(cluster.scheduler, ClusterBridge(cluster.scheduler.events), settings,
                     dirs=app_env)  # fmt: skip
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown()


def drop(window: Any, paths: list[Path]) -> None:
    """Deliver a real drop event carrying file URLs, as a file manager would."""
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    event = QDropEvent(
        QPointF(QPoint(200, 200)), Qt.DropAction.CopyAction, data,
        Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    window.dropEvent(event)  # what Qt calls on a drop (a synthetic sendEvent is filtered)


def test_drop_one_photo_opens_it(qloop: LoopRunner, window: Any, tmp_path: Path) -> None:
    rgb = write_photo(tmp_path / "one.png")
    drop(window, [tmp_path / "one.png"])
    qloop.wait_until(lambda: window.editor.path == tmp_path / "one.png", timeout=10)
    assert np.array_equal(window.editor.canvas.pixels(), rgb)
    assert window.settings.recent_files[0] == str((tmp_path / "one.png").resolve())


def test_drop_folder_queues_a_batch_of_pairs(
    qloop: LoopRunner, window: Any, cluster: Any, tmp_path: Path
) -> None:
    from lama_desktop.ui.batch_dialog import BatchDialog

    photos, masks = tmp_path / "trip", tmp_path / "trip" / "masks"
    masks.mkdir(parents=True)
    for name in ("a", "b", "c"):
        write_photo(photos / f"{name}.png", 80, 60)
    mask = np.zeros((60, 80), np.uint8)
    mask[20:35, 25:50] = 255
    for name in ("a", "b"):  # c has no mask: it is listed as unpaired, not queued
        Image.fromarray(mask).save(masks / f"{name}.png")

    drop(window, [photos])
    dialogs: list[BatchDialog] = []

    def planned() -> bool:
        dialogs[:] = [d for d in window.findChildren(BatchDialog) if d.isVisible()]
        return bool(dialogs) and dialogs[0].plan is not None

    qloop.wait_until(planned, timeout=10)
    plan = dialogs[0].plan
    assert sorted(j.image.name for j in plan.jobs) == ["a.png", "b.png"]
    assert [s.image.name for s in plan.skipped] == ["c.png"]
    dialogs[0].accept()

    qloop.wait_until(lambda: len(window.bridge.batches()) == 1, timeout=10)
    batch_id = window.bridge.batches()[0].batch_id
    outcomes = qloop.run(cluster.scheduler.wait_batch(batch_id), timeout=30)
    assert sorted(o.status for o in outcomes) == ["done", "done"]
    for outcome in outcomes:
        cleaned = np.asarray(Image.open(outcome.output).convert("RGB"))
        source = np.asarray(Image.open(photos / outcome.output.name).convert("RGB"))
        assert np.array_equal(cleaned[mask == 0], source[mask == 0])
        assert (cleaned[mask > 0] != source[mask > 0]).any()


def test_drop_a_file_that_is_no_photo_says_why(
    qloop: LoopRunner, window: Any, tmp_path: Path
) -> None:
    from PySide6.QtWidgets import QMessageBox

    notes = tmp_path / "notes.jpg"
    notes.write_text("shopping list")
    drop(window, [notes])
    qloop.wait_until(lambda: "not an image" in window.statusBar().currentMessage(), timeout=10)
    boxes = [b for b in window.findChildren(QMessageBox) if b.isVisible()]
    assert len(boxes) == 1 and "notes.jpg" in boxes[0].text()
    boxes[0].close()
    assert window.editor.path is None
