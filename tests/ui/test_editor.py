"""Editor against a real scheduler and local OpenCV worker: strokes erase inside the mask only,
undo/redo restore exact pixels, saving keeps the format and never overwrites silently.

Each scenario runs as a coroutine on the qasync loop, so Qt input and the cluster's sockets are
served by one loop, as in the app.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox

from lama_desktop.config import AppDirs, AppSettings
from lama_desktop.ui.editor import EditorWidget
from tests.ui.conftest import LoopRunner, Recorder, write_photo

# The offscreen platform cannot propagate size hints; pyzmq closes a socket's descriptor before
# qasync drops its notifier (stopping a cluster inside a test).
pytestmark = [
    pytest.mark.gui,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "QSocketNotifier: Invalid"),
    pytest.mark.usefixtures("no_leaked_widgets"),
]


@pytest.fixture
def editor(qtbot: Any, cluster: Any, settings: AppSettings, app_env: AppDirs) -> EditorWidget:
    widget = EditorWidget(cluster.scheduler, settings, app_env.models)
    qtbot.addWidget(widget)
    widget.resize(800, 600)
    widget.show()
    return widget


def stroke(editor: EditorWidget, start: tuple[int, int], end: tuple[int, int]) -> np.ndarray:
    """Drag the left button between two photo points; returns the mask as it was released."""
    canvas = editor.canvas
    a = canvas.image_to_widget(QPointF(*start)).toPoint()
    b = canvas.image_to_widget(QPointF(*end)).toPoint()
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, pos=a)
    for t in np.linspace(0, 1, 6)[1:]:
        step = QPoint(round((b.x() - a.x()) * t), round((b.y() - a.y()) * t))
        QTest.mouseMove(canvas, a + step)
    mask = canvas.mask_array()
    assert mask is not None and mask.any(), "the stroke painted nothing"
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=b)
    return mask


async def erase(editor: EditorWidget, rounds: Recorder, start: Any, end: Any) -> np.ndarray:
    """One round: paint (run on release) and wait for the result on screen."""
    count = len(rounds.calls)
    mask = stroke(editor, start, end)
    await rounds.wait(count + 1)
    return mask


def test_stroke_erases_inside_mask_only_and_undo_restores(
    qloop: LoopRunner, editor: EditorWidget, tmp_path: Path
) -> None:
    original = write_photo(tmp_path / "photo.png")
    rounds = Recorder(editor.roundFinished)

    async def scenario() -> None:
        await editor.open_file(tmp_path / "photo.png")
        assert np.array_equal(editor.canvas.pixels(), original)

        mask1 = await erase(editor, rounds, (100, 100), (180, 120))
        after1 = editor.canvas.pixels().copy()
        inside, outside = mask1 > 0, mask1 == 0
        assert np.array_equal(after1[outside], original[outside]), "pixels outside the mask moved"
        assert (after1[inside] != original[inside]).any(), "nothing changed inside the mask"
        assert not editor.canvas.has_mask(), "the mask is cleared for the next round"
        node, seconds = rounds.calls[-1]
        assert node.endswith("(this computer)") and 0 < seconds < 20

        mask2 = await erase(editor, rounds, (40, 200), (60, 160))  # a round on the result
        after2 = editor.canvas.pixels().copy()
        assert editor.undo_stack.count() == 2
        assert np.array_equal(after2[mask2 == 0], after1[mask2 == 0])

        editor.undo_stack.undo()
        assert np.array_equal(editor.canvas.pixels(), after1)
        editor.undo_stack.undo()
        assert np.array_equal(editor.canvas.pixels(), original)
        editor.undo_stack.redo()
        editor.undo_stack.redo()
        assert np.array_equal(editor.canvas.pixels(), after2)

    qloop.run(scenario())


def test_an_edit_during_a_save_keeps_the_photo_marked_unsaved(
    qloop: LoopRunner, editor: EditorWidget, tmp_path: Path
) -> None:
    write_photo(tmp_path / "photo.png")
    rounds = Recorder(editor.roundFinished)
    target = tmp_path / "photo-cleaned.png"

    async def scenario() -> None:
        await editor.open_file(tmp_path / "photo.png")
        await erase(editor, rounds, (100, 100), (180, 120))
        await erase(editor, rounds, (40, 200), (60, 160))
        saving = asyncio.ensure_future(editor.save_to(target))
        await asyncio.sleep(0)  # the write is under way in its thread
        editor.undo_stack.undo()  # the user goes on while it is written
        await saving
        assert target.exists()
        assert editor.saved_path != target and editor.is_modified()

    qloop.run(scenario())


def test_view_tools_brush_keys_compare_and_eraser(
    qloop: LoopRunner, editor: EditorWidget, tmp_path: Path
) -> None:
    write_photo(tmp_path / "p.png")
    qloop.run(editor.open_file(tmp_path / "p.png"))
    canvas = editor.canvas
    canvas.actual_size()
    assert canvas.scale() == pytest.approx(1.0)
    anchor = QPointF(200, 150)
    fixed = canvas.widget_to_image(anchor)
    canvas.zoom_by(2.0, anchor)  # what one wheel step does, around the cursor
    assert canvas.scale() == pytest.approx(2.0)
    moved = canvas.widget_to_image(anchor)
    assert (moved.x(), moved.y()) == pytest.approx((fixed.x(), fixed.y()))
    wheel = QWheelEvent(
        anchor, canvas.mapToGlobal(anchor), QPoint(0, 0), QPoint(0, 120),
        Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase, False,
    )  # fmt: skip
    QApplication.sendEvent(canvas, wheel)
    assert canvas.scale() == pytest.approx(2.0 * 1.25)

    # Pan with the middle button, then with space + left drag: the photo follows the mouse.
    for button, key in ((Qt.MouseButton.MiddleButton, None), (Qt.MouseButton.LeftButton, " ")):
        before = canvas.widget_to_image(QPointF(100, 100))
        if key:
            QTest.keyPress(canvas, Qt.Key.Key_Space)
        QTest.mousePress(canvas, button, pos=QPoint(300, 300))
        QTest.mouseMove(canvas, QPoint(340, 320))
        QTest.mouseRelease(canvas, button, pos=QPoint(340, 320))
        if key:
            QTest.keyRelease(canvas, Qt.Key.Key_Space)
        after = canvas.widget_to_image(QPointF(140, 120))
        assert (after.x(), after.y()) == pytest.approx((before.x(), before.y()))
    assert not canvas.has_mask(), "panning painted nothing"
    canvas.fit()

    size = editor.size_slider.value()
    QTest.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert editor.size_slider.value() > size
    assert canvas.brush_size() == editor.size_slider.value()
    QTest.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert editor.size_slider.value() < canvas.brush_size() + 1

    QTest.keyPress(canvas, Qt.Key.Key_C)
    assert canvas.is_comparing()
    QTest.keyRelease(canvas, Qt.Key.Key_C)
    assert not canvas.is_comparing()

    editor.auto_run.setChecked(False)  # manual mode: a stroke only paints
    stroke(editor, (150, 110), (170, 130))
    assert canvas.has_mask() and not editor.is_running()
    editor.eraser_button.click()
    canvas.set_brush_size(400)
    point = canvas.image_to_widget(QPointF(160, 120)).toPoint()
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=point)
    assert not canvas.has_mask(), "the eraser removed the paint"


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
    rounds = Recorder(editor.roundFinished)

    async def scenario() -> None:
        await editor.open_file(tmp_path / "photo.jpg")
        await erase(editor, rounds, (100, 100), (140, 100))
        assert editor.is_modified()
        status = window.last_edit_label.text()  # which node ran it, and how long it took
        assert status.startswith("Last edit: ") and "(this computer)" in status and " ms" in status
        assert window.workers_label.text() == "Local workers: ready (1)"

        target = tmp_path / "photo-cleaned.jpg"
        await editor.save_to(target)
        with Image.open(target) as saved:
            assert saved.format == "JPEG" and saved.size == (320, 240)
        with pytest.raises(FileExistsError):
            await editor.save_to(target)  # an existing file is never replaced silently
        with pytest.raises(ValueError, match=r"\.tif"):
            await editor.save_to(tmp_path / "photo.tif")  # JPEG bytes under a TIFF name: no
        assert not (tmp_path / "photo.tif").exists()

        editor.saved_path = None  # plain Save with no Save As: the target is the original
        task = window.save()
        box = await message_box()
        assert "Replace the original" in box.text()
        box.button(QMessageBox.StandardButton.Cancel).click()
        await task
        assert (tmp_path / "photo.jpg").read_bytes() == before, "the original was touched"

        task = window.save()
        box = await message_box()
        box.button(QMessageBox.StandardButton.Save).click()  # labelled "Overwrite"
        await task
        assert (tmp_path / "photo.jpg").read_bytes() != before
        assert not editor.is_modified()

    try:
        qloop.run(scenario())
    finally:
        window.shutdown()


async def message_box(timeout: float = 5.0) -> QMessageBox:
    """The question box the window has just opened (with open(), so the loop keeps running)."""

    def visible() -> list[QMessageBox]:
        return [
            w
            for w in QApplication.topLevelWidgets()
            if isinstance(w, QMessageBox) and w.isVisible()
        ]

    async def poll() -> QMessageBox:
        while not visible():
            await asyncio.sleep(0.01)
        return visible()[0]

    return await asyncio.wait_for(poll(), timeout)


def test_edit_without_a_worker_waits_and_escape_cancels(
    qtbot: Any, qloop: LoopRunner, app_env: AppDirs, settings: AppSettings, tmp_path: Path
) -> None:
    from lama_desktop.app import EmbeddedCluster

    settings.local_workers = False  # nothing can run the edit: it waits in the queue
    idle = EmbeddedCluster(settings, app_env)
    qloop.run(idle.start())
    try:
        editor = EditorWidget(idle.scheduler, settings, app_env.models)
        qtbot.addWidget(editor)
        editor.resize(800, 600)
        editor.show()
        messages = Recorder(editor.statusMessage)
        original = write_photo(tmp_path / "p.png")
        qloop.run(editor.open_file(tmp_path / "p.png"))
        stroke(editor, (100, 100), (150, 120))
        qloop.wait_until(lambda: any("Waiting for a free worker" in m[0] for m in messages.calls))
        assert editor.is_running()
        editor.cancel_or_clear()  # what Esc does (Edit > Cancel edit / clear mask)
        qloop.wait_until(lambda: not editor.is_running(), timeout=5)
        assert messages.calls[-1] == ("Edit cancelled; the mask is kept.",)
        assert editor.canvas.has_mask() and editor.undo_stack.count() == 0
        assert np.array_equal(editor.canvas.pixels(), original)
        editor.cancel_or_clear()  # nothing in flight: Esc clears the mask
        assert not editor.canvas.has_mask()
    finally:
        qloop.run(idle.stop())
