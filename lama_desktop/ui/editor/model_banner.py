"""The strip above the canvas that says a model file is missing and downloads it with progress."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from lama_desktop.engine.base import get_spec
from lama_desktop.ui.async_slot import async_slot
from lama_desktop.ui.model_downloads import ModelDownloads

FALLBACK_MODEL = "opencv-ns"


class ModelBanner(QFrame):
    """Shown while the chosen model's file is missing: edits run on OpenCV and it says so.

    Downloads go through the app's shared `ModelDownloads`, so one started in the Queue panel
    shows its progress here too.
    """

    downloaded = Signal(str)  # model name, once its file is in place

    def __init__(self, downloads: ModelDownloads, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._downloads = downloads
        self._model = ""
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
        downloads.started.connect(self._on_started)
        downloads.progressed.connect(self._show_progress)
        downloads.downloaded.connect(self._on_downloaded)
        downloads.failed.connect(self._on_failed)
        self.hide()

    def is_missing(self, model: str) -> bool:
        """True when `model` needs a file that is not in the models folder."""
        return self._downloads.is_missing(model)

    def effective_model(self, model: str) -> str:
        """The model an edit really runs on: `model`, or OpenCV while its file is missing."""
        return FALLBACK_MODEL if self.is_missing(model) else model

    def show_for(self, model: str) -> None:
        """Show or hide the banner for the model the user chose."""
        self._model = model
        if not self.is_missing(model):
            self.hide()
            return
        if self.downloading():
            self._show_downloading()
        else:
            self._bar.hide()
            self._label.setText(
                f"The {get_spec(model).label} model file is not downloaded yet: edits use "
                f"{get_spec(FALLBACK_MODEL).label} meanwhile."
            )
            self._button.setEnabled(True)
        self.show()

    def downloading(self) -> bool:
        return self._downloads.running(self._model)

    def _on_download_clicked(self) -> None:
        self.download()

    @async_slot
    async def download(self) -> None:
        """Fetch the model file off the GUI thread, showing progress; errors reach the user."""
        task = self._downloads.start(self._model)  # tells this banner through `started`
        if task is not None:  # else it runs already: its signals update this banner
            await task

    def _on_started(self, model: str) -> None:
        if model == self._model and self.is_missing(model):
            self._show_downloading()

    def _show_downloading(self) -> None:
        self._button.setEnabled(False)
        if self._bar.isHidden():
            self._bar.setRange(0, 0)
            self._bar.show()
        label = get_spec(self._model).label
        self._label.setText(f"Downloading the {label} model; edits use OpenCV until it is here.")

    def _on_downloaded(self, model: str) -> None:
        if model == self._model:
            self._bar.hide()
            self.downloaded.emit(model)
            self.show_for(self._model)

    def _on_failed(self, model: str, _reason: str) -> None:
        if model == self._model:
            self._bar.hide()
            label = get_spec(model).label
            self._label.setText(f"The {label} download failed; edits keep using OpenCV.")
            self._button.setEnabled(True)
            self._button.setText("Retry")

    def _show_progress(self, model: str, done: int, total: int) -> None:
        if model != self._model:
            return
        if total > 0:
            # Megabytes keep the values inside QProgressBar's int range for large files.
            self._bar.setRange(0, max(1, total >> 20))
            self._bar.setValue(done >> 20)
            self._bar.setFormat("%v of %m MiB")
        else:
            self._bar.setRange(0, 0)
