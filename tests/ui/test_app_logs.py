"""Help > Logs: the app logs to the log folder (LAMA_LOG_DIR) and the viewer shows the tail."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from lama_desktop.config import AppDirs
from tests.ui.conftest import LoopRunner

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


def test_logs_reach_the_file_and_the_viewer(
    qtbot: Any, qloop: LoopRunner, app_env: AppDirs
) -> None:
    from lama_desktop.app import setup_logging
    from lama_desktop.ui.log_view import LogView, read_tail

    root = logging.getLogger()
    before = list(root.handlers)
    path = setup_logging(app_env.log)
    try:
        logging.getLogger("lama_desktop.test").warning("node studio went offline")
        for handler in root.handlers:
            handler.flush()
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
                handler.close()
    assert path.parent == app_env.log
    view = LogView(app_env.log)
    qtbot.addWidget(view)
    view.show()
    qloop.wait_until(lambda: "node studio went offline" in view.text.toPlainText(), timeout=5)
    view.close()
    assert "does not exist" in read_tail(app_env.log / "missing.log")
    big = app_env.log / "big.log"
    big.write_text("".join(f"line {i}\n" for i in range(50_000)))
    tail = read_tail(big, limit=1000)
    assert tail.endswith("line 49999\n") and tail.startswith("line ")
