"""Batch dialog: a dropped folder is scanned off the GUI thread and paired with its masks."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from lama_desktop.config import AppSettings
from lama_desktop.engine import plan as plan_module
from lama_desktop.engine.plan import PlanError
from lama_desktop.ui.batch_dialog import BatchDialog, guess_defaults, plan_dropped

pytestmark = [pytest.mark.gui, pytest.mark.qt_log_ignore("This plugin does not support")]


def photo(path: Path, colour: tuple[int, int, int] = (200, 50, 50)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 12), colour).save(path)
    return path


def mask(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (16, 12), 255).save(path)
    return path


@pytest.fixture
def shoot(tmp_path: Path) -> Path:
    """photos/ a.jpg b.png c.jpg, masks next to it for a and b only."""
    photos = tmp_path / "shoot"
    for name in ("a.jpg", "b.png", "c.jpg"):
        photo(photos / name)
    mask(tmp_path / "shoot_masks" / "a.png")
    mask(tmp_path / "shoot_masks" / "b.png")
    return photos


def test_dropped_folder_pairs_masks_and_lists_the_rest(qtbot, qloop, shoot: Path) -> None:
    dialog = BatchDialog([shoot], AppSettings(model="opencv-ns", hd_strategy="resize"))
    qtbot.addWidget(dialog)
    qloop.wait_until(lambda: dialog.plan is not None, timeout=15)
    assert dialog.masks_edit.text() == str(shoot.parent / "shoot_masks")
    assert dialog.output_edit.text() == str(shoot.parent / "shoot_cleaned")
    assert dialog.name_edit.text() == "shoot"
    assert "2 photo(s) pair with a mask" in dialog.summary.text()
    assert "1 will be skipped" in dialog.summary.text()
    unpaired = [dialog.unpaired.item(i).text() for i in range(dialog.unpaired.count())]
    assert len(unpaired) == 1 and unpaired[0].startswith("c.jpg: no mask")
    assert dialog.ok_button.isEnabled()

    plan, settings, name = dialog.result_batch()
    assert [(j.image.name, j.mask.name, j.output) for j in plan.jobs] == [
        ("a.jpg", "a.png", shoot.parent / "shoot_cleaned" / "a.jpg"),
        ("b.png", "b.png", shoot.parent / "shoot_cleaned" / "b.png"),
    ]
    assert settings.model == "opencv-ns" and settings.hd.strategy.value == "resize"
    assert name == "shoot"


def test_single_mask_for_all_and_bad_input(qtbot, qloop, shoot: Path, tmp_path: Path) -> None:
    dialog = BatchDialog([shoot], AppSettings())
    qtbot.addWidget(dialog)
    qloop.wait_until(lambda: dialog.plan is not None, timeout=15)
    dialog.mask_file_radio.setChecked(True)
    assert dialog.masks_edit.text() == "" and not dialog.ok_button.isEnabled()
    dialog.masks_edit.setText(str(tmp_path / "nowhere.png"))
    qloop.wait_until(lambda: "Cannot plan" in dialog.summary.text(), timeout=15)
    assert "not found" in dialog.summary.text() and not dialog.ok_button.isEnabled()
    assert dialog.result_batch() is None
    dialog.masks_edit.setText(str(mask(tmp_path / "all.png")))
    qloop.wait_until(lambda: dialog.plan is not None, timeout=15)
    assert "3 photo(s) pair with a mask" in dialog.summary.text()


def test_scan_runs_off_the_gui_thread(qtbot, qloop, shoot: Path, monkeypatch) -> None:
    threads: list[bool] = []
    real = plan_module.plan_batch

    def spy(*args, **kwargs):
        threads.append(threading.current_thread() is threading.main_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr("lama_desktop.ui.batch_dialog.plan_batch", spy)
    dialog = BatchDialog([shoot], AppSettings())
    qtbot.addWidget(dialog)
    qloop.wait_until(lambda: dialog.plan is not None, timeout=15)
    assert threads and not any(threads)


def test_plan_dropped_merges_folders_and_photos(tmp_path: Path) -> None:
    masks = tmp_path / "masks"
    for sub in ("day1", "day2"):
        photo(tmp_path / sub / "x.jpg")
    mask(masks / "x.png")
    loose = photo(tmp_path / "loose" / "y.jpg")
    mask(masks / "y.png")
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    out = tmp_path / "out"
    plan = plan_dropped([tmp_path / "day1", tmp_path / "day2", loose, notes], masks, out)
    assert sorted(str(j.output.relative_to(out)) for j in plan.jobs) == [
        "day1/x.jpg",
        "day2/x.jpg",
        "y.jpg",
    ]
    assert [(s.image.name, s.reason) for s in plan.skipped] == [
        ("notes.txt", "not a photo this app reads")
    ]
    # Two loose photos with the same name would write the same output: the second is skipped.
    other = photo(tmp_path / "elsewhere" / "y.jpg")
    plan = plan_dropped([loose, other], masks, out)
    assert [j.image for j in plan.jobs] == [loose]
    assert "already writes y.jpg" in plan.skipped[0].reason
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanError, match="no images"):
        plan_dropped([tmp_path / "empty"], masks, out)
    plan = plan_dropped([tmp_path / "gone.jpg", loose], masks, out)
    assert [(s.image.name, s.reason) for s in plan.skipped] == [("gone.jpg", "not found")]


def test_guess_defaults(tmp_path: Path) -> None:
    photo(tmp_path / "trip" / "a.jpg")
    (tmp_path / "trip" / "masks").mkdir()
    guess = guess_defaults([tmp_path / "trip"])
    assert guess.masks == tmp_path / "trip" / "masks"
    assert guess.output == tmp_path / "trip_cleaned" and guess.name == "trip"
    assert guess_defaults([tmp_path / "trip" / "a.jpg"]).name == "trip"


def test_file_batch_without_drop_asks_for_a_folder(qtbot, qloop, shoot: Path) -> None:
    dialog = BatchDialog([], AppSettings())
    qtbot.addWidget(dialog)
    assert "none yet" in dialog.inputs.text() and not dialog.ok_button.isEnabled()
    dialog._set_input(str(shoot))  # what the folder chooser hands back
    qloop.wait_until(lambda: dialog.plan is not None, timeout=15)
    assert dialog.inputs.text() == "1 folder(s): shoot"
    assert len(dialog.plan.jobs) == 2 and dialog.ok_button.isEnabled()
