"""Nodes panel: a live table of every node with add, remove, enable/disable and local workers."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMenu,
    QMessageBox,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from lama_desktop.cluster.events import NodeChanged, NodeState, NodeView, Snapshot
from lama_desktop.ui.add_node_dialog import AddNodeDialog
from lama_desktop.ui.async_slot import async_slot
from lama_desktop.ui.bridge import ClusterBridge, run_command
from lama_desktop.ui.icons import state_dot

log = logging.getLogger(__name__)

# State second: in a narrow dock a dead node's reason is in sight without scrolling.
COLUMNS = (
    "Name", "State", "Device", "Address", "GPU", "VRAM", "CPU", "RAM", "Jobs", "Current job",
    "Throughput",
)  # fmt: skip
STATE_COLUMN = COLUMNS.index("State")
CURRENT_COLUMN = COLUMNS.index("Current job")

STATE_COLOURS = {
    NodeState.STARTING: QColor("#c98a00"),
    NodeState.IDLE: QColor("#2e7d32"),
    NodeState.BUSY: QColor("#1565c0"),
    NodeState.OFFLINE: QColor("#c62828"),
    NodeState.REFUSED: QColor("#c62828"),
    NodeState.VERSION_MISMATCH: QColor("#ad1457"),
    NodeState.DISABLED: QColor("#9e9e9e"),
}
_WORKING = (NodeState.IDLE, NodeState.BUSY)
# Nodes that should work and do not: red, with their reason in the row.
_DEAD = (NodeState.OFFLINE, NodeState.REFUSED, NodeState.VERSION_MISMATCH)
_GREY = QColor("#757575")
_DEFAULT_REASONS = {
    NodeState.STARTING: "Connecting and warming up its workers.",
    NodeState.OFFLINE: "Not answering (no heartbeat for 3 s).",
    NodeState.REFUSED: "The node refused this desktop.",
    NodeState.VERSION_MISMATCH: "The node speaks another protocol version.",
    NodeState.DISABLED: "Disabled: no new jobs are sent to it.",
}


def format_bytes(n: int | None) -> str:
    """A byte count the way people read it: 512 MiB, 7.8 GiB."""
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit in ("B", "KiB", "MiB") else f"{value:.1f} {unit}"
        value /= 1024
    return ""  # unreachable: the loop always returns at GiB


def _used_of(used: int | None, total: int | None) -> str:
    if used is None and total is None:
        return ""
    if used is None:
        return format_bytes(total)
    return f"{format_bytes(used)} / {format_bytes(total)}" if total else format_bytes(used)


def state_label(state: NodeState) -> str:
    """The state as a user reads it ("version mismatch", not "version-mismatch")."""
    return state.value.replace("-", " ")


def node_reason(node: NodeView) -> str:
    """Why a node is not working, or "" when it is idle or busy."""
    if node.state in _WORKING:
        return ""
    return node.reason or _DEFAULT_REASONS.get(node.state, "")


def _image_names(bridge: ClusterBridge, job_ids: tuple[str, ...]) -> str:
    """The photos a node works on, by file name (an id only for a job not seen yet)."""
    names = []
    for job_id in job_ids:
        job = bridge.job(job_id)
        names.append(job.image.replace("\\", "/").rsplit("/", 1)[-1] if job else "photo edit")
    return ", ".join(names)


def _cell(node: NodeView, column: int) -> str:
    name = COLUMNS[column]
    if name == "Name":
        local = node.local and "this computer" not in node.name
        return f"{node.name} (this computer)" if local else node.name
    if name == "Address":
        return node.address
    if name == "Device":
        return node.device
    if name == "State":
        # A dead node says why in its row: a tooltip is not where users look.
        why = node_reason(node) if node.state in _DEAD else ""
        return f"{state_label(node.state)}: {why.rstrip('.')}" if why else state_label(node.state)
    if name == "GPU":
        return "" if node.gpu_util is None else f"{node.gpu_util:.0f} %"
    if name == "VRAM":
        return _used_of(node.vram_used, node.vram_total)
    if name == "CPU":
        return "" if node.cpu_percent is None else f"{node.cpu_percent:.0f} %"
    if name == "RAM":
        return _used_of(node.ram_used, node.ram_total)
    if name == "Jobs":
        return str(node.jobs_done)
    return f"{node.throughput * 60:.1f}/min" if node.throughput else ""


def remove_question(node: NodeView) -> str:
    """The Remove question, saying what happens to the photos the node is working on."""
    running = len(node.current_jobs)
    jobs = f" It is working on {running} photo(s) now; they move to other nodes." if running else ""
    return f"Remove {node.name} ({node.address})?{jobs} It must be paired again to come back."


class NodesModel(QAbstractTableModel):
    """One row per node, fed by the bridge; a change updates its row in place."""

    def __init__(self, bridge: ClusterBridge, parent: Any = None) -> None:
        super().__init__(parent)
        self._bridge = bridge
        self._nodes: list[NodeView] = list(bridge.nodes())
        self._rows = {n.node_id: i for i, n in enumerate(self._nodes)}
        bridge.nodeChanged.connect(self.on_node_changed)
        bridge.snapshotReady.connect(self.on_snapshot)

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._nodes)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def node_at(self, row: int) -> NodeView | None:
        """The node shown in `row`, or None outside the table."""
        return self._nodes[row] if 0 <= row < len(self._nodes) else None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        node = self.node_at(index.row()) if index.isValid() else None
        if node is None:
            return None
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == CURRENT_COLUMN:
                return _image_names(self._bridge, node.current_jobs)
            return _cell(node, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            reason = node_reason(node)
            head = f"{node.name}: {state_label(node.state)}"
            return f"{head}\n{reason}" if reason else head
        if role == Qt.ItemDataRole.ForegroundRole and col == STATE_COLUMN:
            return STATE_COLOURS[node.state]
        if role == Qt.ItemDataRole.ForegroundRole and node.state in _DEAD and col == 0:
            return STATE_COLOURS[node.state]
        if role == Qt.ItemDataRole.ForegroundRole and node.state not in _WORKING:
            return _GREY  # greyed: old metrics of a node that takes no work now
        if role == Qt.ItemDataRole.DecorationRole and col == STATE_COLUMN:
            return state_dot(STATE_COLOURS[node.state].name())
        if role == Qt.ItemDataRole.UserRole:
            return node.node_id
        return None

    def on_node_changed(self, event: NodeChanged) -> None:
        """Insert, update in place, or remove the node's row."""
        node = event.node
        row = self._rows.get(node.node_id)
        if event.removed:
            if row is not None:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._nodes[row]
                self._rows = {n.node_id: i for i, n in enumerate(self._nodes)}
                self.endRemoveRows()
        elif row is None:
            row = len(self._nodes)
            self.beginInsertRows(QModelIndex(), row, row)
            self._nodes.append(node)
            self._rows[node.node_id] = row
            self.endInsertRows()
        else:
            self._nodes[row] = node
            self.dataChanged.emit(self.index(row, 0), self.index(row, len(COLUMNS) - 1))

    def on_snapshot(self, snapshot: Snapshot) -> None:
        """Start over from a full snapshot (rare: once when the scheduler starts)."""
        self.beginResetModel()
        self._nodes = list(snapshot.nodes)
        self._rows = {n.node_id: i for i, n in enumerate(self._nodes)}
        self.endResetModel()


