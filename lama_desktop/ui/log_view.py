"""Help > Logs: the tail of the app's log file, read off the GUI thread."""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QDesktopServices, QFontDatabase
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from lama_desktop.config import LOG_FILE
from lama_desktop.ui.async_slot import async_slot

TAIL_BYTES = 256 * 1024


def read_tail(path: Path, limit: int = TAIL_BYTES) -> str:
    """The last `limit` bytes of a log file as text (from a line start), or why there is none."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - limit))
            data = handle.read()
    except FileNotFoundError:
        return f"No log yet: {path} does not exist."
    except OSError as exc:
        return f"The log {path} cannot be read: {exc}"
    if size > limit and b"\n" in data:
        data = data.split(b"\n", 1)[1]
    return data.decode("utf-8", errors="replace")


class LogView(QDialog):
    """A read-only view of the log with Refresh and Open folder."""

    def __init__(self, log_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Logs")
        self.resize(900, 520)
        self.path = log_dir / LOG_FILE
        self.text = QPlainTextEdit(self)
        self.text.setReadOnly(True)
        self.text.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        refresh = QPushButton("Refresh", self)
        folder = QPushButton("Open folder", self)
        close = QPushButton("Close", self)
        refresh.clicked.connect(lambda: self.refresh())
        folder.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.path.parent)))
        )
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(refresh)
        buttons.addWidget(folder)
        buttons.addStretch(1)
        buttons.addWidget(close)
        layout = QVBoxLayout(self)
        layout.addWidget(self.text)
        layout.addLayout(buttons)
        self.refresh()

    @async_slot
    async def refresh(self) -> None:
        """Reload the log tail in an executor thread and scroll to its end."""
        text = await asyncio.get_running_loop().run_in_executor(None, read_tail, self.path)
        self.text.setPlainText(text)
        bar = self.text.verticalScrollBar()
        bar.setValue(bar.maximum())
