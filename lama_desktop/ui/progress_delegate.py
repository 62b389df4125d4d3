"""ProgressDelegate: a batch's progress cell as a slim bar, its failed share in red."""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, Qt
from PySide6.QtGui import QColor, QPainter
from PySide6.QtWidgets import QStyledItemDelegate, QStyleOptionViewItem

from lama_desktop.ui.queue_model import FAILED_ROLE, PROGRESS_ROLE

_TRACK = QColor("#dfe3e8")
_FILL = QColor("#64b5f6")
_FAILED = QColor("#e57373")
_TEXT = QColor("#1a1a1a")


class ProgressDelegate(QStyledItemDelegate):
    """Draws a batch's progress cell as a slim bar with its "done / total" text on it.

    Painted by hand rather than with the style's progress bar: style bars are taller than a
    tree row in several styles and their text gets clipped.
    """

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        percent = index.data(PROGRESS_ROLE)
        if percent is None:
            super().paint(painter, option, index)
            return
        rect = option.rect  # type: ignore[attr-defined]
        bar = QRectF(rect).adjusted(3, 2, -3, -2)
        failed = int(index.data(FAILED_ROLE) or 0)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(_TRACK)
        painter.drawRoundedRect(bar, 3, 3)
        # Finished photos fill the bar; the failed share of them is shown at its end in red.
        finished = bar.width() * int(percent) / 100
        bad = min(finished, bar.width() * failed / 100)
        painter.setBrush(_FILL)
        painter.drawRoundedRect(QRectF(bar.x(), bar.y(), finished, bar.height()), 3, 3)
        if bad > 0:
            painter.setBrush(_FAILED)
            painter.drawRect(QRectF(bar.x() + finished - bad, bar.y(), bad, bar.height()))
        painter.setPen(_TEXT)
        painter.drawText(bar, Qt.AlignmentFlag.AlignCenter, index.data(Qt.ItemDataRole.DisplayRole))
        painter.restore()
