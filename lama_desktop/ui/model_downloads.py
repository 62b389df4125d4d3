"""The app's model-file downloads, shared by every widget that offers one.

The editor's banner and the Queue panel both offer to download a missing model. One
`ModelDownloads` runs at most one download per model (a second click anywhere joins it), tells
every widget its progress and outcome, and says once when a file is in place, so the window
can restart the local workers that report which models they have.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from PySide6.QtCore import QObject, Signal


class ModelDownloads(QObject):
    """Downloads model files off the GUI thread; signals arrive on the GUI thread."""

    started = Signal(str)  # model
    progressed = Signal(str, int, int)  # model, bytes done, total (0 when unknown)
    downloaded = Signal(str)  # model, once its file is in place
    failed = Signal(str, str)  # model, why

    def __init__(self, models_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.models_dir = Path(models_dir)
        self._running: dict[str, asyncio.Future[Path]] = {}

    def is_missing(self, model: str) -> bool:
        """True when `model` needs a file that is not in the models folder."""
        from lama_desktop.engine.modelstore import KNOWN_FILES, ModelStore

        return model in KNOWN_FILES and not ModelStore(self.models_dir).is_present(model)

    def running(self, model: str) -> bool:
        """Whether `model` is being downloaded now."""
        return model in self._running

    def start(self, model: str) -> asyncio.Future[Path] | None:
        """Start downloading `model`; None when it is downloading already (the caller follows
        it through the signals, and whoever started it reports its error)."""
        if model in self._running:
            return None
        task = asyncio.ensure_future(self._fetch(model))
        self._running[model] = task
        self.started.emit(model)
        return task

    async def _fetch(self, model: str) -> Path:
        from lama_desktop.engine.modelstore import ModelStore

        store = ModelStore(self.models_dir)
        try:
            path = await asyncio.get_running_loop().run_in_executor(
                None,
                store.download,
                model,
                # Emitted on the executor's thread: Qt queues it onto the GUI thread.
                lambda done, total: self.progressed.emit(model, done, total or 0),
            )
        except BaseException as exc:
            del self._running[model]
            self.failed.emit(model, str(exc) or type(exc).__name__)
            raise
        del self._running[model]
        self.downloaded.emit(model)
        return path
