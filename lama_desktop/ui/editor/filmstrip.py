"""The filmstrip: the photos of the open photo's folder, to step through a shoot one by one.

The folder is listed and the previews are decoded in executor threads, and only for the
photos scrolled into view, so a folder of thousands of photos opens at once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from PySide6.QtCore import QPoint, QSize, Qt, Signal
from PySide6.QtGui import QAction, QIcon, QPixmap, QShowEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QListWidget, QListWidgetItem, QWidget

from lama_desktop.engine.browse import folder_photos, thumbnail
from lama_desktop.engine.imageio import ImageError
from lama_desktop.ui.async_slot import async_slot
from lama_desktop.ui.editor.pixels import rgb_to_qimage

log = logging.getLogger(__name__)

THUMB_SIDE = 64  # previews are decoded at this size; a short window shows them smaller
MIN_THUMB_SIDE = 32
STRIP_SHARE = 6  # the strip takes at most this fraction (1/6) of the editor's height...
CHROME = 48  # ...counting the name under each preview and the scroll bar
PATH_ROLE = Qt.ItemDataRole.UserRole


class Filmstrip(QListWidget):
    """One row of previews; a click asks for that photo (`photoChosen`), the window decides."""

    photoChosen = Signal(object)  # Path

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self._set_side(THUMB_SIDE)
        self.setHorizontalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys stay with the canvas
        self.folder: Path | None = None
        self.current: Path | None = None
        self._latest: Path | None = None  # the photo asked for last (show_photo)
        self._rows: dict[Path, int] = {}
        self._wanted: list[int] = []  # rows whose preview is asked for, nearest first
        self._asked: set[int] = set()
        self._filling = 0  # bumps when the items are replaced, so late previews are dropped
        self._loader: asyncio.Future[None] | None = None
        # View > Filmstrip; the strip also stays hidden until a photo's folder fills it.
        self.toggle_action = QAction("Film&strip", self)
        self.toggle_action.setCheckable(True)
        self.toggle_action.setChecked(True)
        self.toggle_action.toggled.connect(lambda _on: self._update_visibility())
        self.hide()
        self.itemClicked.connect(self._on_clicked)
        self.horizontalScrollBar().valueChanged.connect(lambda _v: self._ask_visible())

    def photos(self) -> list[Path]:
        """The folder's photos in the order shown."""
        return list(self._rows)

    async def show_photo(self, photo: Path) -> None:
        """Show `photo`'s folder (listed again when it is another folder) with `photo` chosen."""
        photo = self._latest = Path(photo)
        if photo.parent != self.folder or photo not in self._rows:
            loop = asyncio.get_running_loop()
            try:
                paths = await loop.run_in_executor(None, folder_photos, photo.parent)
            except ImageError as exc:
                log.info("filmstrip: %s", exc)
                paths = [photo]
            if photo != self._latest:
                return  # a later photo was asked for while this folder was listed: it wins
            self._fill(photo.parent, paths if photo in paths else sorted([*paths, photo]))
        self.current = photo
        self._update_visibility()
        self._select_current()
        self._ask_visible()

    def fit_height(self, available: int) -> None:
        """Shrink the previews so the strip takes at most 1/STRIP_SHARE of `available` pixels
        of height: a short window (or one at 200 %) keeps its room for the photo."""
        side = max(MIN_THUMB_SIDE, min(THUMB_SIDE, available // STRIP_SHARE - CHROME))
        if side != self.iconSize().height():
            self._set_side(side)

    def _set_side(self, side: int) -> None:
        self.setIconSize(QSize(side, side))
        self.setGridSize(QSize(side + 36, side + 28))
        self.setFixedHeight(side + CHROME)
        for row in range(self.count()):
            self.item(row).setSizeHint(self.gridSize())
        self._ask_visible()  # smaller previews: more of them in view

    def _update_visibility(self) -> None:
        self.setVisible(self.toggle_action.isChecked() and self.count() > 0)

    def neighbour(self, photo: Path | None, step: int) -> Path | None:
        """The photo `step` places after `photo` (before it when negative), or None."""
        if photo is None or photo not in self._rows:
            return None
        row = self._rows[photo] + step
        return self.item(row).data(PATH_ROLE) if 0 <= row < self.count() else None

    def _fill(self, folder: Path, paths: list[Path]) -> None:
        self.clear()
        self._filling += 1
        self.folder = folder
        self._rows = {path: row for row, path in enumerate(paths)}
        self._wanted, self._asked = [], set()
        for path in paths:
            item = QListWidgetItem(path.name)
            item.setData(PATH_ROLE, path)
            item.setToolTip(str(path))
            item.setSizeHint(self.gridSize())
            self.addItem(item)

    def _select_current(self) -> None:
        row = self._rows.get(self.current) if self.current is not None else None
        if row is None:
            return
        self.setCurrentRow(row)
        self.scrollToItem(self.item(row), QAbstractItemView.ScrollHint.PositionAtCenter)

    def _on_clicked(self, item: QListWidgetItem) -> None:
        path = item.data(PATH_ROLE)
        self._select_current()  # the highlight follows the photo actually open
        if path != self.current:
            self.photoChosen.emit(path)

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)  # type: ignore[arg-type]
        self._ask_visible()

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self._ask_visible()

    def _ask_visible(self) -> None:
        """Queue previews for the rows in view (and one screenful either side)."""
        if not self.count() or not self.isVisible():
            return  # hidden: nothing is in view, so nothing is decoded
        view = self.viewport().rect()
        first = self.indexAt(QPoint(1, view.center().y())).row()
        last = self.indexAt(QPoint(view.width() - 2, view.center().y())).row()
        first = max(0, first)
        last = last if last >= 0 else self.count() - 1
        span = last - first + 1
        nearest = range(max(0, first - span), min(self.count(), last + span + 1))
        wanted = [row for row in nearest if row not in self._asked]
        if not wanted:
            return
        self._asked.update(wanted)
        self._wanted.extend(wanted)
        if self._loader is None or self._loader.done():
            self._loader = self._load_previews()

    @async_slot
    async def _load_previews(self) -> None:
        loop = asyncio.get_running_loop()
        while self._wanted:
            row = self._wanted.pop(0)
            filling, item = self._filling, self.item(row)
            if item is None:
                continue
            path = item.data(PATH_ROLE)
            try:
                rgb = await loop.run_in_executor(None, thumbnail, path, THUMB_SIDE)
            except ImageError as exc:
                rgb, problem = None, exc.problem
            if filling != self._filling:
                continue  # the items were replaced (another folder) while it was decoded
            if rgb is None:
                item.setToolTip(f"{path}\n{problem}")
                continue
            image = rgb_to_qimage(rgb).copy()  # a copy: the array goes away
            item.setIcon(QIcon(QPixmap.fromImage(image)))
