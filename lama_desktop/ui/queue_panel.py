"""Queue panel: batches and jobs with progress and reasons, and the commands that steer them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from lama_desktop.cluster.events import BatchState, BatchView, JobState, JobView
from lama_desktop.ui.async_slot import async_slot
from lama_desktop.ui.bridge import ClusterBridge, run_command, toggle_queue
from lama_desktop.ui.editor.dialogs import ask
from lama_desktop.ui.model_downloads import ModelDownloads
from lama_desktop.ui.progress_delegate import ProgressDelegate
from lama_desktop.ui.queue_model import PROGRESS_COLUMN, QueueModel, batch_state_text, is_bad

_FINISHED = (BatchState.DONE, BatchState.FAILED, BatchState.CANCELLED)


class QueuePanel(QWidget):
    """The Queue dock: a batch -> jobs tree and buttons acting on the selected batch or job."""

    def __init__(
        self,
        bridge: ClusterBridge,
        scheduler: Any,
        parent: QWidget | None = None,
        *,
        downloads: ModelDownloads | None = None,
    ):
        """`downloads`: the app's model downloads (without, no Download button is offered)."""
        super().__init__(parent)
        self.bridge = bridge
        self.scheduler = scheduler
        self.downloads = downloads
        self._download_shown = ""  # the model whose download the button follows
        self._download_failed = ""  # the model whose last download failed
        self.model = QueueModel(bridge, self)
        self.tree = QTreeView(self)
        self.tree.setModel(self.model)
        self.tree.setItemDelegateForColumn(PROGRESS_COLUMN, ProgressDelegate(self.tree))
        self.tree.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)  # thousands of jobs stay fast
        header = self.tree.header()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        # Narrow enough for a docked panel; the tree scrolls sideways and the dock widens.
        for column, width in enumerate((170, 120, 120, 55, 140, 55)):
            header.resizeSection(column, width)
        header.setMinimumSectionSize(40)
        self.tree.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)

        self.pause_queue_button = QPushButton(self)
        self.pause_batch_button = QPushButton("Pause batch", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.retry_button = QPushButton("Retry failed", self)
        self.up_button = QPushButton("Move up", self)
        self.down_button = QPushButton("Move down", self)
        self.open_button = QPushButton("Open output folder", self)
        self.clear_button = QPushButton("Clear finished", self)
        self.download_button = QPushButton(self)
        self.download_button.hide()
        # The selected row in words, wrapped: a failure's reason is readable without a tooltip
        # however narrow the Reason column is.
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # Three short rows: the dock is often narrow, and eight buttons in one row get cut off.
        queue_row, batch_row, order_row = QHBoxLayout(), QHBoxLayout(), QHBoxLayout()
        for row, row_buttons in (
            (queue_row, (self.pause_queue_button, self.clear_button, self.download_button)),
            (batch_row, (self.pause_batch_button, self.cancel_button, self.retry_button)),
            (order_row, (self.up_button, self.down_button, self.open_button)),
        ):
            for button in row_buttons:
                row.addWidget(button)
            row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tree, 1)
        layout.addWidget(self.details)
        layout.addLayout(queue_row)
        layout.addLayout(batch_row)
        layout.addLayout(order_row)

        self.pause_queue_button.clicked.connect(self.toggle_queue)
        self.pause_batch_button.clicked.connect(self.toggle_batch)
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.retry_button.clicked.connect(self.retry_failed)
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(1))
        self.open_button.clicked.connect(self.open_output_folder)
        self.clear_button.clicked.connect(self.clear_finished)
        self.download_button.clicked.connect(self._download_clicked)
        if downloads is not None:
            downloads.started.connect(lambda _model: self._update_download())
            downloads.progressed.connect(self._download_progressed)
            downloads.downloaded.connect(lambda _model: self._update_download())
            downloads.failed.connect(self._download_ended_badly)
        self.tree.selectionModel().currentRowChanged.connect(self._update_buttons)
        for signal in (
            self.model.dataChanged, self.model.rowsInserted, self.model.rowsRemoved,
            self.model.rowsMoved, self.model.modelReset,
        ):  # fmt: skip
            signal.connect(self._update_buttons)
        bridge.pausedChanged.connect(self._update_buttons)
        self._update_buttons()

    # -- selection -----------------------------------------------------------------------

    def selected(self) -> BatchView | JobView | None:
        """The batch or job on the current row."""
        return self.model.item(self.tree.currentIndex())

    def selected_batch(self) -> BatchView | None:
        """The selected batch, or the batch of the selected job."""
        item = self.selected()
        if isinstance(item, JobView):
            return self.bridge.batch(item.batch_id) if item.batch_id else None
        return item

    def select_batch(self, batch_id: str) -> None:
        """Make a batch the current row (used after submitting one)."""
        index = self.model.batch_index(batch_id)
        if index.isValid():
            self.tree.setCurrentIndex(index)

    def _update_buttons(self, *_: object) -> None:
        self.pause_queue_button.setText(
            "Resume queue" if self.bridge.is_paused() else "Pause queue"
        )
        item = self.selected()
        batch = self.selected_batch()
        active = batch is not None and batch.state not in _FINISHED
        self.pause_batch_button.setEnabled(active)
        paused = batch is not None and batch.state == BatchState.PAUSED
        self.pause_batch_button.setText("Resume batch" if paused else "Pause batch")
        if isinstance(item, JobView):
            self.cancel_button.setEnabled(item.state in (JobState.QUEUED, JobState.RUNNING))
            self.cancel_button.setText("Cancel job")
        else:
            self.cancel_button.setEnabled(active)
            self.cancel_button.setText("Cancel batch")
        self.retry_button.setEnabled(batch is not None and batch.failed > 0)
        count = len(self.bridge.batches())
        self.up_button.setEnabled(active and batch is not None and batch.position > 0)
        self.down_button.setEnabled(active and batch is not None and batch.position < count - 1)
        self.open_button.setEnabled(batch is not None)
        self.clear_button.setEnabled(any(b.state in _FINISHED for b in self.bridge.batches()))
        self._update_download()
        self.details.setText(describe(item, self.bridge))

    def _context_menu(self, pos: Any) -> None:
        index = self.tree.indexAt(pos)
        if index.isValid():
            self.tree.setCurrentIndex(index)
        self.context_menu().popup(self.tree.viewport().mapToGlobal(pos))

    def context_menu(self) -> QMenu:
        """The right-click menu: the buttons' commands for the current row."""
        self._update_buttons()
        menu = QMenu(self)
        menu.aboutToHide.connect(menu.deleteLater)
        for button in (
            self.pause_batch_button, self.cancel_button, self.retry_button, self.up_button,
            self.down_button, self.open_button, self.pause_queue_button, self.clear_button,
        ):  # fmt: skip
            action = menu.addAction(button.text(), button.click)
            action.setEnabled(button.isEnabled())
        failed = self.selected()
        if isinstance(failed, JobView) and is_bad(failed) and failed.reason:
            menu.addSeparator()
            menu.addAction("Copy error", lambda: QApplication.clipboard().setText(failed.reason))
        return menu

    # -- commands ------------------------------------------------------------------------

    def toggle_queue(self) -> None:
        """Pause the whole queue, or resume it (see bridge.toggle_queue)."""
        toggle_queue(self.bridge, self.scheduler)

    def toggle_batch(self) -> None:
        """Pause or resume the selected batch."""
        batch = self.selected_batch()
        if batch is None:
            return
        if batch.state == BatchState.PAUSED:
            run_command(self.scheduler.resume_batch(batch.batch_id))
        else:
            run_command(self.scheduler.pause_batch(batch.batch_id))

    @async_slot
    async def cancel_selected(self) -> None:
        """Cancel the selected job, or every unfinished job of the selected batch; asks first
        when running work would be lost or queued photos would not be done."""
        item = self.selected()
        question = cancel_question(item)
        if question:
            answer = await ask(
                self,
                "Cancel?",
                question,
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                labels={
                    QMessageBox.StandardButton.Yes: "Cancel them",
                    QMessageBox.StandardButton.No: "Keep going",
                },
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        if isinstance(item, JobView):
            run_command(self.scheduler.cancel_job(item.job_id))
        elif isinstance(item, BatchView):
            run_command(self.scheduler.cancel_batch(item.batch_id))

    def clear_finished(self) -> None:
        """Take finished batches off the list (and out of the journal)."""
        run_command(self.scheduler.clear_finished())

    def retry_failed(self) -> None:
        """Queue the failed jobs of the selected batch again."""
        batch = self.selected_batch()
        if batch is not None:
            run_command(self.scheduler.retry_failed(batch.batch_id))

    def move_selected(self, delta: int) -> None:
        """Move the selected batch up (-1) or down (+1) in the queue."""
        batch = self.selected_batch()
        if batch is not None:
            run_command(self.scheduler.move_batch(batch.batch_id, delta))

    def open_output_folder(self) -> bool:
        """Show the selected batch's output folder in the file manager, or its path when no
        file manager is registered (returns whether a file manager took it)."""
        batch = self.selected_batch()
        if batch is None:
            return False
        folder = str(Path(batch.output_dir))
        if QDesktopServices.openUrl(QUrl.fromLocalFile(folder)):
            return True
        box = QMessageBox(
            QMessageBox.Icon.Information,
            "Output folder",
            f"No file manager is set up to open folders. The photos are in:\n\n{folder}",
            QMessageBox.StandardButton.Close,
            self,
        )
        box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        copy = box.addButton("Copy path", QMessageBox.ButtonRole.ActionRole)
        copy.clicked.disconnect()  # keep the box open after copying
        copy.clicked.connect(lambda: QApplication.clipboard().setText(folder))
        box.finished.connect(box.deleteLater)
        self.path_box = box
        box.open()
        return False

    # -- a model the queue waits for -------------------------------------------------------

    def waiting_model(self) -> str:
        """The model a queued batch waits for because no node has it ("" when none)."""
        return next((b.missing_model for b in self.bridge.batches() if b.missing_model), "")

    def _update_download(self) -> None:
        """Offer the waited-for model's download, or follow the one running."""
        model = self.waiting_model()
        if (
            self.downloads is not None
            and not model
            and self.downloads.running(self._download_shown)
        ):
            model = self._download_shown  # the batch stopped waiting; the download goes on
        button = self.download_button
        if self.downloads is None or not model:
            button.hide()
            return
        button.show()
        if self.downloads.running(model):
            if not button.text().startswith("Downloading"):
                button.setText(f"Downloading {model}…")
            button.setEnabled(False)
        elif not self.downloads.is_missing(model):
            button.setText(f"{model} downloaded")  # the batch starts as workers report it
            button.setEnabled(False)
        else:
            again = "Retry download of" if model == self._download_failed else "Download"
            button.setText(f"{again} {model}")
            button.setEnabled(True)

    def _download_clicked(self) -> None:
        self.download_model(self.waiting_model())

    @async_slot
    async def download_model(self, model: str) -> None:
        """Fetch a model file off the GUI thread (the app then restarts its local workers,
        which report the new model); the button follows its progress."""
        assert self.downloads is not None
        self._download_shown, self._download_failed = model, ""
        task = self.downloads.start(model)
        self._update_download()
        if task is not None:  # else it runs already (the editor's banner started it)
            await task

    def _download_progressed(self, model: str, done: int, total: int) -> None:
        if model in (self._download_shown, self.waiting_model()):
            self._download_shown = model
            size = f" {done >> 20} of {total >> 20} MiB" if total else ""
            self.download_button.setText(f"Downloading {model}…{size}")
            self._update_download()

    def _download_ended_badly(self, model: str, _reason: str) -> None:
        self._download_failed = model
        self._update_download()


def cancel_question(item: BatchView | JobView | None) -> str:
    """What cancelling would lose, in words ("" when nothing is lost: no question asked)."""
    if isinstance(item, JobView):
        if item.state == JobState.RUNNING:
            return "This photo is being processed now; its work so far is lost. Cancel it?"
        return ""
    if not isinstance(item, BatchView) or item.state in _FINISHED:
        return ""
    left = item.total - item.done - item.failed - item.cancelled
    if left <= 0:
        return ""
    running = f" ({item.running} being processed now: their work so far is lost)"
    return (
        f"{left} photo(s) of {item.name} are not done yet{running if item.running else ''}. "
        "Photos already done stay in the output folder. Cancel the rest?"
    )


def describe(item: BatchView | JobView | None, bridge: ClusterBridge) -> str:
    """The selected row in one or two sentences (the full reason, never cut off)."""
    if isinstance(item, BatchView):
        why = f" — waiting: {item.waiting}" if item.waiting else ""
        return f"{item.name}: {batch_state_text(item)}{why}. Output: {item.output_dir}"
    if isinstance(item, JobView):
        name = Path(item.image).name
        node = bridge.node_name(item.node)
        where = f" on {node}" if node else ""
        if item.state == JobState.QUEUED:
            batch = bridge.batch(item.batch_id) if item.batch_id else None
            waiting = batch.waiting if batch is not None and batch.waiting else "next in line"
            return f"{name}: queued — waiting: {waiting}"
        # Engine errors often start with the file's name: say it once.
        reason = item.reason.removeprefix(f"{name}: ")
        return f"{name} {item.state.value}{where}{': ' if reason else ''}{reason}"
    return ""
