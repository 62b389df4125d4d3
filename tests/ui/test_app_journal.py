"""A damaged journal does not stop the app's cluster: it is replaced and the user is told."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtWidgets import QMessageBox

from lama_desktop.config import AppDirs, AppSettings
from tests.ui.conftest import LoopRunner
from tests.ui.test_editor import message_box

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "QSocketNotifier: Invalid"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


def test_a_garbage_journal_is_replaced_and_the_window_says_so(
    qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings
) -> None:
    from lama_desktop.app import EmbeddedCluster
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    app_env.journal.parent.mkdir(parents=True, exist_ok=True)
    app_env.journal.write_bytes(b"\x00garbage\xff" * 1000)
    settings.local_workers = False
    cluster = EmbeddedCluster(settings, app_env)
    bridge = ClusterBridge(cluster.scheduler.events)
    window = MainWindow(cluster.scheduler, bridge, settings, dirs=app_env)
    qtbot.addWidget(window)
    window.show()
    try:
        qloop.run(cluster.start())  # the cluster starts on a fresh journal
        box = qloop.run(message_box())
        assert box.windowTitle() == "Job journal replaced"
        assert "damaged (file is not a database)" in box.text()
        [aside] = app_env.journal.parent.glob("journal.sqlite3.damaged-*[0-9]")
        assert str(aside) in box.text() and str(aside) in window.statusBar().currentMessage()
        assert "Nothing could be read from it" in box.text()
        box.button(QMessageBox.StandardButton.Ok).click()
    finally:
        window.shutdown()
        qloop.run(cluster.stop())
