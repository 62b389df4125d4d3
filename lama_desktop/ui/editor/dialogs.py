"""Questions and file choosers awaited from async code: opened with open(), never exec()."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.webp *.bmp *.tif *.tiff);;All files (*)"


async def ask(
    parent: QWidget,
    title: str,
    text: str,
    buttons: QMessageBox.StandardButton,
    labels: dict[QMessageBox.StandardButton, str] | None = None,
    default: QMessageBox.StandardButton = QMessageBox.StandardButton.Cancel,
) -> QMessageBox.StandardButton:
    """Show a window-modal question and wait for the button pressed (Cancel if closed).

    Enter presses `default` (Cancel unless said otherwise): a button that loses work or
    replaces a file is never the default, whatever order Qt would pick."""
    box = QMessageBox(QMessageBox.Icon.Question, title, text, buttons, parent)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    for button, label in (labels or {}).items():
        box.button(button).setText(label)
    if box.button(default) is not None:
        box.setDefaultButton(default)
    if box.button(QMessageBox.StandardButton.Cancel) is not None:
        box.setEscapeButton(QMessageBox.StandardButton.Cancel)
    answer: asyncio.Future[QMessageBox.StandardButton] = asyncio.get_running_loop().create_future()

    def done(_result: int) -> None:
        clicked = box.standardButton(box.clickedButton()) if box.clickedButton() else None
        if not answer.done():
            answer.set_result(clicked or QMessageBox.StandardButton.Cancel)
        box.deleteLater()

    box.finished.connect(done)
    box.open()
    try:
        return await answer
    except asyncio.CancelledError:
        box.reject()  # cancelled while asking (at quit): close the question with it
        raise


async def _choose(dialog: QFileDialog) -> Path | None:
    chosen: asyncio.Future[Path | None] = asyncio.get_running_loop().create_future()

    def done(result: int) -> None:
        files = dialog.selectedFiles()
        if not chosen.done():
            chosen.set_result(Path(files[0]) if result and files else None)
        dialog.deleteLater()

    dialog.finished.connect(done)
    dialog.open()
    try:
        return await chosen
    except asyncio.CancelledError:
        dialog.reject()
        raise


async def choose_open_path(parent: QWidget, start: Path) -> Path | None:
    """Let the user pick one photo to open."""
    dialog = QFileDialog(parent, "Open photo", str(start), IMAGE_FILTER)
    dialog.setFileMode(QFileDialog.FileMode.ExistingFile)
    dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptOpen)
    return await _choose(dialog)


async def choose_save_path(parent: QWidget, suggested: Path) -> Path | None:
    """Let the user pick where to save; the dialog asks before choosing an existing file."""
    dialog = QFileDialog(parent, "Save photo as", str(suggested), IMAGE_FILTER)
    dialog.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
    dialog.setFileMode(QFileDialog.FileMode.AnyFile)
    dialog.selectFile(str(suggested))
    return await _choose(dialog)
