"""What the canvas draws besides the photo: the checkerboard behind transparent pixels, the
before/after divider, and the busy card shown while a photo loads or an edit runs."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, Qt, QTimer
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen
from PySide6.QtWidgets import QWidget

CHECKER_LIGHT = QColor(204, 204, 204)
CHECKER_DARK = QColor(153, 153, 153)
CHECKER_SQUARE = 8  # screen pixels, whatever the zoom, as image editors do
DIVIDER_GRAB = 8  # how near the divider (screen pixels) a press takes hold of it
CARD_HEIGHT = 44


def checker_brush() -> QBrush:
    """A brush of light and dark grey squares, to be drawn behind a photo with transparency."""
    side = 2 * CHECKER_SQUARE
    tile = QImage(side, side, QImage.Format.Format_RGB32)
    tile.fill(CHECKER_LIGHT)
    painter = QPainter(tile)
    painter.fillRect(0, 0, CHECKER_SQUARE, CHECKER_SQUARE, CHECKER_DARK)
    painter.fillRect(CHECKER_SQUARE, CHECKER_SQUARE, CHECKER_SQUARE, CHECKER_SQUARE, CHECKER_DARK)
    painter.end()
    return QBrush(tile)


def paint_divider(painter: QPainter, x: float, height: int) -> None:
    """The before/after divider: a line with a round handle in the middle."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(QPen(QColor(255, 255, 255, 230), 2))
    painter.drawLine(QPointF(x, 0), QPointF(x, height))
    painter.setBrush(QColor(40, 40, 40, 220))
    centre = QPointF(x, height / 2)
    painter.drawEllipse(centre, 12, 12)
    painter.drawText(
        QRectF(x - 12, height / 2 - 12, 24, 24), Qt.AlignmentFlag.AlignCenter, "\u25c2\u25b8"
    )
    painter.restore()


class BusyCard:
    """A turning arc and a line of text, centred on a widget; shown while `text` is set."""

    def __init__(self, widget: QWidget) -> None:
        self._widget = widget
        self.text: str | None = None
        self._angle = 0
        self._timer = QTimer(widget)
        self._timer.setInterval(60)
        self._timer.timeout.connect(self._turn)

    def show(self, text: str | None) -> None:
        """Show `text` with the turning arc; None hides the card."""
        self.text = text
        if text is None:
            self._timer.stop()
        elif not self._timer.isActive():
            self._timer.start()
        self._widget.update()

    def _turn(self) -> None:
        self._angle = (self._angle + 30) % 360
        self._widget.update(self.rect())

    def rect(self) -> QRect:
        """Where the card is drawn (empty while hidden)."""
        if self.text is None:
            return QRect()
        width = self._widget.fontMetrics().horizontalAdvance(self.text) + 64
        middle = self._widget.rect().center()
        return QRect(middle.x() - width // 2, middle.y() - CARD_HEIGHT // 2, width, CARD_HEIGHT)

    def paint(self, painter: QPainter) -> None:
        if self.text is None:
            return
        box = self.rect()
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(20, 20, 20, 200))
        painter.drawRoundedRect(box, 8, 8)
        painter.setPen(QPen(QColor(255, 255, 255), 3))
        arc = QRectF(box.x() + 14, box.y() + 12, 20, 20)
        painter.drawArc(arc, -self._angle * 16, 270 * 16)
        text = box.adjusted(44, 0, -12, 0)
        painter.drawText(
            text, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, self.text
        )
        painter.restore()
