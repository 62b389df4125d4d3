"""Nodes panel: rows follow node events in place, states are coloured and explained."""

from __future__ import annotations

from dataclasses import replace

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QMessageBox

from lama_desktop.cluster.events import (
    EventBus,
    JobChanged,
    JobState,
    JobView,
    NodeChanged,
    NodeState,
    NodeView,
)
from lama_desktop.ui.bridge import ClusterBridge
from lama_desktop.ui.nodes_panel import COLUMNS, STATE_COLOURS, NodesPanel, format_bytes

pytestmark = pytest.mark.gui
GiB = 1024**3


class RecordingScheduler:
    """Test double for the scheduler's node commands; it publishes what the real one would."""

    def __init__(self, bus: EventBus, nodes: dict[str, NodeView]) -> None:
        self.bus, self.nodes, self.calls = bus, nodes, []

    def set_node_enabled(self, node_id: str, enabled: bool) -> None:
        self.calls.append(("enabled", node_id, enabled))
        old = self.nodes[node_id]
        state = old.state if enabled else NodeState.DISABLED
        self.nodes[node_id] = NodeView(**{**old.__dict__, "enabled": enabled, "state": state})
        self.bus.publish(NodeChanged(self.nodes[node_id]))

    def remove_node(self, node_id: str) -> None:
        self.calls.append(("remove", node_id))
        self.bus.publish(NodeChanged(self.nodes.pop(node_id), removed=True))


def gpu_node() -> NodeView:
    return NodeView(
        "n2", "studio", "tcp://10.0.0.5:7890", "NVIDIA RTX 4090", NodeState.BUSY,
        slots=2, busy_slots=1, cpu_percent=37.0, ram_used=12 * GiB, ram_total=64 * GiB,
        gpu_util=88.0, vram_used=int(6.5 * GiB), vram_total=24 * GiB, jobs_done=41,
        current_jobs=("b1-42", "edit-7"), throughput=0.5,
    )  # fmt: skip


def local_node() -> NodeView:
    return NodeView(
        "local", "laptop", "tcp://127.0.0.1:40001", "CPU (i7, 8 cores)", NodeState.IDLE,
        local=True,
    )  # fmt: skip


def cell(panel: NodesPanel, row: int, column: str, role=Qt.ItemDataRole.DisplayRole):
    return panel.model.data(panel.model.index(row, COLUMNS.index(column)), role)


def test_table_follows_events_in_place(qtbot) -> None:
    bus = EventBus()
    bus.publish(NodeChanged(local_node()))  # before the bridge: not seen
    bridge = ClusterBridge(bus)
    panel = NodesPanel(bridge, RecordingScheduler(bus, {}))
    qtbot.addWidget(panel)
    resets: list[int] = []
    panel.model.modelReset.connect(lambda: resets.append(1))
    bus.publish(NodeChanged(local_node()))
    bus.publish(NodeChanged(gpu_node()))
    assert panel.model.rowCount() == 2
    assert cell(panel, 0, "Name") == "laptop (this computer)"
    assert cell(panel, 1, "Device") == "NVIDIA RTX 4090"
    assert cell(panel, 1, "GPU") == "88 %"
    assert cell(panel, 1, "VRAM") == "6.5 GiB / 24.0 GiB"
    assert cell(panel, 1, "RAM") == "12.0 GiB / 64.0 GiB"
    assert cell(panel, 1, "CPU") == "37 %"
    assert cell(panel, 1, "Jobs") == "41"
    # Jobs by photo name (an interactive edit has no batch job to name it by).
    assert cell(panel, 1, "Current job") == "photo edit, photo edit"
    bus.publish(JobChanged(JobView("b1-42", "b1", "/photos/IMG_0042.jpg", None, JobState.RUNNING)))
    assert cell(panel, 1, "Current job") == "IMG_0042.jpg, photo edit"
    assert cell(panel, 1, "Throughput") == "30.0/min"

    with qtbot.waitSignal(panel.model.dataChanged) as changed:
        bus.publish(NodeChanged(NodeView(**{**gpu_node().__dict__, "jobs_done": 42})))
    assert changed.args[0].row() == changed.args[1].row() == 1
    assert cell(panel, 1, "Jobs") == "42"
    assert resets == []  # updates never rebuild the model

    bus.publish(NodeChanged(gpu_node(), removed=True))
    assert panel.model.rowCount() == 1 and cell(panel, 0, "Name").startswith("laptop")


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        (NodeState.OFFLINE, "", "no heartbeat for 3 s"),
        (NodeState.REFUSED, "desktop key not authorised", "desktop key not authorised"),
        (NodeState.VERSION_MISMATCH, "agent speaks v2, we speak v1", "v2"),
        (NodeState.STARTING, "", "warming up"),
        (NodeState.DISABLED, "", "no new jobs"),
    ],
)
def test_non_working_states_are_coloured_and_explained(qtbot, state, reason, expected) -> None:
    bus = EventBus()
    bridge = ClusterBridge(bus)
    panel = NodesPanel(bridge, RecordingScheduler(bus, {}))
    qtbot.addWidget(panel)
    bus.publish(NodeChanged(NodeView("x", "old-box", "tcp://10.0.0.9:7890", "CPU", state, reason)))
    label = state.value.replace("-", " ")
    dead = state in (NodeState.OFFLINE, NodeState.REFUSED, NodeState.VERSION_MISMATCH)
    state_text = cell(panel, 0, "State")
    assert state_text.startswith(label)
    # A dead node says why in its row (red), not only in a tooltip; the others stay short.
    assert (expected in state_text) == dead
    assert cell(panel, 0, "State", Qt.ItemDataRole.ForegroundRole) == STATE_COLOURS[state]
    assert expected in cell(panel, 0, "Address", Qt.ItemDataRole.ToolTipRole)
    name_colour = cell(panel, 0, "Name", Qt.ItemDataRole.ForegroundRole)
    assert name_colour == (STATE_COLOURS[state] if dead else QColor("#757575"))
    assert cell(panel, 0, "CPU", Qt.ItemDataRole.ForegroundRole) == QColor("#757575")
    if dead:
        assert name_colour.red() > 150 and name_colour.green() < 80  # red, not grey


