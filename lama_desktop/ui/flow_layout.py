"""FlowLayout: a row of controls that wraps onto more lines when the window is narrow."""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QSizePolicy, QSpacerItem, QWidget


class FlowLayout(QLayout):
    """Lays its items out left to right and wraps them like words in a paragraph.

    A drop-in for a QHBoxLayout tool row (addWidget, addSpacing, addStretch): its minimum
    width is its widest item, so the row never forces the window wider than the screen.
    `addStretch` starts a group that is pushed to the right end of the line it lands on.
    """

    def __init__(self, parent: QWidget | None = None, spacing: int = 6) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._right_from: int | None = None  # index of the first right-aligned item
        self.setSpacing(spacing)

    # -- the QHBoxLayout calls a tool row uses ---------------------------------------------

    def addSpacing(self, size: int) -> None:
        self.addItem(QSpacerItem(size, 0, QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Minimum))

    def addStretch(self, _stretch: int = 0) -> None:
        self._right_from = len(self._items)

    # -- QLayout -------------------------------------------------------------------------------

    def addItem(self, item: QLayoutItem) -> None:
        self._items.append(item)

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:
        if not 0 <= index < len(self._items):
            return None
        if self._right_from is not None and index < self._right_from:
            self._right_from -= 1
        return self._items.pop(index)

    def expandingDirections(self) -> Qt.Orientation:
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        return self._place(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:
        super().setGeometry(rect)
        self._place(rect, move=True)

    def sizeHint(self) -> QSize:
        """Everything on one line."""
        visible = self._visible()
        width = sum(i.sizeHint().width() for _, i in visible)
        width += self.spacing() * max(0, len(visible) - 1)
        height = max((i.sizeHint().height() for _, i in visible), default=0)
        return self._grow(QSize(width, height))

    def minimumSize(self) -> QSize:
        """The widest single item: the row wraps rather than widen the window."""
        size = QSize()
        for _, item in self._visible():
            size = size.expandedTo(item.minimumSize())
        return self._grow(size)

    # -- placing -------------------------------------------------------------------------------

    def _visible(self) -> list[tuple[int, QLayoutItem]]:
        return [(n, i) for n, i in enumerate(self._items) if not i.isEmpty()]

    def _grow(self, size: QSize) -> QSize:
        m: QMargins = self.contentsMargins()
        return QSize(size.width() + m.left() + m.right(), size.height() + m.top() + m.bottom())

    def _place(self, rect: QRect, *, move: bool) -> int:
        """Lay the items out in `rect` (moving them when `move`); returns the height used."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        lines: list[list[tuple[int, QLayoutItem]]] = [[]]
        x = 0
        for n, item in self._visible():
            width = item.sizeHint().width()
            if lines[-1] and x + width > area.width():
                lines.append([])
                x = 0
            lines[-1].append((n, item))
            x += width + self.spacing()
        y = area.y()
        for line in lines:
            height = max((i.sizeHint().height() for _, i in line), default=0)
            if move:
                self._move_line(line, area, y, height)
            y += height + self.spacing()
        return y - self.spacing() - area.y() + m.top() + m.bottom()

    def _move_line(
        self, line: list[tuple[int, QLayoutItem]], area: QRect, y: int, height: int
    ) -> None:
        right = [i for n, i in line if self._right_from is not None and n >= self._right_from]
        used = sum(i.sizeHint().width() + self.spacing() for _, i in line) - self.spacing()
        x = area.x()
        for _, item in line:
            if right and item is right[0]:
                x = max(x, area.x() + area.width() - (used - (x - area.x())))
            hint = item.sizeHint()
            width = min(hint.width(), area.width())
            top = y + (height - hint.height()) // 2
            item.setGeometry(QRect(QPoint(x, top), QSize(width, hint.height())))
            x += width + self.spacing()