class NodesPanel(QWidget):
    """The Nodes dock: the table, its buttons and context menu."""

    localWorkersToggled = Signal(bool)

    def __init__(self, bridge: ClusterBridge, scheduler: Any, parent: QWidget | None = None):
        super().__init__(parent)
        self.bridge = bridge
        self.scheduler = scheduler
        self.model = NodesModel(bridge, self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)

        self.add_button = QPushButton("Add node…", self)
        self.remove_button = QPushButton("Remove", self)
        self.enable_button = QPushButton("Disable", self)
        self.local_box = QCheckBox("Use this computer's workers", self)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self._status_node: str | None = None  # the node the status line names
        buttons = QHBoxLayout()
        for w in (self.add_button, self.remove_button, self.enable_button):
            buttons.addWidget(w)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.local_box)
        layout.addWidget(self.status)

        self.add_button.clicked.connect(self.open_add_dialog)
        self.remove_button.clicked.connect(self.remove_selected)
        self.enable_button.clicked.connect(self.toggle_selected)
        self.local_box.toggled.connect(self.set_local_workers)
        self.table.selectionModel().selectionChanged.connect(self._update_buttons)
        self.model.dataChanged.connect(self._update_buttons)
        self.model.rowsInserted.connect(self._update_buttons)
        self.model.rowsRemoved.connect(self._update_buttons)
        self.model.modelReset.connect(self._update_buttons)
        bridge.nodeChanged.connect(self._on_node_changed)
        self._update_buttons()

    def show_status(self, text: str, node_id: str | None = None) -> None:
        """Say `text` under the table; `node_id`: the node it is about, if it names one."""
        self.status.setText(text)
        self._status_node = node_id

    def _on_node_changed(self, event: NodeChanged) -> None:
        if event.removed and event.node.node_id == self._status_node:
            self.show_status("")  # no "Paired with" about a node that is gone

    def selected_node(self) -> NodeView | None:
        """The node whose row is selected, if any."""
        rows = self.table.selectionModel().selectedRows()
        return self.model.node_at(rows[0].row()) if rows else None

    def _local_node(self) -> NodeView | None:
        return next((n for n in self.bridge.nodes() if n.local), None)

    def _update_buttons(self, *_: object) -> None:
        node = self.selected_node()
        self.remove_button.setEnabled(node is not None and not node.local)
        self.enable_button.setEnabled(node is not None)
        self.enable_button.setText("Enable" if node is not None and not node.enabled else "Disable")
        local = self._local_node()
        self.local_box.setEnabled(local is not None)
        self.local_box.blockSignals(True)
        self.local_box.setChecked(local is not None and local.enabled)
        self.local_box.blockSignals(False)

    def _context_menu(self, pos: Any) -> None:
        self.table.selectRow(self.table.indexAt(pos).row())
        self.context_menu().popup(self.table.viewport().mapToGlobal(pos))

    def context_menu(self) -> QMenu:
        """The right-click menu for the selected node (deleted once it closes)."""
        menu = QMenu(self)
        menu.aboutToHide.connect(menu.deleteLater)
        menu.addAction("Add node…", self.open_add_dialog)
        node = self.selected_node()
        if node is not None:
            menu.addAction("Enable" if not node.enabled else "Disable", self.toggle_selected)
            if not node.local:
                menu.addAction("Remove", self.remove_selected)
        return menu

    def toggle_selected(self) -> None:
        """Enable a disabled node or disable an enabled one (disabled nodes get no new jobs)."""
        node = self.selected_node()
        if node is not None:
            run_command(self.scheduler.set_node_enabled(node.node_id, not node.enabled))

    def set_local_workers(self, on: bool) -> None:
        """Switch this computer's workers on or off (the local node is enabled or disabled)."""
        local = self._local_node()
        if local is not None and local.enabled != on:
            run_command(self.scheduler.set_node_enabled(local.node_id, on))
        self.localWorkersToggled.emit(on)

    def remove_selected(self) -> None:
        """Ask, then forget the selected remote node (it must be paired again to come back)."""
        node = self.selected_node()
        if node is None or node.local:
            return
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Remove node",
            remove_question(node),
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            self,
        )
        box.setDefaultButton(QMessageBox.StandardButton.No)
        node_id = node.node_id

        def done(button: int) -> None:
            box.deleteLater()
            if button == QMessageBox.StandardButton.Yes:
                run_command(self.scheduler.remove_node(node_id))

        box.finished.connect(done)
        box.open()

    def open_add_dialog(self) -> AddNodeDialog:
        """Open the Add node dialog; on OK pair with the agent it names."""
        dialog = AddNodeDialog(self)
        dialog.accepted.connect(lambda: self._add_from(dialog))
        # deleteLater on finish rather than WA_DeleteOnClose: the latter crashed PySide 6.11
        # when the panel was destroyed with the deferred delete still pending.
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()
        return dialog

    def _add_from(self, dialog: AddNodeDialog) -> None:
        http = dialog.http_node()
        if http is not None:
            self.attach(http)
        else:
            self.pair(dialog.link())

    @async_slot
    async def attach(self, spec: Any) -> None:
        """Add an IOPaint-compatible HTTP endpoint as a node (remembered like a paired one)."""
        self.show_status(f"Adding {spec.url}…")
        try:
            node_id = await self.scheduler.add_node(spec.address, spec.token, "")
        except Exception as exc:
            self.show_status(f"Adding {spec.url} failed: {exc}")
            raise
        self.show_status(f"Added {spec.url}; it is used once it answers.", node_id)

    @async_slot
    async def pair(self, link: Any) -> None:
        """Pair with the agent a link names; the node then shows in the table."""
        self.show_status(f"Pairing with {link.host}:{link.port}…")
        try:
            node_id = await self.scheduler.pair(link)
        except Exception as exc:
            self.show_status(f"Pairing with {link.host}:{link.port} failed: {exc}")
            raise
        node = self.bridge.node(node_id)
        self.show_status(f"Paired with {node.name if node else link.host}.", node_id)
