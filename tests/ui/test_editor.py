"""Editor against a real scheduler and local OpenCV worker: strokes erase inside the mask only,
undo/redo restore exact pixels, saving keeps the format and never overwrites silently."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from lama_desktop.config import AppDirs, AppSettings
from lama_desktop.ui.editor import EditorWidget
from tests.ui.conftest import LoopRunner, write_photo

pytestmark = pytest.mark.gui


@pytest.fixture
def editor(
    qtbot: Any, qloop: LoopRunner, cluster: Any, settings: AppSettings, app_env: AppDirs
) -> EditorWidget:
    widget = EditorWidget(cluster.scheduler, settings, app_env.models)
    qtbot.addWidget(widget)
    widget.resize(800, 600)
    widget.show()
    qtbot.waitExposed(widget)
    return widget


def stroke(qtbot: Any, editor: EditorWidget, start: tuple[int, int], end: tuple[int, int]) -> None:
    """Drag the left button across the canvas between two photo points."""
    canvas = editor.canvas
    a = canvas.image_to_widget(QPointF(*start)).toPoint()
    b = canvas.image_to_widget(QPointF(*end)).toPoint()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=a)
    for t in np.linspace(0, 1, 6)[1:]:
        qtbot.mouseMove(canvas, a + QPoint(round((b.x() - a.x()) * t), round((b.y() - a.y()) * t)))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=b)


def run_stroke(qtbot: Any, qloop: LoopRunner, editor: EditorWidget, start: Any, end: Any) -> None:
    """Paint a stroke (run on release), wait for the round, and check the mask it used."""
    with qtbot.waitSignal(editor.roundFinished, timeout=20_000):
        stroke(qtbot, editor, start, end)
        mask = editor.canvas.mask_array()
        assert mask is not None and mask.any()
        editor.last_mask = mask  # type: ignore[attr-defined]


def test_stroke_erases_inside_mask_only_and_undo_restores(
    qtbot: Any, qloop: LoopRunner, editor: EditorWidget, tmp_path: Path
) -> None:
    original = write_photo(tmp_path / "photo.png")
    qloop.run(editor.open_file(tmp_path / "photo.png"))
    assert np.array_equal(editor.canvas.pixels(), original)

    run_stroke(qtbot, qloop, editor, (100, 100), (180, 120))
    mask1 = editor.last_mask  # type: ignore[attr-defined]
    after1 = editor.canvas.pixels().copy()
    inside, outside = mask1 > 0, mask1 == 0
    assert np.array_equal(after1[outside], original[outside]), "pixels outside the mask changed"
    assert (after1[inside] != original[inside]).any(), "nothing changed inside the mask"
    assert not editor.canvas.has_mask(), "the mask is cleared for the next round"

    run_stroke(qtbot, qloop, editor, (40, 200), (60, 160))  # a second round on the result
    after2 = editor.canvas.pixels().copy()
    assert editor.undo_stack.count() == 2
    mask2 = editor.last_mask  # type: ignore[attr-defined]
    assert np.array_equal(after2[mask2 == 0], after1[mask2 == 0])

    editor.undo_stack.undo()
    assert np.array_equal(editor.canvas.pixels(), after1)
    editor.undo_stack.undo()
    assert np.array_equal(editor.canvas.pixels(), original)
    editor.undo_stack.redo()
    editor.undo_stack.redo()
    assert np.array_equal(editor.canvas.pixels(), after2)


def test_view_tools_and_compare(
    qtbot: Any, qloop: LoopRunner, editor: EditorWidget, tmp_path: Path
) -> None:
    write_photo(tmp_path / "p.png")
    qloop.run(editor.open_file(tmp_path / "p.png"))
    canvas = editor.canvas
    editor.canvas.actual_size()
    assert canvas.scale() == pytest.approx(1.0)
    anchor = QPointF(200, 150)
    fixed = canvas.widget_to_image(anchor)
    canvas.zoom_by(2.0, anchor)
    assert canvas.scale() == pytest.approx(2.0)
    moved = canvas.widget_to_image(anchor)
    assert (moved.x(), moved.y()) == pytest.approx((fixed.x(), fixed.y()))
    size = editor.size_slider.value()
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert editor.size_slider.value() > size
    assert canvas.brush_size() == editor.size_slider.value()
    qtbot.keyPress(canvas, Qt.Key.Key_C)
    assert canvas.is_comparing()
    qtbot.keyRelease(canvas, Qt.Key.Key_C)
    assert not canvas.is_comparing()
    editor.eraser_button.click()  # the eraser removes what the brush painted
    editor.brush_button.click()
    stroke_without_run(qtbot, editor)
    assert canvas.has_mask()
    editor.eraser_button.click()
    canvas.set_brush_size(200)
    point = canvas.image_to_widget(QPointF(160, 120)).toPoint()
    qtbot.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=point)
    assert not canvas.has_mask()


def stroke_without_run(qtbot: Any, editor: EditorWidget) -> None:
    editor.auto_run.setChecked(False)
    stroke(qtbot, editor, (150, 110), (170, 130))


def test_save_keeps_format_and_asks_before_overwriting_original(
    qtbot: Any,
    qloop: LoopRunner,
    cluster: Any,
    settings: AppSettings,
    app_env: AppDirs,
    tmp_path: Path,
) -> None:
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    write_photo(tmp_path / "photo.jpg")
    before = (tmp_path / "photo.jpg").read_bytes()
    bridge = ClusterBridge(cluster.scheduler.events)
    window = MainWindow(cluster.scheduler, bridge, settings, dirs=app_env)
    qtbot.addWidget(window)
    window.show()
    editor = window.editor
    qloop.run(editor.open_file(tmp_path / "photo.jpg"))
    run_stroke(qtbot, qloop, editor, (100, 100), (140, 100))
    assert editor.is_modified()

    target = tmp_path / "photo-cleaned.jpg"
    qloop.run(editor.save_to(target))
    with Image.open(target) as saved:
        assert saved.format == "JPEG" and saved.size == (320, 240)
    with pytest.raises(FileExistsError):
        qloop.run(editor.save_to(target))  # no silent overwrite of an existing file

    editor.saved_path = None  # Save with no Save As: the target is the original itself
    task = window.save()
    box = wait_for_box(qloop)
    assert "Replace the original" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    qloop.run(task)
    assert (tmp_path / "photo.jpg").read_bytes() == before, "the original was touched"

    task = window.save()
    box = wait_for_box(qloop)
    box.button(QMessageBox.StandardButton.Save).click()  # "Overwrite"
    qloop.run(task)
    assert (tmp_path / "photo.jpg").read_bytes() != before
    assert not editor.is_modified()
    window.shutdown()


def wait_for_box(qloop: LoopRunner) -> QMessageBox:
    found: list[QMessageBox] = []

    def visible() -> bool:
        found[:] = [
            w
            for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.isVisible()
        ]
        return bool(found)

    qloop.wait_until(visible, timeout=5)
    return found[0]
