"""The editor: canvas plus tools; each stroke (or Run) sends one inpainting round to the cluster."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence, QResizeEvent, QUndoStack
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QLabel,
    QMessageBox,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from lama_desktop.config import HD_STRATEGIES, AppSettings
from lama_desktop.engine.base import get_spec
from lama_desktop.engine.hd import HDConfig, HDStrategy
from lama_desktop.engine.imageio import (
    OUTPUT_FORMATS,
    Picture,
    encode_image,
    output_extension,
    read_image,
    write_atomic,
)
from lama_desktop.engine.pipeline import JobSettings
from lama_desktop.ui.async_slot import async_slot
from lama_desktop.ui.editor.canvas import Canvas
from lama_desktop.ui.editor.commands import InpaintRound
from lama_desktop.ui.editor.dialogs import ask
from lama_desktop.ui.editor.filmstrip import Filmstrip
from lama_desktop.ui.editor.model_banner import ModelBanner
from lama_desktop.ui.editor.pixels import Box, changed_box
from lama_desktop.ui.flow_layout import FlowLayout
from lama_desktop.ui.model_choice import model_box
from lama_desktop.ui.model_downloads import ModelDownloads

log = logging.getLogger(__name__)

BRUSH_RANGE = (2, 400)
WAITING_NOTICE_S = 1.0
BUSY_CARD_S = 0.25  # a quick edit shows no card; a longer one shows it until it ends


class Inpainter(Protocol):
    """What the editor needs of the scheduler."""

    async def inpaint(self, rgb: np.ndarray, mask: np.ndarray, settings: Any) -> Any: ...


class EditorWidget(QWidget):
    """Open a photo, paint what to erase, get it back cleaned, round after round."""

    roundFinished = Signal(str, float)  # node that ran it, seconds from release to result shown
    documentChanged = Signal()  # another photo opened, or saved
    photoOpened = Signal(object)  # the Path of a photo now shown (the last one's figures go)
    openRequested = Signal(object)  # a Path the user chose in the filmstrip
    statusMessage = Signal(str)
    busyChanged = Signal(bool)

    def __init__(
        self,
        scheduler: Inpainter,
        settings: AppSettings,
        models: ModelDownloads | Path,
        parent: QWidget | None = None,
    ) -> None:
        """`models`: the app's shared downloads, or a models folder (an editor on its own)."""
        super().__init__(parent)
        self._scheduler = scheduler
        self._settings = settings
        self.path: Path | None = None  # the photo as opened (never written without asking)
        self.saved_path: Path | None = None  # where the user chose to save (Save As)
        self.picture: Picture | None = None
        self._generation = 0  # bumps when another photo opens, so a late result is dropped
        self._running = False
        self.last_worker_seconds: float | None = None  # inpainting time of the latest round
        self._round: asyncio.Future[Any] | None = None
        self.undo_stack = QUndoStack(self)
        self.canvas = Canvas(self)
        if not isinstance(models, ModelDownloads):
            models = ModelDownloads(models, self)
        self.banner = ModelBanner(models, self)
        self.filmstrip = Filmstrip(self)
        self._opening: Path | None = None  # the photo being decoded now (the latest asked)
        self._opens = 0  # counts opens asked for: only the latest one's photo is shown
        self._build_tools()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self._tools)
        layout.addWidget(self.banner)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.filmstrip)
        self.filmstrip.photoChosen.connect(self.openRequested)
        self.canvas.strokeFinished.connect(self._on_stroke_finished)
        self.canvas.maskChanged.connect(self._update_run_button)
        self.canvas.zoomChanged.connect(lambda s: self._zoom_label.setText(f"{s * 100:.0f} %"))
        self.banner.downloaded.connect(lambda _m: self._on_model_changed())
        self.canvas.set_brush_size(settings.brush_size)
        self._on_model_changed()
        self._update_run_button()

    # -- tool row -----------------------------------------------------------------------

    def _build_tools(self) -> None:
        self._tools = QWidget(self)
        row = FlowLayout(self._tools)  # wraps on a narrow window instead of widening it
        row.setContentsMargins(6, 4, 6, 4)
        self.brush_button = self._tool("Brush", "Paint what to erase", checkable=True)
        self.eraser_button = self._tool("Eraser", "Remove paint from the mask", checkable=True)
        group = QButtonGroup(self)
        group.addButton(self.brush_button)
        group.addButton(self.eraser_button)
        self.brush_button.setChecked(True)
        self.eraser_button.toggled.connect(self.canvas.set_erasing)
        self.size_slider = QSlider(Qt.Orientation.Horizontal, self)
        self.size_slider.setRange(*BRUSH_RANGE)
        self.size_slider.setValue(self._settings.brush_size)
        self.size_slider.setMinimumWidth(100)
        self.size_slider.setMaximumWidth(160)
        self.size_slider.setToolTip("Brush size in photo pixels ([ and ] change it)")
        self._size_label = QLabel(f"{self._settings.brush_size} px", self)
        self.size_slider.valueChanged.connect(self._on_brush_size)
        clear = self._tool("Clear", "Clear the mask")
        clear.clicked.connect(self.canvas.clear_mask)
        fit = self._tool("Fit", "Fit the photo in the window")
        fit.clicked.connect(self.canvas.fit)
        actual = self._tool("100 %", "One photo pixel per screen pixel")
        actual.clicked.connect(self.canvas.actual_size)
        self._zoom_label = QLabel("", self)
        self.compare_button = self._tool("Compare", "Hold to see the original (or hold C)")
        self.compare_button.pressed.connect(lambda: self.canvas.set_comparing(True))
        self.compare_button.released.connect(lambda: self.canvas.set_comparing(False))
        self.split_button = self._tool(
            "Split", "Before and after side by side; drag the divider", checkable=True
        )
        self.split_button.toggled.connect(self.canvas.set_split)
        self.model_box = model_box(self._settings.model, self)  # "LaMa (lama)"
        self.model_box.currentIndexChanged.connect(self._on_model_changed)
        self.hd_box = QComboBox(self)
        for name in HD_STRATEGIES:
            self.hd_box.addItem(f"HD: {name}", name)
        self.hd_box.setCurrentIndex(max(0, self.hd_box.findData(self._settings.hd_strategy)))
        self.hd_box.setToolTip("How large photos are handled: whole, resized, or cropped boxes")
        self.hd_box.currentIndexChanged.connect(self._on_hd_changed)
        self.auto_run = QCheckBox("Run on release", self)
        self.auto_run.setChecked(self._settings.run_mode == "release")
        self.auto_run.toggled.connect(self._on_run_mode)
        self.run_button = QPushButton("Run", self)
        self.run_button.setToolTip("Erase the painted area (Ctrl+Return)")
        self.run_button.clicked.connect(lambda: self.start_round())
        widget: QWidget
        for widget in (
            self.brush_button,
            self.eraser_button,
            self.size_slider,
            self._size_label,
            clear,
        ):
            row.addWidget(widget)
        row.addSpacing(12)
        for widget in (fit, actual, self._zoom_label, self.compare_button, self.split_button):
            row.addWidget(widget)
        row.addStretch(1)
        for widget in (self.model_box, self.hd_box, self.auto_run, self.run_button):
            row.addWidget(widget)
        self._add_shortcut("[", lambda: self.step_brush(-1))
        self._add_shortcut("]", lambda: self.step_brush(+1))
        self._add_shortcut("Ctrl+Return", self.start_round)

    def reload_settings(self) -> None:
        """Show settings changed elsewhere (the settings dialog) in the tool row."""
        self.size_slider.setValue(self._settings.brush_size)
        self.model_box.setCurrentIndex(max(0, self.model_box.findData(self._settings.model)))
        self.hd_box.setCurrentIndex(max(0, self.hd_box.findData(self._settings.hd_strategy)))
        self.auto_run.setChecked(self._settings.run_mode == "release")
        self._on_model_changed()

    def _tool(self, text: str, tip: str, checkable: bool = False) -> QToolButton:
        button = QToolButton(self)
        button.setText(text)
        button.setToolTip(tip)
        button.setCheckable(checkable)
        return button

    def _add_shortcut(self, keys: str, slot: Any) -> None:
        action = QAction(self)
        action.setShortcut(QKeySequence(keys))
        action.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        action.triggered.connect(lambda _checked=False: slot())
        self.addAction(action)

    def step_brush(self, direction: int) -> None:
        """Grow or shrink the brush by about a fifth ([ and ])."""
        size = self.size_slider.value()
        step = max(1, round(size * 0.2))
        self.size_slider.setValue(size + direction * step)

    def _on_brush_size(self, size: int) -> None:
        self._settings.brush_size = size
        self._size_label.setText(f"{size} px")
        self.canvas.set_brush_size(size)

    def _on_model_changed(self) -> None:
        self._settings.model = str(self.model_box.currentData())
        self.banner.show_for(self._settings.model)

    def _on_hd_changed(self) -> None:
        self._settings.hd_strategy = str(self.hd_box.currentData())

    def _on_run_mode(self, on_release: bool) -> None:
        self._settings.run_mode = "release" if on_release else "manual"

    def _update_run_button(self) -> None:
        self.run_button.setEnabled(not self._running and self.canvas.has_image())

    # -- opening --------------------------------------------------------------------------

    async def open_file(self, path: Path) -> bool:
        """Decode `path` in an executor thread and show it; ImageError says what is wrong.

        The canvas says the photo is loading meanwhile. False when another photo was asked
        for before this one was decoded (the later one wins)."""
        path = Path(path)
        self._opening = path
        self._opens += 1
        ticket = self._opens
        self.canvas.set_activity(f"Loading {path.name}…")
        loop = asyncio.get_running_loop()
        try:
            picture = await loop.run_in_executor(None, read_image, path)
        finally:
            latest = ticket == self._opens
            if latest:
                self._opening = None
                self.canvas.set_activity(None)
        if not latest:
            return False
        self._generation += 1
        self.picture = picture
        self.path = path
        self.saved_path = None
        self.last_worker_seconds = None
        self.undo_stack.clear()
        self.canvas.load(picture.rgb, picture.alpha)
        self.canvas.setFocus()
        self._update_run_button()
        self.photoOpened.emit(path)
        self.documentChanged.emit()
        width, height = picture.size
        self.statusMessage.emit(f"Opened {path.name} ({width}x{height}, {picture.format})")
        self._show_in_filmstrip(path)
        return True

    def neighbour(self, step: int, asked: Path | None = None) -> Path | None:
        """The photo of the folder `step` places from `asked` (the photo a previous step asked
        for, not yet open), else from the one being opened, else from the one open."""
        return self.filmstrip.neighbour(asked or self._opening or self.path, step)

    @async_slot
    async def _show_in_filmstrip(self, path: Path) -> None:
        await self.filmstrip.show_photo(path)

    # -- running --------------------------------------------------------------------------

    def effective_model(self) -> str:
        """The model edits run on now (OpenCV while the chosen model's file is missing)."""
        return self.banner.effective_model(self._settings.model)

    def job_settings(self) -> JobSettings:
        """The engine's JobSettings for the current choices."""
        return JobSettings(
            model=self.effective_model(),
            device=self._settings.device,
            hd=HDConfig(strategy=HDStrategy(self._settings.hd_strategy)),
        )

    def _on_stroke_finished(self) -> None:
        if self._settings.run_mode == "release":
            self.start_round()

    def start_round(self) -> None:
        """Run the painted mask now (the Run button and Ctrl+Return)."""
        if self._round is not None and not self._round.done():
            return  # one round at a time; Esc must still reach the one in flight
        self._round = self.run_round()

    def cancel_or_clear(self) -> None:
        """Esc: cancel the edit in flight (its job is withdrawn), else clear the mask."""
        if self._round is not None and not self._round.done():
            self._round.cancel()
        else:
            self.canvas.clear_mask()

    def is_running(self) -> bool:
        return self._running

    @async_slot
    async def run_round(self) -> None:
        """Send the photo and mask to the scheduler; the result becomes one undo step."""
        if self._running or not self.canvas.has_image():
            return
        mask = self.canvas.mask_array()
        before = self.canvas.pixels()
        if mask is None or before is None or not mask.any():
            self.statusMessage.emit("Paint over what to erase first.")
            return
        started = time.perf_counter()
        generation = self._generation
        settings = self.job_settings()
        self._set_running(True)
        # Said only when the answer is slow to come, e.g. while the workers still warm up.
        loop = asyncio.get_running_loop()
        card = loop.call_later(BUSY_CARD_S, self.canvas.set_activity, "Erasing… (Esc cancels)")
        waiting = loop.call_later(WAITING_NOTICE_S, self._say_waiting)
        try:
            box, after, result = await self._inpaint(before, mask, settings)
        except asyncio.CancelledError:
            self.statusMessage.emit("Edit cancelled; the mask is kept.")
            raise
        finally:
            card.cancel()
            waiting.cancel()
            self.canvas.set_activity(None)
            self._set_running(False)  # only now: until here the mask is what was sent
        if generation != self._generation:
            return  # another photo was opened while this one ran
        if self.canvas.pixels() is not before:
            # An undo or redo changed the photo meanwhile: this result belongs to old pixels.
            self.statusMessage.emit("The photo changed while the edit ran; run it again.")
            return
        self.last_worker_seconds = result.seconds
        self.canvas.clear_mask()
        if box is None:
            self.statusMessage.emit("The edit changed nothing.")
            return
        # The Edit menu says what undo takes back ("Undo erase with LaMa"), not where it ran.
        text = f"erase with {get_spec(settings.model).title}"
        command = InpaintRound(self.canvas, before, after, text, box)
        self.undo_stack.push(command)  # push() calls redo(), which shows the result
        self.canvas.repaint()  # on screen now, so the time below includes the paint
        seconds = time.perf_counter() - started
        self.roundFinished.emit(str(result.node), seconds)

    async def _inpaint(
        self, before: np.ndarray, mask: np.ndarray, settings: JobSettings
    ) -> tuple[Box | None, np.ndarray, Any]:
        """The scheduler's result for one round and the box of pixels it changed."""
        result = await self._scheduler.inpaint(before, mask, settings)
        after = np.asarray(result.rgb, dtype=np.uint8).reshape(before.shape)
        # Comparing whole photos takes a while on large ones: off the GUI thread.
        loop = asyncio.get_running_loop()
        box = await loop.run_in_executor(None, changed_box, before, after)
        return box, after, result

    def _say_waiting(self) -> None:
        text = "Waiting for a free worker… (Esc cancels)"
        self.canvas.set_activity(text)
        self.statusMessage.emit(text)

    def resizeEvent(self, event: QResizeEvent) -> None:
        self.filmstrip.fit_height(self.height())
        super().resizeEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        """Esc cancels the edit in flight, else clears the mask (the window's Edit menu has
        the same action; this serves the editor on its own)."""
        if event.key() == Qt.Key.Key_Escape:
            self.cancel_or_clear()
            event.accept()
        else:
            super().keyPressEvent(event)

    def _set_running(self, running: bool) -> None:
        self._running = running
        self.canvas.set_busy(running)
        self._update_run_button()
        self.busyChanged.emit(running)

    # -- saving ---------------------------------------------------------------------------

    def is_modified(self) -> bool:
        return not self.undo_stack.isClean()

    async def save_to(self, path: Path, overwrite: bool = False) -> Path:
        """Encode the edited photo in the format `path` names (else the original's) and write
        it atomically in an executor thread. An existing file is kept unless `overwrite`."""
        picture, pixels = self.picture, self.canvas.pixels()
        if picture is None or pixels is None:
            raise ValueError("No photo is open.")
        suffix = Path(path).suffix.lower().lstrip(".")
        fmt = _format_of(path)
        own = output_extension(picture, None).lstrip(".")
        if fmt is None and suffix not in {own, "tiff" if own == "tif" else own}:
            # Never JPEG bytes under a .tif name: the name says the format.
            raise ValueError(
                f"Cannot save as .{suffix or '(no extension)'}: choose .png, .jpg or .webp, "
                f"or the photo's own .{own}."
            )
        quality = self._settings.jpeg_quality
        snapshot = pixels.copy()
        generation, index = self._generation, self.undo_stack.index()

        def write() -> None:
            write_atomic(Path(path), encode_image(picture, snapshot, fmt, quality), overwrite)

        await asyncio.get_running_loop().run_in_executor(None, write)
        if generation != self._generation or index != self.undo_stack.index():
            # Another photo opened, or an edit landed, while the file was written: the file
            # holds the earlier state, so the document now shown is not "saved" there.
            self.statusMessage.emit(f"Saved {Path(path).name} (without the latest changes)")
            return Path(path)
        self.saved_path = Path(path)
        self.undo_stack.setClean()
        self.documentChanged.emit()
        self.statusMessage.emit(f"Saved {Path(path).name}")
        return Path(path)

    async def save_asking(self, path: Path, overwrite: bool = False) -> Path | None:
        """`save_to`, after telling the user when the format cannot hold the photo's depth
        (a 16-bit photo saved as JPEG, say); None when they chose not to save."""
        note = self.picture.depth_note(_format_of(path)) if self.picture is not None else None
        if note is not None:
            answer = await ask(
                self,
                "Save with 8 bits per channel?",
                note,
                QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Cancel,
                labels={QMessageBox.StandardButton.Save: "Save with 8 bits"},
            )
            if answer != QMessageBox.StandardButton.Save:
                return None
        return await self.save_to(path, overwrite)

    def suggested_save_path(self) -> Path | None:
        """Next to the original, with "-cleaned" added, in the original's format."""
        if self.path is None:
            return None
        return self.path.with_name(f"{self.path.stem}-cleaned{self.path.suffix}")


def _format_of(path: Path) -> str | None:
    """The output format a file name asks for, or None for the photo's own."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix if suffix in OUTPUT_FORMATS else None