@pytest.mark.qt_log_ignore("This plugin does not support")
def test_buttons_disable_enable_remove_and_local_workers(qtbot, monkeypatch) -> None:
    bus = EventBus()
    nodes = {"local": local_node(), "n2": gpu_node()}
    scheduler = RecordingScheduler(bus, nodes)
    bridge = ClusterBridge(bus)
    panel = NodesPanel(bridge, scheduler)
    qtbot.addWidget(panel)
    for n in list(nodes.values()):
        bus.publish(NodeChanged(n))
    assert panel.local_box.isChecked() and not panel.remove_button.isEnabled()

    panel.table.selectRow(1)
    assert panel.remove_button.isEnabled() and panel.enable_button.text() == "Disable"
    panel.enable_button.click()
    assert scheduler.calls[-1] == ("enabled", "n2", False)
    assert cell(panel, 1, "State") == "disabled"
    assert panel.enable_button.text() == "Enable"
    panel.enable_button.click()
    assert scheduler.calls[-1] == ("enabled", "n2", True)

    with qtbot.waitSignal(panel.localWorkersToggled) as toggled:
        panel.local_box.setChecked(False)
    assert toggled.args == [False]
    assert scheduler.calls[-1] == ("enabled", "local", False)
    assert not panel.local_box.isChecked()

    panel.table.selectRow(0)
    local_menu = [a.text() for a in panel.context_menu().actions()]
    assert local_menu == ["Add node…", "Enable"]  # this computer cannot be removed
    panel.table.selectRow(1)
    menu = {a.text(): a for a in panel.context_menu().actions()}
    assert list(menu) == ["Add node…", "Disable", "Remove"]
    menu["Disable"].trigger()
    assert scheduler.calls[-1] == ("enabled", "n2", False)
    panel.enable_button.click()

    # Remove asks first (window-modal box opened with open(), never exec()), saying how many
    # photos run there; afterwards no "Paired with" text about the node is left.
    bus.publish(NodeChanged(replace(nodes["n2"], current_jobs=("j1", "j2"))))
    panel.show_status(f"Paired with {nodes['n2'].name}.", "n2")
    # Another node whose name is part of this one's goes: the line is not about it, and stays.
    other = NodeView("n3", "stud", "tcp://10.0.0.6:7890", "CPU", NodeState.IDLE)
    bus.publish(NodeChanged(other))
    bus.publish(NodeChanged(other, removed=True))
    assert panel.status.text() == "Paired with studio."
    panel.table.selectRow(1)
    panel.remove_button.click()
    box = next(w for w in panel.findChildren(QMessageBox) if w.isVisible())
    assert "working on 2 photo(s) now; they move to other nodes" in box.text()
    assert box.defaultButton() == box.button(QMessageBox.StandardButton.No)
    box.button(QMessageBox.StandardButton.Yes).click()
    assert scheduler.calls[-1] == ("remove", "n2")
    assert panel.model.rowCount() == 1
    assert panel.status.text() == ""


def test_format_bytes() -> None:
    assert format_bytes(None) == ""
    assert format_bytes(512) == "512 B"
    assert format_bytes(300 * 1024**2) == "300 MiB"
    assert format_bytes(int(7.84 * GiB)) == "7.8 GiB"
