"""The main window: the editor in the middle, Nodes and Queue docks, menus, status bar, closing."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, Qt, Signal
from PySide6.QtGui import (
    QAction,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
)
from PySide6.QtWidgets import QDockWidget, QLabel, QMainWindow, QMenu, QMessageBox, QWidget
from shiboken6 import Shiboken

from lama_desktop.cluster.events import BatchState, NodeChanged, NodeState
from lama_desktop.config import AppDirs, AppSettings, app_dirs
from lama_desktop.ui.async_slot import async_slot, set_error_handler, show_error, show_warning
from lama_desktop.ui.bridge import toggle_queue
from lama_desktop.ui.editor import EditorWidget
from lama_desktop.ui.editor.dialogs import ask, choose_open_path, choose_save_path
from lama_desktop.ui.model_downloads import ModelDownloads
from lama_desktop.ui.queue_model import unique_batch_name
from lama_desktop.ui.window_state import load_window_state, save_window_state

log = logging.getLogger(__name__)

UNFINISHED = {BatchState.QUEUED, BatchState.RUNNING, BatchState.PAUSED}


class MainWindow(QMainWindow):
    """Editor plus cluster panels. `quitConfirmed` fires once the user has agreed to quit;
    the app then stops the cluster and ends the loop (app.py)."""

    quitConfirmed = Signal()
    settingsApplied = Signal(object)  # AppSettings, after the window took them

    def __init__(
        self,
        scheduler: Any,
        bridge: Any,
        settings: AppSettings,
        parent: QWidget | None = None,
        *,
        dirs: AppDirs | None = None,
    ) -> None:
        super().__init__(parent)
        self.scheduler = scheduler
        self.bridge = bridge
        self.settings = settings
        self.dirs = dirs or app_dirs()
        self.agent: Any = None  # the embedded local agent, once started (set_agent)
        self._quitting = False
        self._stepping_to: Path | None = None  # the photo the last Next/Previous asked for
        self.setWindowTitle("Lama Desktop")
        self.setAcceptDrops(True)
        # One download per model for the editor's banner and the Queue panel; once a file is
        # in place the local workers restart, so that they report it.
        self.downloads = ModelDownloads(self.dirs.models, self)
        self.downloads.downloaded.connect(lambda _model: self._restart_local_workers())
        self.editor = EditorWidget(scheduler, settings, self.downloads, self)
        self.setCentralWidget(self.editor)
        self._build_docks()
        self._build_status_bar()
        self._build_menus()
        self._restore_layout()
        self.tray = self._make_tray()
        self.editor.statusMessage.connect(lambda text: self.statusBar().showMessage(text, 8000))
        self.editor.roundFinished.connect(self._on_round_finished)
        self.editor.documentChanged.connect(self._update_title)
        self.editor.photoOpened.connect(self._forget_last_photo)
        self.editor.openRequested.connect(self.open_path)
        self.editor.undo_stack.cleanChanged.connect(self._on_clean_changed)
        bridge.nodeChanged.connect(self._on_node_changed)
        bridge.snapshotReady.connect(lambda _s: self._update_workers())
        bridge.noticeRaised.connect(self._show_notice)
        set_error_handler(self._show_error)
        self._update_workers()

    # -- construction ---------------------------------------------------------------------

    def _build_docks(self) -> None:
        from lama_desktop.ui.nodes_panel import NodesPanel
        from lama_desktop.ui.queue_panel import QueuePanel

        self.nodes_panel = NodesPanel(self.bridge, self.scheduler, self)
        self.queue_panel = QueuePanel(self.bridge, self.scheduler, self, downloads=self.downloads)
        self.nodes_panel.localWorkersToggled.connect(self._on_local_workers_toggled)
        self.nodes_dock = self._dock("Nodes", self.nodes_panel)
        self.queue_dock = self._dock("Queue", self.queue_panel)
        self.tabifyDockWidget(self.nodes_dock, self.queue_dock)
        self.nodes_dock.raise_()
        # The editor gets most of the width; the panels can be widened or floated.
        self.resizeDocks([self.nodes_dock], [440], Qt.Orientation.Horizontal)

    def _dock(self, title: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{title.lower()}-dock")
        dock.setWidget(widget)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        return dock

    def _build_status_bar(self) -> None:
        self.last_edit_label = QLabel("", self)
        self.workers_label = QLabel("Local workers: starting…", self)
        for label in (self.last_edit_label, self.workers_label):
            # A long node name is cut off rather than widening the window past the screen.
            label.setMinimumWidth(1)
            self.statusBar().addPermanentWidget(label)

    def _restore_layout(self) -> None:
        """The size, place and docks of the last run, else a size that fits this screen."""
        stored = load_window_state(self.dirs.config)
        if stored is not None and self.restoreGeometry(QByteArray(stored[0])):
            self.restoreState(QByteArray(stored[1]))
            return
        screen = QGuiApplication.primaryScreen()
        available = screen.availableGeometry() if screen is not None else None
        if available is None:
            self.resize(1280, 820)
            return
        # Leave room for the frame: 1280 x 820 asked of a 1280 x 720 screen would overflow.
        self.resize(min(1280, available.width() * 9 // 10), min(820, available.height() * 9 // 10))
        # The editor keeps most of the width on a small screen too.
        self.resizeDocks(
            [self.nodes_dock], [min(440, self.width() * 2 // 5)], Qt.Orientation.Horizontal
        )

    async def save_layout(self) -> None:
        """Remember the window's geometry and dock layout for the next run (off the GUI thread)."""
        geometry, docks = bytes(self.saveGeometry().data()), bytes(self.saveState().data())
        await asyncio.get_running_loop().run_in_executor(
            None, save_window_state, self.dirs.config, geometry, docks
        )

    def _make_tray(self) -> Any:
        from lama_desktop.ui.tray import TrayIcon

        tray = TrayIcon(self.bridge, self.scheduler, self, self)
        tray.quitRequested.connect(self.request_quit)
        return tray

    def _action(self, menu: QMenu, text: str, slot: Any, keys: Any = None) -> QAction:
        action = QAction(text, self)
        if keys is not None:
            action.setShortcut(QKeySequence(keys))
        action.triggered.connect(lambda _checked=False: slot())
        menu.addAction(action)
        return action

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "&Open…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = file_menu.addMenu("Open &Recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._action(file_menu, "&Batch…", self.open_batch_dialog, "Ctrl+B")
        file_menu.addSeparator()
        self.save_action = self._action(
            file_menu, "&Save", self.save, QKeySequence.StandardKey.Save
        )
        self._action(file_menu, "Save &As…", self.save_as, "Ctrl+Shift+S")
        file_menu.addSeparator()
        self._action(
            file_menu, "Se&ttings…", self.open_settings, QKeySequence.StandardKey.Preferences
        )
        self._action(file_menu, "&Quit", self.request_quit, QKeySequence.StandardKey.Quit)
        edit_menu = bar.addMenu("&Edit")
        undo = self.editor.undo_stack.createUndoAction(self, "&Undo")
        undo.setShortcut(QKeySequence("Ctrl+Z"))
        redo = self.editor.undo_stack.createRedoAction(self, "&Redo")
        redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        edit_menu.addAction(undo)
        edit_menu.addAction(redo)
        edit_menu.addSeparator()
        self._action(edit_menu, "Cancel edit / clear mask", self.editor.cancel_or_clear, "Escape")
        view_menu = bar.addMenu("&View")
        view_menu.addAction(self.nodes_dock.toggleViewAction())
        view_menu.addAction(self.queue_dock.toggleViewAction())
        view_menu.addSeparator()
        self._action(view_menu, "&Fit", self.editor.canvas.fit, "Ctrl+0")
        self._action(view_menu, "&100 %", self.editor.canvas.actual_size, "Ctrl+1")
        view_menu.addSeparator()
        view_menu.addAction(self.editor.filmstrip.toggle_action)
        for text, step, keys in (("&Next photo", 1, "PgDown"), ("&Previous photo", -1, "PgUp")):
            action = self._action(view_menu, text, lambda s=step: self.step_photo(s))
            alt = "Alt+Right" if step > 0 else "Alt+Left"
            action.setShortcuts([QKeySequence(keys), QKeySequence(alt)])
        cluster_menu = bar.addMenu("&Cluster")
        self._action(cluster_menu, "&Add node…", self.nodes_panel.open_add_dialog)
        self.pause_action = self._action(cluster_menu, "&Pause queue", self.toggle_queue)
        cluster_menu.aboutToShow.connect(self._update_pause_action)
        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "&Logs", self.show_logs)
        self._action(help_menu, "&About", self.show_about)

    def _update_pause_action(self) -> None:
        self.pause_action.setText("&Resume queue" if self.bridge.is_paused() else "&Pause queue")

    def toggle_queue(self) -> None:
        """Pause the whole queue, or resume it (see bridge.toggle_queue)."""
        toggle_queue(self.bridge, self.scheduler)

    # -- status -------------------------------------------------------------------------

    def _on_round_finished(self, node: str, seconds: float) -> None:
        worker = self.editor.last_worker_seconds
        detail = f" (inpainting {worker * 1000:.0f} ms)" if worker else ""
        text = f"Last edit: {node}, {seconds * 1000:.0f} ms{detail}"
        self.last_edit_label.setText(text)
        self.last_edit_label.setToolTip(text)

    def _on_node_changed(self, event: NodeChanged) -> None:
        if event.node.local:
            self._update_workers()

    def _update_workers(self) -> None:
        """Say whether this computer's workers are still warming up (they import the engine)."""
        self._sync_local_node()  # the local node joins after a start with its workers off
        local = [n for n in self.bridge.nodes() if n.local]
        if not self.settings.local_workers:
            self.workers_label.setText("Local workers: off")
        elif not local:
            self.workers_label.setText("Local workers: starting…")
        elif not local[0].enabled or local[0].state == NodeState.DISABLED:
            self.workers_label.setText("Local workers: off")
        elif local[0].state == NodeState.STARTING or local[0].slots == 0:
            self.workers_label.setText("Local workers: warming up…")
        elif local[0].state in (NodeState.IDLE, NodeState.BUSY):
            self.workers_label.setText(f"Local workers: ready ({local[0].slots})")
        else:
            self.workers_label.setText(f"Local workers: {local[0].state.value} {local[0].reason}")

    def _forget_last_photo(self, _path: Path) -> None:
        """Another photo is open: the figures of the last one's edits no longer apply."""
        self.last_edit_label.clear()
        self.statusBar().clearMessage()

    def _on_clean_changed(self, _clean: bool) -> None:
        # A stack with unsaved edits empties itself as it is destroyed with the window
        # (Discard at quit): its Python side is gone by then and there is no title to update.
        if Shiboken.isValid(self.editor.undo_stack):
            self._update_title()

    def _update_title(self) -> None:
        path = self.editor.saved_path or self.editor.path  # Save As: the file Ctrl+S writes
        name = path.name if path is not None else ""
        star = "*" if self.editor.is_modified() else ""
        self.setWindowTitle(f"{name}{star} — Lama Desktop" if name else "Lama Desktop")

    def _show_error(self, parent: QWidget | None, title: str, error: BaseException) -> None:
        self.statusBar().showMessage(f"{title}: {error}", 15000)
        show_error(self, title, error)

    def _show_notice(self, title: str, text: str) -> None:
        """Tell the user what the cluster must say (a replaced journal): a box and the status."""
        self.statusBar().showMessage(f"{title}: {text}", 30000)
        show_warning(self, title, text)

    def set_agent(self, agent: Any) -> None:
        """The embedded local agent, so settings can switch its workers without a restart."""
        self.agent = agent

    # -- files --------------------------------------------------------------------------

    @async_slot(title="Could not open the photo")
    async def open_path(self, path: Path) -> None:
        """Open one photo in the editor (asks first when the current one has unsaved edits)."""
        if self.editor.is_modified() and not await self._confirm_discard():
            return
        await self.editor.open_file(path)
        self.settings.add_recent(path)
        await self.save_settings()

    @async_slot(title="Could not open the photo")
    async def open_dialog(self) -> None:
        start = self.editor.path.parent if self.editor.path else Path.home()
        path = await choose_open_path(self, start)
        if path is not None:
            await self.open_path(path)

    def step_photo(self, step: int) -> None:
        """Open the next (+1) or previous (-1) photo of the filmstrip's folder."""
        # Keys pressed faster than photos open step on from the photo asked for last.
        path = self.editor.neighbour(step, self._stepping_to)
        if path is None:
            return
        self._stepping_to = path
        self.open_path(path).add_done_callback(lambda _task: self._stepped(path))

    def _stepped(self, path: Path) -> None:
        if self._stepping_to == path:
            self._stepping_to = None

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for text in self.settings.recent_files:
            action = self.recent_menu.addAction(text)
            action.triggered.connect(lambda _c=False, p=Path(text): self.open_path(p))
        if not self.settings.recent_files:
            self.recent_menu.addAction("(none)").setEnabled(False)

    async def _confirm_discard(self) -> bool:
        """Save / Discard / Cancel for unsaved edits; True when the caller may go on."""
        answer = await ask(
            self,
            "Unsaved edits",
            "The photo has edits that are not saved. Save them first?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            default=QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            try:
                await self.save()
            except Exception:  # already logged and shown by save's own slot
                return False
            return not self.editor.is_modified()  # the save was cancelled or failed: stay
        return answer == QMessageBox.StandardButton.Discard

    @async_slot(title="Could not save the photo")
    async def save(self) -> None:
        """Save to where the user last saved; the original is only replaced after asking."""
        if self.editor.path is None:
            return
        target = self.editor.saved_path or self.editor.path
        if target == self.editor.path:
            answer = await ask(
                self,
                "Overwrite the original?",
                f"Replace the original photo {target.name} with the edited one? "
                "This cannot be undone. Choose Save As to keep the original.",
                QMessageBox.StandardButton.Save
                | QMessageBox.StandardButton.SaveAll
                | QMessageBox.StandardButton.Cancel,
                labels={
                    QMessageBox.StandardButton.Save: "Overwrite",
                    QMessageBox.StandardButton.SaveAll: "Save As…",
                },
                default=QMessageBox.StandardButton.SaveAll,
            )
            if answer == QMessageBox.StandardButton.SaveAll:
                await self.save_as()
                return
            if answer != QMessageBox.StandardButton.Save:
                return
        await self.editor.save_asking(target, overwrite=True)

    @async_slot(title="Could not save the photo")
    async def save_as(self) -> None:
        suggested = self.editor.suggested_save_path()
        if suggested is None:
            return
        path = await choose_save_path(self, self.editor.saved_path or suggested)
        if path is not None:
            # The file dialog has already asked before choosing an existing file.
            await self.editor.save_asking(path, overwrite=True)

    # -- drag and drop ------------------------------------------------------------------

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and any(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [Path(u.toLocalFile()) for u in event.mimeData().urls() if u.isLocalFile()]
        event.acceptProposedAction()
        self.handle_dropped(paths)

    def handle_dropped(self, paths: list[Path]) -> None:
        """One photo opens in the editor; folders or several photos open the batch dialog."""
        if len(paths) == 1 and not paths[0].is_dir():
            self.open_path(paths[0])  # not a photo: opening says so, in the user's words
        elif paths:
            self.open_batch_dialog(paths)

    def open_batch_dialog(self, paths: list[Path] | None = None) -> None:
        """Choose masks, output and model for a batch; on OK it is queued on the scheduler."""
        from lama_desktop.ui.batch_dialog import BatchDialog

        dialog = BatchDialog(list(paths or []), self.settings, self)
        dialog.accepted.connect(lambda: self._submit_batch(dialog.result_batch()))
        dialog.finished.connect(self._batch_dialog_closed)
        self._batch_dialog: Any = dialog
        dialog.open()

    def _batch_dialog_closed(self) -> None:
        # Not kept after it closes: its plan (skipped photos included) would stay in memory
        # until the next batch; the scheduler keeps the queued jobs it needs.
        dialog, self._batch_dialog = self._batch_dialog, None
        if dialog is not None:
            dialog.deleteLater()

    def _submit_batch(self, batch: tuple[Any, Any, str] | None) -> None:
        if batch is None:
            return
        plan, job_settings, name = batch
        name = unique_batch_name(name, {b.name for b in self.bridge.batches()}, datetime.now())
        self.scheduler.submit_batch(plan, job_settings, name)
        self.queue_dock.show()
        self.queue_dock.raise_()
        self.statusBar().showMessage(f"Queued batch {name}", 8000)

    # -- settings, logs, about ----------------------------------------------------------

    async def save_settings(self) -> None:
        from lama_desktop.config import save_settings

        await asyncio.get_running_loop().run_in_executor(
            None, save_settings, self.settings, self.dirs.settings_file
        )

    def open_settings(self) -> None:
        from lama_desktop.ui.settings_dialog import SettingsDialog

        dialog = SettingsDialog(self.settings, self)
        dialog.finished.connect(dialog.deleteLater)
        dialog.applied.connect(self.apply_settings)
        self._settings_dialog = dialog
        dialog.open()

    @async_slot
    async def apply_settings(self, settings: AppSettings) -> None:
        """Take new settings at once: local workers, queue limits, editor choices; then save."""
        old_workers = self.settings.workers()
        self.settings.__dict__.update(settings.__dict__)
        self.editor.reload_settings()
        if settings.workers() != old_workers:
            self._apply_local_workers()
        self.scheduler.set_job_timeout(settings.job_timeout)
        self.settingsApplied.emit(self.settings)
        await self.save_settings()

    def _on_local_workers_toggled(self, on: bool) -> None:
        self.settings.local_workers = on
        self._apply_local_workers()

    def _apply_local_workers(self) -> None:
        """One meaning for "this computer's workers" on or off, from the Nodes panel's box or
        the settings dialog: the local agent runs the workers the settings ask for (or none)
        and the local node is enabled to match."""
        if self.agent is not None:
            self.agent.set_workers(self.settings.workers())
        self._sync_local_node()
        self._update_workers()

    def _restart_local_workers(self) -> None:
        """Fresh local workers, so they report a model downloaded since they started."""
        if self.agent is not None and self.settings.local_workers:
            self.agent.set_workers(0)
            self.agent.set_workers(self.settings.workers())

    def _sync_local_node(self) -> None:
        local = next((n for n in self.bridge.nodes() if n.local), None)
        if local is not None and local.enabled != self.settings.local_workers:
            self.scheduler.set_node_enabled(local.node_id, self.settings.local_workers)

    def show_logs(self) -> None:
        from lama_desktop.ui.log_view import LogView

        view = LogView(self.dirs.log, self)
        view.finished.connect(view.deleteLater)
        view.show()

    def show_about(self) -> None:
        from lama_desktop import __version__

        box = QMessageBox(
            QMessageBox.Icon.Information,
            "About Lama Desktop",
            f"Lama Desktop {__version__}\nErase objects from photos with LaMa "
            "inpainting, spread over every machine you have.",
            parent=self,
        )
        box.finished.connect(box.deleteLater)
        box.open()

    # -- closing and quitting -----------------------------------------------------------

    def unfinished_batches(self) -> int:
        return sum(1 for b in self.bridge.batches() if b.state in UNFINISHED)

    def closeEvent(self, event: QCloseEvent) -> None:
        """Closing with queued work keeps the app in the tray; otherwise it is a quit."""
        if self._quitting:
            event.accept()
            return
        event.ignore()
        if self.unfinished_batches() and self.settings.close_to_tray and self.tray.available():
            self.hide()
            self.tray.notify_once_kept_running()
            return
        self.request_quit()

    @async_slot
    async def request_quit(self) -> None:
        """Ask about unsaved edits and unfinished batches, then quit (the journal keeps them)."""
        if self._quitting:
            return
        if self.editor.is_modified() and not await self._confirm_discard():
            return
        count = self.unfinished_batches()
        if count:
            answer = await ask(
                self,
                "Quit with work in progress?",
                f"{count} batch(es) are not finished. They are kept and resume the next time "
                "Lama Desktop starts. Quit now?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self._quitting = True
        try:
            await self.save_settings()
            await self.save_layout()
        except Exception:  # a full disk must not keep the app from quitting
            log.exception("could not save the settings while quitting")
        if Shiboken.isValid(self):  # the window may have been destroyed while saving
            self.quitConfirmed.emit()

    def shutdown(self) -> None:
        """Take the tray icon away and close the window for good (the app is ending)."""
        self._quitting = True
        set_error_handler(show_error)
        self.tray.close()
        self.close()
