"""Undo steps of the editor: one inpainting round restores or reapplies its exact pixels."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QUndoCommand

from lama_desktop.ui.editor.canvas import Canvas
from lama_desktop.ui.editor.pixels import Box, changed_box


class InpaintRound(QUndoCommand):
    """One round: the photo before and after, kept only over the box of pixels that changed.

    Storing the changed box rather than two whole photos keeps a long session of small
    touch-ups cheap in memory, and restores bit-identical pixels either way.
    """

    def __init__(
        self,
        canvas: Canvas,
        before: np.ndarray,
        after: np.ndarray,
        text: str,
        box: Box | None = None,
    ) -> None:
        """`box` is `changed_box(before, after)` when the caller already has it."""
        super().__init__(text)
        box = box or changed_box(before, after)
        if box is None:
            raise ValueError("an inpainting round that changed no pixel is not an undo step")
        top, bottom, left, right = box
        self._canvas = canvas
        self._box = box
        self._before = before[top:bottom, left:right].copy()
        self._after = after[top:bottom, left:right].copy()

    @property
    def changed_pixels(self) -> int:
        """How many pixels the box covers (for the status bar and tests)."""
        top, bottom, left, right = self._box
        return (bottom - top) * (right - left)

    def redo(self) -> None:
        self._canvas.patch(self._box, self._after)

    def undo(self) -> None:
        self._canvas.patch(self._box, self._before)
