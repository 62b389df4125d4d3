"""One app per data folder (issue 7 section 4): a second `lama-desktop PHOTO` hands the photo to
the running window and exits 0 without a log, scheduler or tray of its own; a crashed app's
lock and socket file do not stop the next start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lama_desktop.cluster.events import EventBus
from lama_desktop.config import AppDirs, AppSettings
from lama_desktop.ui.single_instance import SingleInstance, serve_window, server_name
from tests.ui.conftest import LoopRunner, write_photo

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]

SECOND_START = "import sys; from lama_desktop.app import main; raise SystemExit(main(sys.argv[1]))"
CRASH_AFTER_LISTEN = """
import os, signal, sys
from pathlib import Path
from PySide6.QtCore import QCoreApplication
from lama_desktop.ui.single_instance import SingleInstance
instance = SingleInstance(Path(sys.argv[1]))
assert instance.claim()
app = QCoreApplication([])
instance.listen()
assert instance.is_listening()
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def instance(app_env: AppDirs) -> Any:
    running = SingleInstance(app_env.data)
    assert running.claim()
    running.listen()
    yield running
    running.release()


@pytest.fixture
def window(qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings) -> Any:
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    bus = EventBus()
    win = MainWindow(SimpleNamespace(events=bus), ClusterBridge(bus), settings, dirs=app_env)
    qtbot.addWidget(win)
    yield win
    win.shutdown()


def test_second_start_opens_its_photo_in_the_running_window(
    qtbot: Any, instance: SingleInstance, window: Any, app_env: AppDirs, tmp_path: Path
) -> None:
    photo = tmp_path / "beach.png"
    write_photo(photo)
    serve_window(instance, window)
    assert window.isHidden()  # as when the app sits in the tray
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.Popen(
        [sys.executable, "-c", SECOND_START, str(photo)], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # This process must keep serving Qt's loop for the hand-off to be answered.
        qtbot.waitUntil(lambda: proc.poll() is not None, timeout=30_000)
        out, err = proc.communicate(timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert "already running" in out and err == ""
    qtbot.waitUntil(lambda: window.editor.path == photo, timeout=10_000)
    assert window.isVisible()
    # No second log writer (nor, before it, a scheduler or a tray icon) was started.
    assert not (app_env.log / "lama-desktop.log").exists()


def test_crashed_app_leaves_no_obstacle(app_env: AppDirs) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_AFTER_LISTEN, str(app_env.data)],
        env=dict(os.environ, QT_QPA_PLATFORM="offscreen"), capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (app_env.data / "instance.lock").exists()  # left behind by the crash
    restarted = SingleInstance(app_env.data)
    try:
        assert restarted.claim()
        restarted.listen()
        assert restarted.is_listening()
    finally:
        restarted.release()


def test_names_differ_per_data_folder(tmp_path: Path) -> None:
    assert server_name(tmp_path / "a") != server_name(tmp_path / "b")
    assert server_name(tmp_path / "a") == server_name(tmp_path / "a")
