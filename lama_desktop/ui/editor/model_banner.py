"""The strip above the canvas that says a model file is missing and downloads it with progress."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from lama_desktop.engine.base import get_spec
from lama_desktop.ui.async_slot import async_slot

FALLBACK_MODEL = "opencv-ns"


class ModelBanner(QFrame):
    """Shown while the chosen model's file is missing: edits run on OpenCV and it says so.

    The download runs in an executor thread; its progress callback emits a signal, which Qt
    queues onto the GUI thread.
    """

    progressed = Signal(int, int)  # bytes done, total (0 when unknown)
    downloaded = Signal(str)  # model name, once its file is in place

    def __init__(self, models_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._models_dir = models_dir
        self._model = ""
        self._task: asyncio.Future[object] | None = None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("ModelBanner { background: #fff4d6; color: #3a2c00; }")
        self._label = QLabel(self)
        self._label.setWordWrap(True)
        self._button = QPushButton("Download", self)
        self._bar = QProgressBar(self)
        self._bar.setMaximumWidth(220)
        self._bar.hide()
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        layout.addWidget(self._label, 1)
        layout.addWidget(self._bar)
        layout.addWidget(self._button)
        self._button.clicked.connect(self._on_download_clicked)
        self.progressed.connect(self._show_progress)
        self.hide()

    def is_missing(self, model: str) -> bool:
        """True when `model` needs a file that is not in the models folder."""
        from lama_desktop.engine.modelstore import KNOWN_FILES, ModelStore

        return model in KNOWN_FILES and not ModelStore(self._models_dir).is_present(model)

    def effective_model(self, model: str) -> str:
        """The model an edit really runs on: `model`, or OpenCV while its file is missing."""
        return FALLBACK_MODEL if self.is_missing(model) else model

    def show_for(self, model: str) -> None:
        """Show or hide the banner for the model the user chose."""
        self._model = model
        if not self.is_missing(model):
            self.hide()
            return
        if self._task is None:
            self._label.setText(
                f"The {get_spec(model).label} model file is not downloaded yet: edits use "
                f"{get_spec(FALLBACK_MODEL).label} meanwhile."
            )
            self._button.setEnabled(True)
        self.show()

    def downloading(self) -> bool:
        return self._task is not None and not self._task.done()

    def _on_download_clicked(self) -> None:
        self._task = self.download()

    @async_slot
    async def download(self) -> None:
        """Fetch the model file off the GUI thread, showing progress; errors reach the user."""
        from lama_desktop.engine.modelstore import ModelStore

        model = self._model
        store = ModelStore(self._models_dir)
        self._button.setEnabled(False)
        self._bar.setRange(0, 0)
        self._bar.show()
        label = get_spec(model).label
        self._label.setText(f"Downloading the {label} model; edits use OpenCV until it is here.")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                None,
                store.download,
                model,
                lambda done, total: self.progressed.emit(done, total or 0),
            )
        except BaseException:
            self._label.setText(f"The {label} download failed; edits keep using OpenCV.")
            self._button.setEnabled(True)
            self._button.setText("Retry")
            raise
        finally:
            self._bar.hide()
            self._task = None
        self.downloaded.emit(model)
        self.show_for(self._model)

    def _show_progress(self, done: int, total: int) -> None:
        if total > 0:
            # Megabytes keep the values inside QProgressBar's int range for large files.
            self._bar.setRange(0, max(1, total >> 20))
            self._bar.setValue(done >> 20)
            self._bar.setFormat("%v of %m MiB")
        else:
            self._bar.setRange(0, 0)
