"""With the real scheduler and a local worker: a dropped folder is queued with the right pairs,
runs, and the Queue panel and tray show its progress and why a photo failed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtCore import Qt

from lama_desktop.cluster.events import BatchState, JobState
from lama_desktop.ui.batch_dialog import BatchDialog
from lama_desktop.ui.bridge import ClusterBridge
from lama_desktop.ui.queue_model import COLUMNS
from tests.ui.conftest import write_photo

pytestmark = [
    pytest.mark.gui,
    pytest.mark.integration,
    pytest.mark.qt_log_ignore("This plugin does not support"),
]


def make_shoot(root: Path) -> Path:
    """shoot/: a.png and b.png (good), c.jpg (corrupt), d.png (no mask); masks in shoot_masks/."""
    shoot = root / "shoot"
    shoot.mkdir()
    for i, name in enumerate(("a.png", "b.png", "d.png")):
        write_photo(shoot / name, 64, 48, seed=i)
    (shoot / "c.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    masks = root / "shoot_masks"
    masks.mkdir()
    for stem in ("a", "b", "c"):
        mask = Image.new("L", (64, 48), 0)
        mask.paste(255, (20, 10, 40, 30))
        mask.save(masks / f"{stem}.png")
    return shoot


def test_dropped_folder_is_queued_runs_and_shows_failure(
    qtbot, qloop, cluster, settings, app_env, tmp_path: Path
) -> None:
    from lama_desktop.ui.main_window import MainWindow

    shoot = make_shoot(tmp_path)
    scheduler = cluster.scheduler
    bridge = ClusterBridge(scheduler.events)
    window = MainWindow(scheduler, bridge, settings, dirs=app_env)
    qtbot.addWidget(window)
    window.handle_dropped([shoot])
    dialog = window.findChild(BatchDialog)
    assert dialog is not None and dialog.isVisible()
    qloop.wait_until(lambda: dialog.plan is not None, timeout=10)
    assert "3 photo(s) pair with a mask" in dialog.summary.text()
    assert dialog.unpaired.item(0).text().startswith("d.png: no mask")
    dialog.ok_button.click()

    qloop.wait_until(lambda: len(bridge.batches()) == 1, timeout=5)
    batch_id = bridge.batches()[0].batch_id
    queued = {Path(j.image).name for j in bridge.jobs(batch_id)}
    assert queued == {"a.png", "b.png", "c.jpg"}
    qloop.wait_until(
        lambda: bridge.batch(batch_id).state in (BatchState.DONE, BatchState.FAILED), timeout=60
    )
    batch = bridge.batch(batch_id)
    assert (batch.state, batch.done, batch.failed) == (BatchState.FAILED, 2, 1)

    panel, model = window.queue_panel, window.queue_panel.model
    top = model.batch_index(batch_id)
    assert model.data(top.siblingAtColumn(COLUMNS.index("Progress"))) == "3 / 3, 1 failed"
    rows = {
        model.data(model.index(r, 0, top)): r for r in range(model.rowCount(top))
    }  # fmt: skip
    bad = rows["c.jpg"]
    state = model.data(model.index(bad, COLUMNS.index("State"), top))
    assert state.startswith(JobState.FAILED.value)
    reason = model.data(model.index(bad, COLUMNS.index("Reason"), top))
    assert reason and "c.jpg" in reason
    tip = model.data(model.index(bad, 0, top), Qt.ItemDataRole.ToolTipRole)
    assert f"Reason: {reason}" in tip
    good = rows["a.png"]
    assert model.data(model.index(good, COLUMNS.index("Node"), top))  # the node that ran it
    assert (shoot.parent / "shoot_cleaned" / "a.png").is_file()
    assert not (shoot.parent / "shoot_cleaned" / "d.png").exists()
    panel.select_batch(batch_id)
    assert panel.retry_button.isEnabled()
    # Named after the folder and the time, so a second run of the same folder differs.
    assert re.fullmatch(r"shoot \d\d:\d\d", batch.name)
    assert model.data(top.siblingAtColumn(COLUMNS.index("State"))) == "done, 1 failed"

    # Clear finished: gone from the panel, the scheduler and the journal.
    qloop.run(scheduler.writer.flush())
    journal = scheduler.journal
    assert journal is not None and journal.batch(batch_id) is not None
    panel.clear_button.click()
    qloop.wait_until(lambda: model.rowCount() == 0, timeout=5)
    assert batch_id not in scheduler.state.batches and bridge.batches() == []
    qloop.wait_until(lambda: journal.batch(batch_id) is None, timeout=5)
    assert journal.jobs(batch_id) == []
    window.shutdown()
