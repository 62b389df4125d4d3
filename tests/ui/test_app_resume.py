"""Closing the window with a queued batch asks first; after a restart the batch resumes and
finishes (the scheduler's journal keeps it)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtWidgets import QMessageBox

from lama_desktop.config import AppDirs, AppSettings
from tests.ui.conftest import LoopRunner, Recorder, wait_local_ready, write_photo
from tests.ui.test_editor import message_box

# The offscreen platform reports that it cannot propagate size hints whenever a window shows;
# pyzmq closes a socket's file descriptor before qasync drops its Qt notifier for it.
pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "QSocketNotifier: Invalid"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


def make_batch(root: Path, count: int = 2) -> Any:
    from lama_desktop.engine.plan import plan_batch

    images, masks = root / "photos", root / "masks"
    images.mkdir()
    masks.mkdir()
    for i in range(count):
        write_photo(images / f"p{i}.png", 96, 64, seed=i)
        mask = np.zeros((64, 96), np.uint8)
        mask[20:40, 30:60] = 255
        Image.fromarray(mask).save(masks / f"p{i}.png")
    return plan_batch(images, masks, root / "out")


def test_quit_with_queued_batch_asks_and_restart_resumes(
    qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings, tmp_path: Path
) -> None:
    from lama_desktop.app import EmbeddedCluster
    from lama_desktop.engine.pipeline import JobSettings
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    settings.local_workers = False  # no worker yet: the batch can only wait in the queue
    first = EmbeddedCluster(settings, app_env)
    qloop.run(first.start())
    bridge = ClusterBridge(first.scheduler.events)
    window = MainWindow(first.scheduler, bridge, settings, dirs=app_env)
    qtbot.addWidget(window)
    window.show()
    quits = Recorder(window.quitConfirmed)
    plan = make_batch(tmp_path)
    batch_id = first.scheduler.submit_batch(
        plan, JobSettings(model="opencv-ns", device="cpu"), "holiday"
    )

    async def close_and_confirm() -> None:
        while window.unfinished_batches() != 1:
            await asyncio.sleep(0.02)
        window.close()  # no tray host offscreen: closing is a quit, after the question
        box = await message_box()
        assert "resume the next time" in box.text()
        box.button(QMessageBox.StandardButton.Yes).click()
        await quits.wait()

    try:
        qloop.run(close_and_confirm())
    finally:
        window.shutdown()
        qloop.run(first.stop())
    assert not any((tmp_path / "out").glob("*.png")), "nothing ran before the restart"

    settings.local_workers = True
    second = EmbeddedCluster(settings, app_env)
    bridge2 = ClusterBridge(second.scheduler.events)  # subscribed before the resume happens
    qloop.run(second.start())
    try:

        def resumed() -> list[Any]:
            return [b for b in bridge2.batches() if b.batch_id == batch_id and b.resumed]

        qloop.wait_until(lambda: bool(resumed()), timeout=10)
        wait_local_ready(qloop, second)
        outcomes = qloop.run(second.scheduler.wait_batch(batch_id), timeout=30)
        assert sorted(o.status for o in outcomes) == ["done", "done"]
        assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["p0.png", "p1.png"]
    finally:
        qloop.run(second.stop())
