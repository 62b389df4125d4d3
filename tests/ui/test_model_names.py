"""One name per model everywhere (issue 7 section 9): "LaMa (lama)" in every chooser, the id
behind it; the Edit menu's undo names the action and the model, not the node that ran it."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PySide6.QtGui import QAction

from lama_desktop.cluster.events import EventBus
from lama_desktop.config import MODELS, AppDirs, AppSettings
from tests.ui.conftest import LoopRunner, Recorder, write_photo
from tests.ui.test_editor import stroke

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]

LABELS = ["LaMa (lama)", "OpenCV Navier-Stokes (opencv-ns)", "OpenCV Telea (opencv-telea)"]


class GreyScheduler:
    """Fills the mask with grey, as a node called "attic" would answer an edit."""

    def __init__(self) -> None:
        self.events = EventBus()
        self.models: list[str] = []

    async def inpaint(self, rgb: np.ndarray, mask: np.ndarray, settings: Any) -> Any:
        self.models.append(settings.model)
        out = rgb.copy()
        out[mask > 0] = 128
        return SimpleNamespace(rgb=out, seconds=0.01, node="attic")


@pytest.fixture
def window(qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings) -> Any:
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    scheduler = GreyScheduler()
    win = MainWindow(scheduler, ClusterBridge(scheduler.events), settings, dirs=app_env)
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown()


def items(box: Any) -> list[tuple[str, str]]:
    return [(box.itemText(i), box.itemData(i)) for i in range(box.count())]


def test_every_model_chooser_shows_title_and_id(
    qtbot: Any, window: Any, settings: AppSettings
) -> None:
    from lama_desktop.ui.batch_dialog import BatchDialog
    from lama_desktop.ui.settings_dialog import SettingsDialog

    expected = list(zip(LABELS, MODELS, strict=True))
    batch = BatchDialog([], settings, window)
    prefs = SettingsDialog(settings, window)
    for dialog in (batch, prefs):
        qtbot.addWidget(dialog)
    assert items(window.editor.model_box) == expected
    assert items(batch.model_box) == expected
    assert items(prefs.model) == expected
    assert prefs.model.currentData() == settings.model == batch.model_box.currentData()


def test_undo_names_the_action_and_model_not_the_node(
    qloop: LoopRunner, window: Any, tmp_path: Path
) -> None:
    write_photo(tmp_path / "photo.png")
    rounds = Recorder(window.editor.roundFinished)
    undo = next(a for a in window.findChildren(QAction) if a.text().startswith("&Undo"))

    async def scenario() -> None:
        await window.editor.open_file(tmp_path / "photo.png")
        stroke(window.editor, (100, 100), (180, 120))
        await rounds.wait(1)

    qloop.run(scenario())
    assert window.scheduler.models == ["opencv-ns"]
    assert undo.text() == "&Undo erase with OpenCV Navier-Stokes"
    assert "attic" not in undo.text()
