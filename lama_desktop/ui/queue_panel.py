"""Queue panel: batches and jobs with progress and reasons, and the commands that steer them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QRectF, Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QHBoxLayout,
    QHeaderView,
    QMenu,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from lama_desktop.cluster.events import BatchState, BatchView, JobState, JobView
from lama_desktop.ui.bridge import ClusterBridge, run_command, toggle_queue
from lama_desktop.ui.queue_model import (
    FAILED_ROLE,
    PROGRESS_COLUMN,
    PROGRESS_ROLE,
    QueueModel,
    is_bad,
)

_FINISHED = (BatchState.DONE, BatchState.FAILED, BatchState.CANCELLED)
_TRACK = QColor("#dfe3e8")
_FILL = QColor("#64b5f6")
_FAILED = QColor("#e57373")
_TEXT = QColor("#1a1a1a")


class ProgressDelegate(QStyledItemDelegate):
    """Draws a batch's progress cell as a slim bar with its "done / total" text on it.

    Painted by hand rather than with the style's progress bar: style bars are taller than a
    tree row in several styles and their text gets clipped.
    """

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        percent = index.data(PROGRESS_ROLE)
        if percent is None:
            super().paint(painter, option, index)
            return
        rect = option.rect  # type: ignore[attr-defined]
        bar = QRectF(rect).adjusted(3, 2, -3, -2)
        failed = int(index.data(FAILED_ROLE) or 0)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(_TRACK)
        painter.drawRoundedRect(bar, 3, 3)
        # Finished photos fill the bar; the failed share of them is shown at its end in red.
        finished = bar.width() * int(percent) / 100
        bad = min(finished, bar.width() * failed / 100)
        painter.setBrush(_FILL)
        painter.drawRoundedRect(QRectF(bar.x(), bar.y(), finished, bar.height()), 3, 3)
        if bad > 0:
            painter.setBrush(_FAILED)
            painter.drawRect(QRectF(bar.x() + finished - bad, bar.y(), bad, bar.height()))
        painter.setPen(_TEXT)
        painter.drawText(bar, Qt.AlignmentFlag.AlignCenter, index.data(Qt.ItemDataRole.DisplayRole))
        painter.restore()


class QueuePanel(QWidget):
    """The Queue dock: a batch -> jobs tree and buttons acting on the selected batch or job."""

    def __init__(self, bridge: ClusterBridge, scheduler: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.bridge = bridge
        self.scheduler = scheduler
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
        for column, width in enumerate((220, 130, 170, 60, 160, 60)):
            header.resizeSection(column, width)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)

        self.pause_queue_button = QPushButton(self)
        self.pause_batch_button = QPushButton("Pause batch", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.retry_button = QPushButton("Retry failed", self)
        self.up_button = QPushButton("Move up", self)
        self.down_button = QPushButton("Move down", self)
        self.open_button = QPushButton("Open output folder", self)
        # Two short rows: the dock is often narrow, and seven buttons in one row get cut off.
        queue_row, batch_row = QHBoxLayout(), QHBoxLayout()
        for row, row_buttons in (
            (queue_row, (self.pause_queue_button, self.pause_batch_button, self.cancel_button,
                         self.retry_button)),
            (batch_row, (self.up_button, self.down_button, self.open_button)),
        ):  # fmt: skip
            for button in row_buttons:
                row.addWidget(button)
            row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.tree)
        layout.addLayout(queue_row)
        layout.addLayout(batch_row)

        self.pause_queue_button.clicked.connect(self.toggle_queue)
        self.pause_batch_button.clicked.connect(self.toggle_batch)
        self.cancel_button.clicked.connect(self.cancel_selected)
        self.retry_button.clicked.connect(self.retry_failed)
        self.up_button.clicked.connect(lambda: self.move_selected(-1))
        self.down_button.clicked.connect(lambda: self.move_selected(1))
        self.open_button.clicked.connect(self.open_output_folder)
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
            self.down_button, self.open_button, self.pause_queue_button,
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

    def cancel_selected(self) -> None:
        """Cancel the selected job, or every unfinished job of the selected batch."""
        item = self.selected()
        if isinstance(item, JobView):
            run_command(self.scheduler.cancel_job(item.job_id))
        elif isinstance(item, BatchView):
            run_command(self.scheduler.cancel_batch(item.batch_id))

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
        """Show the selected batch's output folder in the file manager."""
        batch = self.selected_batch()
        if batch is None:
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(batch.output_dir))))
