"""What the canvas shows: a checkerboard behind transparent pixels, before and after across a
draggable divider, and a busy card (compared by rendered pixels)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage
from PySide6.QtTest import QTest

from lama_desktop.ui.editor.canvas import Canvas
from lama_desktop.ui.editor.overlay import CHECKER_DARK, CHECKER_LIGHT

pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("no_leaked_widgets")]


@pytest.fixture
def canvas(qtbot: Any) -> Canvas:
    widget = Canvas()
    qtbot.addWidget(widget)
    widget.resize(400, 300)
    widget.show()
    return widget


def rendered(canvas: Canvas) -> QImage:
    return canvas.grab().toImage()


def colour_at(image: QImage, point: QPointF) -> tuple[int, int, int]:
    colour = QColor(image.pixel(point.toPoint()))
    return colour.red(), colour.green(), colour.blue()


def solid(colour: tuple[int, int, int], width: int = 200, height: int = 150) -> np.ndarray:
    return np.full((height, width, 3), colour, np.uint8)


def test_transparent_pixels_show_a_checkerboard(canvas: Canvas) -> None:
    alpha = np.full((150, 200), 255, np.uint8)
    alpha[:, :100] = 0  # the left half is fully transparent
    canvas.load(solid((200, 30, 30)), alpha)
    canvas.actual_size()
    image = rendered(canvas)
    light = CHECKER_LIGHT.getRgb()[:3]
    dark = CHECKER_DARK.getRgb()[:3]
    seen = {colour_at(image, canvas.image_to_widget(QPointF(x, 70))) for x in range(4, 96, 4)}
    assert seen == {light, dark}, f"transparent pixels show {seen}"
    assert colour_at(image, canvas.image_to_widget(QPointF(150, 70))) == (200, 30, 30)


def test_opaque_photo_has_no_checkerboard(canvas: Canvas) -> None:
    canvas.load(solid((10, 90, 200)))
    canvas.actual_size()
    assert colour_at(rendered(canvas), canvas.image_to_widget(QPointF(20, 20))) == (10, 90, 200)


def test_split_view_shows_before_left_and_after_right_and_the_divider_drags(
    canvas: Canvas,
) -> None:
    canvas.load(solid((255, 0, 0), 400, 300))  # fills the canvas at Fit
    canvas.set_pixels(solid((0, 0, 255), 400, 300))
    canvas.set_split(True)
    assert canvas.split() == pytest.approx(0.5)
    image = rendered(canvas)
    assert colour_at(image, QPointF(100, 40)) == (255, 0, 0)  # before
    assert colour_at(image, QPointF(300, 40)) == (0, 0, 255)  # after

    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(201, 150))
    QTest.mouseMove(canvas, QPoint(260, 150))
    QTest.mouseMove(canvas, QPoint(320, 150))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(320, 150))
    assert canvas.split() == pytest.approx(0.8)
    assert not canvas.has_mask(), "dragging the divider painted no mask"
    assert colour_at(rendered(canvas), QPointF(300, 40)) == (255, 0, 0)

    canvas.set_split(False)
    assert colour_at(rendered(canvas), QPointF(100, 40)) == (0, 0, 255)


def test_busy_card_is_drawn_and_taken_away(canvas: Canvas) -> None:
    canvas.load(solid((0, 120, 0), 400, 300))
    plain = rendered(canvas)
    canvas.set_activity("Erasing… (Esc cancels)")
    busy = rendered(canvas)
    middle = QPointF(200, 150)
    assert colour_at(busy, middle) != colour_at(plain, middle)
    canvas.set_activity(None)
    assert canvas.activity() is None
    assert colour_at(rendered(canvas), middle) == (0, 120, 0)
