"""Tray icon: progress while batches run, counts and ETA in the tooltip, a small menu, notices."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon, QWidget

from lama_desktop.cluster.events import BatchChanged, BatchState, BatchView
from lama_desktop.ui.bridge import ClusterBridge, toggle_queue
from lama_desktop.ui.icons import TrayIconPainter
from lama_desktop.ui.queue_model import finished_jobs, format_eta

_ACTIVE = (BatchState.QUEUED, BatchState.RUNNING, BatchState.PAUSED)
_NOTICE_MS = 8000


def queue_summary(batches: list[BatchView]) -> tuple[int, int, float | None, int | None]:
    """(running jobs, waiting jobs, ETA of the queue, whole percent done or None when idle)."""
    active = [b for b in batches if b.state in _ACTIVE]
    if not active:
        return 0, 0, None, None
    running = sum(b.running for b in active)
    waiting = sum(max(0, b.total - finished_jobs(b) - b.running) for b in active)
    total = sum(b.total for b in active)
    finished = sum(finished_jobs(b) for b in active)
    etas = [b.eta_seconds for b in active if b.eta_seconds is not None]
    # Batches share the nodes and run one after another, so the queue's ETA is their sum.
    eta = sum(etas) if etas else None
    percent = 100 * finished // total if total else 0
    return running, waiting, eta, percent


class TrayIcon(QSystemTrayIcon):
    """The app's tray icon; present for the app's whole life, even when the window is hidden."""

    quitRequested = Signal()

    def __init__(
        self,
        bridge: ClusterBridge,
        scheduler: Any,
        window: QWidget,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.scheduler = scheduler
        self.window = window
        self.painter = TrayIconPainter()
        self._states: dict[str, BatchState] = {b.batch_id: b.state for b in bridge.batches()}
        self._told_kept_running = False

        self.menu = QMenu()
        self.show_action = QAction("Hide window", self.menu)
        self.pause_action = QAction("Pause queue", self.menu)
        self.quit_action = QAction("Quit", self.menu)
        self.menu.addAction(self.show_action)
        self.menu.addAction(self.pause_action)
        self.menu.addSeparator()
        self.menu.addAction(self.quit_action)
        self.setContextMenu(self.menu)
        self.show_action.triggered.connect(self.toggle_window)
        self.pause_action.triggered.connect(self.toggle_queue)
        self.quit_action.triggered.connect(self.request_quit)
        self.menu.aboutToShow.connect(self._update_menu)
        self.activated.connect(self._activated)

        bridge.batchChanged.connect(self._on_batch)
        bridge.snapshotReady.connect(self._refresh)
        bridge.pausedChanged.connect(self._refresh)
        self._refresh()
        if self.available():
            self.show()

    def close(self) -> None:
        """Take the icon off the tray and drop its menu (at quit)."""
        self.hide()
        self.setContextMenu(None)  # type: ignore[arg-type]
        self.menu.deleteLater()

    @staticmethod
    def available() -> bool:
        """Whether this desktop has a tray host to show the icon in."""
        return QSystemTrayIcon.isSystemTrayAvailable()

    def notify_once_kept_running(self) -> bool:
        """Say, the first time only, that closing the window left the app working in the tray."""
        if self._told_kept_running:
            return False
        self._told_kept_running = True
        self.showMessage(
            "Lama Desktop is still running",
            "Your queue keeps working in the background. Use the tray icon to show the "
            "window again or to quit.",
            QSystemTrayIcon.MessageIcon.Information,
            _NOTICE_MS,
        )
        return True

    # -- menu ----------------------------------------------------------------------------

    def _update_menu(self) -> None:
        self.show_action.setText("Hide window" if self.window.isVisible() else "Show window")
        self.pause_action.setText("Resume queue" if self.bridge.is_paused() else "Pause queue")

    def toggle_window(self) -> None:
        """Show and raise the main window, or hide it to the tray."""
        if self.window.isVisible() and not self.window.isMinimized():
            self.window.hide()
        else:
            self.window.showNormal()
            self.window.raise_()
            self.window.activateWindow()
        self._update_menu()

    def toggle_queue(self) -> None:
        """Pause the whole queue, or resume it (see bridge.toggle_queue)."""
        toggle_queue(self.bridge, self.scheduler)

    def request_quit(self) -> None:
        """Ask the app to quit; the main window's quit path asks about unfinished work."""
        self.quitRequested.emit()

    def _activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason == QSystemTrayIcon.ActivationReason.Trigger:
            self.toggle_window()

    # -- state ---------------------------------------------------------------------------

    def _on_batch(self, event: BatchChanged) -> None:
        batch = event.batch
        before = self._states.get(batch.batch_id)
        if event.removed:
            self._states.pop(batch.batch_id, None)
        else:
            self._states[batch.batch_id] = batch.state
            if before is not None and before != batch.state:
                self._notify_finished(batch)
        self._refresh()

    def _notify_finished(self, batch: BatchView) -> None:
        if batch.state == BatchState.DONE:
            self.showMessage(
                "Batch finished",
                f"{batch.name}: {batch.done} of {batch.total} photos done.",
                QSystemTrayIcon.MessageIcon.Information,
                _NOTICE_MS,
            )
        elif batch.state == BatchState.FAILED:
            self.showMessage(
                "Batch finished with failures",
                f"{batch.name}: {batch.failed} of {batch.total} photos failed; "
                "see the Queue panel for the reasons.",
                QSystemTrayIcon.MessageIcon.Warning,
                _NOTICE_MS,
            )

    def _refresh(self, *_: object) -> None:
        running, waiting, eta, percent = queue_summary(self.bridge.batches())
        icon = self.painter.update(percent if running or waiting else None)
        if icon is not None:
            self.setIcon(icon)
        lines = ["Lama Desktop"]
        if running or waiting:
            lines.append(f"{running} running, {waiting} waiting")
            if eta is not None:
                lines.append(f"About {format_eta(eta)} left")
        else:
            lines.append("Idle")
        if self.bridge.is_paused():
            lines.append("Queue paused")
        self.setToolTip("\n".join(lines))
        self._update_menu()
