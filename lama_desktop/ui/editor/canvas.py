"""The canvas: shows the photo, paints the erase mask as a translucent overlay, zooms and pans,
and compares before with after (held, or side by side across a divider)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRect, QRectF, Qt, Signal
from PySide6.QtGui import (
    QColor,
    QImage,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QWidget

from lama_desktop.ui.editor.overlay import (
    DIVIDER_GRAB,
    BusyCard,
    checker_brush,
    paint_divider,
)
from lama_desktop.ui.editor.pixels import Box, alpha_of, rgb_to_qimage, rgba_to_qimage

MASK_COLOUR = QColor(255, 32, 96)
MASK_OPACITY = 0.5
MIN_SCALE, MAX_SCALE = 0.02, 32.0
COMPARE_KEYS = (Qt.Key.Key_C, Qt.Key.Key_Backslash)


class Canvas(QWidget):
    """Photo plus mask. Widget point = image point * scale + offset.

    Left button paints (or erases) the mask; releasing it emits `strokeFinished`. The wheel
    zooms around the cursor; space + drag or the middle button pans. Holding C or backslash
    shows the original photo instead of the edited one; the split view shows the original left
    of a divider that the left button drags. Transparent pixels show a checkerboard.
    """

    strokeFinished = Signal()
    maskChanged = Signal()
    zoomChanged = Signal(float)
    comparingChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._pixels: np.ndarray | None = None  # the edited photo; _image views its memory
        self._image: QImage | None = None
        self._original_pixels: np.ndarray | None = None
        self._original: QImage | None = None
        self._alpha: np.ndarray | None = None  # the photo's transparency, when it has one
        self._shown: dict[str, np.ndarray] = {}  # RGBA arrays that the QImages view
        self._checker = checker_brush()
        self._split: float | None = None  # divider position as a fraction of the width
        self._dragging_divider = False
        self._card = BusyCard(self)
        self._mask: QImage | None = None  # ARGB32: alpha > 0 means erase
        self._scale = 1.0
        self._offset = QPointF(0.0, 0.0)
        self._fitting = True  # keep fitting on resize until the user zooms
        self._brush = 40
        self._erasing = False
        self._busy = False
        self._comparing = False
        self._space_held = False
        self._last_point: QPointF | None = None  # image point of the stroke in progress
        self._pan_from: QPointF | None = None  # widget point where a pan started
        self._cursor: QPointF | None = None
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(200, 150)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)

    # -- content ------------------------------------------------------------------------

    def load(self, rgb: np.ndarray, alpha: np.ndarray | None = None) -> None:
        """Show a newly opened photo: it becomes the original, the mask is cleared, and fit.

        `alpha` (uint8 HxW) is shown, not edited: transparent parts show a checkerboard."""
        self._alpha = alpha
        self._original_pixels = np.ascontiguousarray(rgb)
        self._original = self._to_qimage(self._original_pixels, "original")
        self.set_pixels(self._original_pixels.copy())
        self._mask = QImage(
            self._original.width(), self._original.height(), QImage.Format.Format_ARGB32
        )
        self._mask.fill(Qt.GlobalColor.transparent)
        self.fit()
        self.maskChanged.emit()

    def set_pixels(self, rgb: np.ndarray) -> None:
        """Replace the edited photo with `rgb` (same size as the original)."""
        if self._original is not None and rgb.shape[:2] != (
            self._original.height(),
            self._original.width(),
        ):
            raise ValueError(f"pixels of shape {rgb.shape} do not fit the open photo")
        self._pixels = np.ascontiguousarray(rgb)
        self._image = self._to_qimage(self._pixels, "edited")
        self.update()

    def _to_qimage(self, rgb: np.ndarray, role: str) -> QImage:
        """The image to draw: a view of `rgb`, or of an RGBA copy when the photo has alpha."""
        if self._alpha is None or self._alpha.shape != rgb.shape[:2]:
            self._shown.pop(role, None)
            return rgb_to_qimage(rgb)
        self._shown[role] = np.dstack([rgb, self._alpha])  # kept alive while shown
        return rgba_to_qimage(self._shown[role])

    def patch(self, box: Box, crop: np.ndarray) -> None:
        """Write `crop` into the box of the edited photo (one undo or redo step)."""
        if self._pixels is None:
            raise ValueError("no photo is open")
        top, bottom, left, right = box
        pixels = self._pixels.copy()
        pixels[top:bottom, left:right] = crop
        self.set_pixels(pixels)

    def pixels(self) -> np.ndarray | None:
        """The edited photo (uint8 HxWx3), or None when nothing is open; do not modify it."""
        return self._pixels

    def original(self) -> np.ndarray | None:
        """The photo as it was opened."""
        return self._original_pixels

    def has_image(self) -> bool:
        return self._pixels is not None

    # -- mask ---------------------------------------------------------------------------

    def mask_array(self) -> np.ndarray | None:
        """The mask as uint8 HxW, 255 to erase and 0 to keep; None when nothing is open."""
        if self._mask is None:
            return None
        return np.where(alpha_of(self._mask) > 0, 255, 0).astype(np.uint8)

    def has_mask(self) -> bool:
        """True when at least one pixel is marked for erasing."""
        mask = self.mask_array()
        return mask is not None and bool(mask.any())

    def clear_mask(self) -> None:
        if self._mask is not None:
            self._mask.fill(Qt.GlobalColor.transparent)
            self.update()
            self.maskChanged.emit()

    def set_brush_size(self, size: int) -> None:
        """Brush diameter in photo pixels."""
        self._brush = max(1, int(size))
        self.update()

    def brush_size(self) -> int:
        return self._brush

    def set_erasing(self, erasing: bool) -> None:
        """True: the brush removes mask instead of adding it."""
        self._erasing = erasing

    def set_busy(self, busy: bool) -> None:
        """While an edit runs the mask is frozen, so what is erased is what was sent."""
        self._busy = busy
        self.setCursor(Qt.CursorShape.BusyCursor if busy else Qt.CursorShape.CrossCursor)

    def set_activity(self, text: str | None) -> None:
        """Show a busy card saying `text` over the canvas (a photo loading, an edit running);
        None hides it."""
        self._card.show(text)

    def activity(self) -> str | None:
        """The text of the busy card shown now, or None."""
        return self._card.text

    def _paint_segment(self, start: QPointF, end: QPointF) -> None:
        if self._mask is None:
            return
        painter = QPainter(self._mask)
        if self._erasing:
            painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_Clear)
        pen = QPen(MASK_COLOUR, self._brush)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        if start == end:
            painter.drawPoint(start)
        else:
            painter.drawLine(start, end)
        painter.end()
        # Repaint only around the segment: a full repaint of a large photo per mouse move
        # would make the brush lag behind the hand.
        self.update(self._widget_box(start, end, self._brush / 2))

    def _widget_box(self, start: QPointF, end: QPointF, radius: float) -> QRect:
        """The widget rectangle covering a segment between two photo points, plus `radius`."""
        a, b = self.image_to_widget(start), self.image_to_widget(end)
        pad = radius * self._scale + 3
        box = QRectF(a, b).normalized().adjusted(-pad, -pad, pad, pad)
        return box.toAlignedRect()

    # -- view ---------------------------------------------------------------------------

    def scale(self) -> float:
        return self._scale

    def image_to_widget(self, point: QPointF) -> QPointF:
        return QPointF(
            point.x() * self._scale + self._offset.x(), point.y() * self._scale + self._offset.y()
        )

    def widget_to_image(self, point: QPointF) -> QPointF:
        return QPointF(
            (point.x() - self._offset.x()) / self._scale,
            (point.y() - self._offset.y()) / self._scale,
        )

    def fit(self) -> None:
        """Scale the whole photo into the widget and centre it."""
        self._fitting = True
        if self._image is None:
            return
        scale = min(self.width() / self._image.width(), self.height() / self._image.height())
        self._set_view(scale, None)

    def actual_size(self) -> None:
        """Show the photo at 100 % (one photo pixel per screen pixel), centred."""
        self._fitting = False
        self._set_view(1.0, None)

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the photo point under `anchor` (a widget point) where it is."""
        self._fitting = False
        self._set_view(self._scale * factor, anchor)

    def _set_view(self, scale: float, anchor: QPointF | None) -> None:
        if self._image is None:
            return
        scale = min(MAX_SCALE, max(MIN_SCALE, scale))
        if anchor is None:
            self._offset = QPointF(
                (self.width() - self._image.width() * scale) / 2,
                (self.height() - self._image.height() * scale) / 2,
            )
        else:
            fixed = self.widget_to_image(anchor)
            self._offset = QPointF(anchor.x() - fixed.x() * scale, anchor.y() - fixed.y() * scale)
        self._scale = scale
        self.update()
        self.zoomChanged.emit(scale)

    def set_comparing(self, comparing: bool) -> None:
        """Show the original photo (True) or the edited one."""
        if comparing != self._comparing:
            self._comparing = comparing
            self.update()
            self.comparingChanged.emit(comparing)

    def is_comparing(self) -> bool:
        return self._comparing

    def set_split(self, on: bool) -> None:
        """Side by side: the original left of a divider, the edited photo right of it."""
        self._split = (self._split or 0.5) if on else None
        self.update()

    def split(self) -> float | None:
        """Where the divider is, as a fraction of the canvas width; None when not split."""
        return self._split

    def _divider_x(self) -> float | None:
        return None if self._split is None else self._split * self.width()

    def _near_divider(self, point: QPointF) -> bool:
        x = self._divider_x()
        return x is not None and abs(point.x() - x) <= DIVIDER_GRAB

    # -- events -------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(48, 48, 48))
        shown = self._original if self._comparing else self._image
        if shown is None:
            if self._card.text is None:
                painter.setPen(QColor(200, 200, 200))
                painter.drawText(
                    self.rect(), Qt.AlignmentFlag.AlignCenter, "Open a photo or drop one here"
                )
            self._card.paint(painter)
            return
        target = QRectF(
            self._offset.x(),
            self._offset.y(),
            shown.width() * self._scale,
            shown.height() * self._scale,
        )
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._scale < 1.0)
        divider = self._divider_x()
        if divider is not None and not self._comparing and self._original is not None:
            before = QRectF(0, 0, divider, self.height())
            self._draw_photo(painter, target, self._original, before)
            after = QRectF(divider, 0, self.width() - divider, self.height())
            self._draw_photo(painter, target, shown, after)
        else:
            self._draw_photo(painter, target, shown, None)
        if self._mask is not None and not self._comparing:
            painter.setOpacity(MASK_OPACITY)
            painter.drawImage(target, self._mask)
            painter.setOpacity(1.0)
        if self._cursor is not None and not self._comparing:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setPen(QPen(QColor(255, 255, 255, 200), 1))
            radius = self._brush * self._scale / 2
            painter.drawEllipse(self._cursor, radius, radius)
        if divider is not None and not self._comparing:
            paint_divider(painter, divider, self.height())
        self._card.paint(painter)

    def _draw_photo(
        self, painter: QPainter, target: QRectF, image: QImage, clip: QRectF | None
    ) -> None:
        """Draw `image` into `target` (only inside `clip`), on a checkerboard if it has alpha."""
        painter.save()
        if clip is not None:
            painter.setClipRect(clip)
        if self._alpha is not None:
            painter.setBrushOrigin(target.topLeft())
            painter.fillRect(target, self._checker)
        painter.drawImage(target, image)
        painter.restore()

    def resizeEvent(self, event: QResizeEvent) -> None:
        if self._fitting:
            self.fit()
        super().resizeEvent(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom_by(1.25**steps, event.position())
        event.accept()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space_held
        ):
            self._pan_from = event.position()
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif button == Qt.MouseButton.LeftButton and self._near_divider(event.position()):
            self._dragging_divider = True
        elif button == Qt.MouseButton.LeftButton and not self._busy and self._mask is not None:
            point = self.widget_to_image(event.position())
            self._last_point = point
            self._paint_segment(point, point)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        previous = self._cursor
        self._cursor = event.position()
        if self._pan_from is not None:
            self._offset += event.position() - self._pan_from
            self._pan_from = event.position()
            self._fitting = False
            self.update()  # everything moved
            return
        if self._dragging_divider:
            self._split = min(1.0, max(0.0, event.position().x() / max(1, self.width())))
            self.update()
            return
        idle = self._last_point is None and not self._busy and not self._space_held
        if self._split is not None and idle:
            near = self._near_divider(event.position())
            self.setCursor(Qt.CursorShape.SplitHCursor if near else Qt.CursorShape.CrossCursor)
        if self._last_point is not None:
            point = self.widget_to_image(event.position())
            self._paint_segment(self._last_point, point)
            self._last_point = point
        self._update_cursor(previous)

    def _update_cursor(self, previous: QPointF | None) -> None:
        """Repaint where the brush outline was and where it is now."""
        radius = self._brush * self._scale / 2 + 2
        for centre in (previous, self._cursor):
            if centre is not None:
                self.update(QRectF(centre.x() - radius, centre.y() - radius,
                                   2 * radius, 2 * radius).toAlignedRect())  # fmt: skip

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._dragging_divider:
            self._dragging_divider = False
        elif self._pan_from is not None:
            self._pan_from = None
            self.setCursor(
                Qt.CursorShape.OpenHandCursor if self._space_held else Qt.CursorShape.CrossCursor
            )
        elif self._last_point is not None and event.button() == Qt.MouseButton.LeftButton:
            self._last_point = None
            self.maskChanged.emit()
            self.strokeFinished.emit()
        event.accept()

    def leaveEvent(self, event: object) -> None:
        self._cursor = None
        self.update()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.isAutoRepeat():
            event.accept()
            return
        if event.key() == Qt.Key.Key_Space:
            self._space_held = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
        elif event.key() in COMPARE_KEYS:
            self.set_comparing(True)
        else:
            super().keyPressEvent(event)

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        if event.isAutoRepeat():
            event.accept()
            return
        if event.key() == Qt.Key.Key_Space:
            self._space_held = False
            self.setCursor(Qt.CursorShape.CrossCursor)
        elif event.key() in COMPARE_KEYS:
            self.set_comparing(False)
        else:
            super().keyReleaseEvent(event)
