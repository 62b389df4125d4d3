"""Icons drawn with QPainter: the calm tray icon, its progress ring, and state dots."""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap

TRAY_SIZE = 64
_INK = QColor("#37474f")
_RING_TRACK = QColor("#cfd8dc")
_RING = QColor("#1e88e5")
_PAPER = QColor("#fafafa")


def _canvas(size: int) -> tuple[QPixmap, QPainter]:
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    return pixmap, painter


def _draw_photo(painter: QPainter, rect: QRectF) -> None:
    """A small framed photo with a hill and a sun: the app's mark."""
    painter.setPen(QPen(_INK, rect.width() * 0.07))
    painter.setBrush(QBrush(_PAPER))
    painter.drawRoundedRect(rect, rect.width() * 0.12, rect.width() * 0.12)
    hill = QPainterPath()
    w, h, x, y = rect.width(), rect.height(), rect.x(), rect.y()
    hill.moveTo(x + w * 0.1, y + h * 0.85)
    hill.lineTo(x + w * 0.4, y + h * 0.45)
    hill.lineTo(x + w * 0.6, y + h * 0.68)
    hill.lineTo(x + w * 0.72, y + h * 0.56)
    hill.lineTo(x + w * 0.9, y + h * 0.85)
    hill.closeSubpath()
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(QColor("#66bb6a")))
    painter.drawPath(hill)
    painter.setBrush(QBrush(QColor("#ffb300")))
    painter.drawEllipse(QRectF(x + w * 0.62, y + h * 0.18, w * 0.18, h * 0.18))


@cache
def idle_icon(size: int = TRAY_SIZE) -> QIcon:
    """The calm icon shown while nothing runs."""
    pixmap, painter = _canvas(size)
    margin = size * 0.08
    _draw_photo(painter, QRectF(margin, margin, size - 2 * margin, size - 2 * margin))
    painter.end()
    return QIcon(pixmap)


def progress_icon(percent: int, size: int = TRAY_SIZE) -> QIcon:
    """The photo inside a ring that fills clockwise with `percent` (0-100)."""
    percent = max(0, min(100, int(percent)))
    pixmap, painter = _canvas(size)
    ring = size * 0.12
    outer = QRectF(ring / 2, ring / 2, size - ring, size - ring)
    painter.setPen(QPen(_RING_TRACK, ring))
    painter.drawEllipse(outer)
    pen = QPen(_RING, ring)
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    painter.setPen(pen)
    # Qt angles are in 1/16 degree, counter-clockwise from 3 o'clock: start at 12, go clockwise.
    painter.drawArc(outer, 90 * 16, -int(percent * 360 * 16 / 100))
    inset = size * 0.24
    _draw_photo(painter, QRectF(inset, inset, size - 2 * inset, size - 2 * inset))
    painter.end()
    return QIcon(pixmap)


class TrayIconPainter:
    """Chooses the tray icon; only a change of whole percent (or to idle) makes a new one.

    A tray icon that redraws on every event flickers and distracts; `update` returns None
    when the picture would be the same as the one already shown.
    """

    def __init__(self, size: int = TRAY_SIZE) -> None:
        self.size = size
        self.shown: int | None = -1  # -1: nothing shown yet; None: idle; 0-100: progress
        self.repaints = 0

    def update(self, percent: int | None) -> QIcon | None:
        """The icon for `percent` (None = idle), or None when it is the one already shown."""
        key = None if percent is None else max(0, min(100, int(percent)))
        if key == self.shown:
            return None
        self.shown = key
        self.repaints += 1
        return idle_icon(self.size) if key is None else progress_icon(key, self.size)


@cache
def state_dot(colour: str, size: int = 12) -> QIcon:
    """A filled dot in `colour` (a name like "#2e7d32"), shown next to a state."""
    pixmap, painter = _canvas(size)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(QBrush(QColor(colour)))
    painter.drawEllipse(QRectF(1, 1, size - 2, size - 2))
    painter.end()
    return QIcon(pixmap)
