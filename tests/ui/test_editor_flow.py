"""The editor in the window, one photo after another: Save As names the title and Ctrl+S's file,
unsaved edits ask Save / Discard / Cancel (Save the default), a loading photo and a long edit
say so on the canvas (Esc cancels), and the filmstrip steps through the folder."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from lama_desktop.cluster.events import EventBus
from lama_desktop.config import AppDirs, AppSettings
from lama_desktop.engine.imageio import read_image
from tests.ui.conftest import LoopRunner, Recorder, write_photo
from tests.ui.test_editor import erase, message_box

pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]

Button = QMessageBox.StandardButton


class Painter:
    """Stands in for the scheduler: paints the masked pixels green, after `gate` opens."""

    def __init__(self) -> None:
        self.events = EventBus()
        self.gate: asyncio.Event | None = None

    async def inpaint(self, rgb: np.ndarray, mask: np.ndarray, settings: Any) -> Any:
        if self.gate is not None:
            await self.gate.wait()
        out = rgb.copy()
        out[mask > 0] = (0, 255, 0)
        return SimpleNamespace(rgb=out, node="painter", seconds=0.01)


@pytest.fixture
def window(qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings) -> Any:
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    painter = Painter()
    win = MainWindow(painter, ClusterBridge(painter.events), settings, dirs=app_env)
    win.painter = painter
    qtbot.addWidget(win)
    win.show()
    yield win
    win.shutdown()


def folder(tmp_path: Path) -> list[Path]:
    """Three photos, plus files the filmstrip must leave out."""
    photos = [tmp_path / name for name in ("a.png", "B.png", "c.jpg")]
    for seed, path in enumerate(photos):
        write_photo(path, seed=seed)
    (tmp_path / "notes.txt").write_text("not a photo")
    write_photo(tmp_path / ".hidden.png")
    return photos


def test_save_as_names_the_title_and_the_file_ctrl_s_writes(
    qloop: LoopRunner, window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lama_desktop.ui import main_window

    photo = tmp_path / "photo.png"
    write_photo(photo)
    before = photo.read_bytes()
    editor = window.editor
    rounds = Recorder(editor.roundFinished)
    chosen = tmp_path / "kept.png"

    async def choose(_parent: Any, _suggested: Path) -> Path:
        return chosen

    monkeypatch.setattr(main_window, "choose_save_path", choose)

    async def scenario() -> None:
        await window.open_path(photo)
        await erase(editor, rounds, (100, 100), (140, 120))
        assert window.windowTitle().startswith("photo.png*")
        await window.save_as()
        assert window.windowTitle() == "kept.png — Lama Desktop"
        await erase(editor, rounds, (40, 40), (60, 60))
        assert window.windowTitle().startswith("kept.png*")
        window.save_action.trigger()  # Ctrl+S: to kept.png, with no question
        await asyncio.wait_for(_until(lambda: not editor.is_modified()), 10)
        assert photo.read_bytes() == before, "the original was touched"
        assert np.array_equal(read_image(chosen).rgb, editor.canvas.pixels())
        assert window.windowTitle() == "kept.png — Lama Desktop"

    qloop.run(scenario())


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.01)


def test_unsaved_edits_ask_save_discard_cancel_with_save_the_default(
    qloop: LoopRunner, window: Any, tmp_path: Path
) -> None:
    a, b, _c = folder(tmp_path)
    editor = window.editor
    rounds = Recorder(editor.roundFinished)

    async def scenario() -> None:
        await window.open_path(a)
        await erase(editor, rounds, (100, 100), (140, 120))
        assert window.last_edit_label.text().startswith("Last edit: painter")

        opening = window.open_path(b)
        box = await message_box()
        assert box.defaultButton() is box.button(Button.Save)
        assert box.escapeButton() is box.button(Button.Cancel)
        assert {box.standardButton(x) for x in box.buttons()} == {
            Button.Save,
            Button.Discard,
            Button.Cancel,
        }
        box.button(Button.Cancel).click()
        await opening
        assert editor.path == a and editor.is_modified()

        opening = window.open_path(b)
        (await message_box()).button(Button.Save).click()
        overwrite = await _next_box(box)  # no Save As yet: replace the original?
        assert overwrite.defaultButton() is overwrite.button(Button.SaveAll)  # "Save As…"
        overwrite.button(Button.Cancel).click()
        await opening
        assert editor.path == a and editor.is_modified(), "a cancelled save keeps the photo"

        opening = window.open_path(b)
        (await message_box()).button(Button.Discard).click()
        await opening
        assert editor.path == b and not editor.is_modified()
        assert window.last_edit_label.text() == "", "the last photo's figures are cleared"

    qloop.run(scenario())


async def _next_box(previous: QMessageBox) -> QMessageBox:
    """The next question box, once `previous` has gone."""
    while True:
        box = await message_box()
        if box is not previous:
            return box
        await asyncio.sleep(0.01)


def test_a_loading_photo_and_a_long_edit_show_a_busy_card_and_esc_cancels(
    qloop: LoopRunner, window: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lama_desktop.ui.editor import editor as editor_module

    photo = tmp_path / "slow.png"
    original = write_photo(photo)
    decode = threading.Event()

    def slow_read(path: Path) -> Any:
        decode.wait(10)
        return read_image(path)

    monkeypatch.setattr(editor_module, "read_image", slow_read)
    editor = window.editor
    canvas = editor.canvas

    async def scenario() -> None:
        opening = asyncio.ensure_future(editor.open_file(photo))
        await asyncio.sleep(0.05)
        assert canvas.activity() == "Loading slow.png…"
        decode.set()
        assert await opening
        assert canvas.activity() is None

        window.painter.gate = asyncio.Event()  # the edit waits until cancelled
        editor.auto_run.setChecked(False)
        from tests.ui.test_editor import stroke

        stroke(editor, (100, 100), (150, 120))
        editor.start_round()
        await asyncio.wait_for(_until(lambda: canvas.activity() is not None), 5)
        assert "Esc cancels" in str(canvas.activity()) and editor.is_running()
        QTest.keyClick(editor, Qt.Key.Key_Escape)
        await asyncio.wait_for(_until(lambda: not editor.is_running()), 5)
        assert canvas.activity() is None and canvas.has_mask()
        assert np.array_equal(canvas.pixels(), original)

    qloop.run(scenario())


def test_filmstrip_steps_through_the_folder(qloop: LoopRunner, window: Any, tmp_path: Path) -> None:
    a, b, c = folder(tmp_path)
    editor = window.editor
    strip = editor.filmstrip
    rounds = Recorder(editor.roundFinished)

    async def scenario() -> None:
        assert strip.isHidden(), "no photo, no filmstrip"
        await window.open_path(b)
        await asyncio.wait_for(_until(lambda: strip.photos() == [a, b, c]), 5)
        assert strip.isVisible()
        assert strip.currentItem().text() == "B.png"
        # Previews are decoded off the GUI thread and arrive as icons.
        await asyncio.wait_for(
            _until(lambda: all(not strip.item(i).icon().isNull() for i in range(3))), 10
        )

        window.step_photo(+1)
        await asyncio.wait_for(_until(lambda: editor.path == c), 5)
        window.step_photo(+1)  # the last photo: nothing after it
        await asyncio.sleep(0.05)
        assert editor.path == c
        window.step_photo(-1)
        window.step_photo(-1)  # before B has opened: steps on from B, to A
        await asyncio.wait_for(_until(lambda: editor.path == a), 5)
        await asyncio.wait_for(_until(lambda: strip.currentItem().text() == "a.png"), 5)

        await erase(editor, rounds, (100, 100), (140, 120))
        window.step_photo(+1)  # stepping away from unsaved edits asks first
        (await message_box()).button(Button.Cancel).click()
        await asyncio.sleep(0.05)
        assert editor.path == a and editor.is_modified()

        strip.item(2).setSelected(True)
        strip.itemClicked.emit(strip.item(2))  # a click on c asks too
        (await message_box()).button(Button.Discard).click()
        await asyncio.wait_for(_until(lambda: editor.path == c), 5)
        strip.toggle_action.trigger()  # View > Filmstrip off
        assert strip.isHidden()

    qloop.run(scenario())


def test_saving_a_16_bit_photo_with_8_bits_is_said_first(
    qloop: LoopRunner, window: Any, tmp_path: Path
) -> None:
    import cv2

    rng = np.random.default_rng(2)
    deep = rng.integers(0, 65536, (120, 160, 3), dtype=np.uint16)
    photo = tmp_path / "scan.png"
    assert cv2.imwrite(str(photo), deep)
    editor = window.editor

    async def scenario() -> None:
        await window.open_path(photo)
        saving = asyncio.ensure_future(editor.save_asking(tmp_path / "out.jpg"))
        box = await message_box()
        assert "16 bits per channel" in box.text() and "PNG" in box.text()
        assert box.defaultButton() is box.button(Button.Cancel)
        box.button(Button.Cancel).click()
        assert await saving is None and not (tmp_path / "out.jpg").exists()

        saving = asyncio.ensure_future(editor.save_asking(tmp_path / "out.jpg"))
        (await message_box()).button(Button.Save).click()
        assert await saving == tmp_path / "out.jpg"
        assert (tmp_path / "out.jpg").exists()

        await editor.save_asking(tmp_path / "out.png")  # PNG keeps 16 bits: no question
        kept = cv2.imread(str(tmp_path / "out.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(kept, deep)  # both in OpenCV's BGR order

    qloop.run(scenario())
