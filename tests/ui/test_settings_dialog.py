"""Settings dialog: shows the loaded settings (env overrides included), validates, applies."""

from __future__ import annotations

from typing import Any

import pytest

from lama_desktop.config import AppDirs, AppSettings, load_settings, save_settings
from lama_desktop.ui.settings_dialog import SettingsDialog

# The offscreen platform reports that it cannot propagate size hints whenever a window shows.
pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


def test_dialog_shows_environment_override_and_applies_copy(
    qtbot: Any, app_env: AppDirs, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_settings(AppSettings(model="lama", brush_size=30))
    monkeypatch.setenv("LAMA_MODEL", "opencv-telea")
    monkeypatch.setenv("LAMA_LOCAL_WORKERS", "2")
    loaded = load_settings()
    dialog = SettingsDialog(loaded)
    qtbot.addWidget(dialog)
    assert dialog.model.currentData() == "opencv-telea"
    assert dialog.model.currentText() == "OpenCV Telea (opencv-telea)"
    assert dialog.worker_count.value() == 2 and dialog.brush_size.value() == 30
    dialog.worker_count.setValue(3)
    dialog.job_timeout.setValue(42)
    with qtbot.waitSignal(dialog.applied) as applied:
        assert dialog.apply()
    new: AppSettings = applied.args[0]
    assert (new.local_worker_count, new.job_timeout, new.workers()) == (3, 42, 3)
    assert loaded.local_worker_count == 2, "the dialog edits a copy until applied"


def test_bad_value_is_shown_and_not_applied(qtbot: Any, app_env: AppDirs) -> None:
    dialog = SettingsDialog(AppSettings())
    qtbot.addWidget(dialog)
    dialog.device.setCurrentText("tpu")
    with qtbot.assertNotEmitted(dialog.applied):
        assert not dialog.apply()
    assert "device = 'tpu'" in dialog.error.text()


def test_applied_settings_take_effect_without_restart(
    qtbot: Any, qloop: Any, cluster: Any, settings: AppSettings, app_env: AppDirs
) -> None:
    import dataclasses

    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    window = MainWindow(cluster.scheduler, ClusterBridge(cluster.scheduler.events), settings,
                        dirs=app_env)  # fmt: skip
    qtbot.addWidget(window)
    window.set_agent(cluster.agent)
    try:
        changed = dataclasses.replace(
            settings, local_workers=False, job_timeout=42.0, brush_size=11, model="opencv-telea"
        )
        qloop.run(window.apply_settings(changed))
        assert cluster.scheduler.state.job_timeout == 42.0
        assert window.editor.size_slider.value() == 11
        assert window.editor.effective_model() == "opencv-telea"
        assert load_settings(app_env.settings_file).local_workers is False

        def local_slots() -> int:
            return sum(n.slots for n in cluster.scheduler.snapshot().nodes if n.local)

        qloop.wait_until(lambda: local_slots() == 0, timeout=15)
        assert window.workers_label.text() == "Local workers: off"

        # The Nodes panel's checkbox brings them back, even though they were stopped.
        window.nodes_panel.local_box.setChecked(True)
        qloop.wait_until(lambda: local_slots() > 0, timeout=15)
        assert window.settings.local_workers is True
    finally:
        window.shutdown()
