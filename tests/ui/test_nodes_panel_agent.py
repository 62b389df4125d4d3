"""A real `lama-agent` subprocess joining, then killed, shows in the Nodes panel within 3 s."""

from __future__ import annotations

import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from lama_desktop.cluster.events import NodeState
from lama_desktop.cluster.keys import PairingLink, load_or_create_keypair
from lama_desktop.cluster.scheduler import Scheduler
from lama_desktop.ui.bridge import ClusterBridge
from lama_desktop.ui.nodes_panel import COLUMNS, NodesPanel

pytestmark = [pytest.mark.gui, pytest.mark.integration]
AGENT = str(Path(sys.executable).with_name("lama-agent"))


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], PairingLink]]:
    """`lama-agent` on 127.0.0.1 with no workers (joining needs no engine), and its link."""
    log = (tmp_path / "agent.log").open("w")
    proc = subprocess.Popen(
        [AGENT, "--data-dir", str(tmp_path / "agent"), "--bind", "tcp://127.0.0.1:0",
         "--workers", "0", "--device", "cpu", "--name", "spare-box", "--no-announce"],
        stdout=subprocess.PIPE, stderr=log, text=True,
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        link = None
        while link is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=deadline - time.monotonic()).strip()
            except queue.Empty:
                break
            if line.startswith("lama://"):
                link = PairingLink.parse(line)
        assert link is not None, f"no pairing link; log: {(tmp_path / 'agent.log').read_text()}"
        yield proc, link
    finally:
        proc.kill()
        proc.wait(10)
        reader.join(5)  # EOF once the agent is gone
        proc.stdout.close()
        log.close()


def state_of(panel: NodesPanel, name: str) -> str | None:
    model = panel.model
    for row in range(model.rowCount()):
        if model.data(model.index(row, 0), Qt.ItemDataRole.DisplayRole) == name:
            return model.data(model.index(row, COLUMNS.index("State")))
    return None


def test_agent_joins_and_dies_in_the_nodes_panel(qtbot, qloop, tmp_path: Path, agent) -> None:
    proc, link = agent
    scheduler = Scheduler(
        journal=tmp_path / "journal.sqlite3",
        keypair=load_or_create_keypair(tmp_path / "desktop.key"),
        name="test desktop",
    )
    qloop.run(scheduler.start())
    try:
        bridge = ClusterBridge(scheduler.events)
        panel = NodesPanel(bridge, scheduler)
        qtbot.addWidget(panel)
        qloop.run(scheduler.pair(link), timeout=15)
        joined = time.monotonic()
        qloop.wait_until(lambda: state_of(panel, "spare-box") == "idle", timeout=3)
        assert time.monotonic() - joined < 3
        row_tip = panel.model.data(panel.model.index(0, 0), Qt.ItemDataRole.ToolTipRole)
        assert row_tip == "spare-box: idle"
        assert panel.model.data(panel.model.index(0, COLUMNS.index("Address"))) == link.address

        proc.kill()
        killed = time.monotonic()
        # "offline: connection lost": the reason is in the row, not only in its tooltip.
        qloop.wait_until(lambda: state_of(panel, "spare-box").startswith("offline: "), timeout=3)
        assert time.monotonic() - killed < 3
        node = bridge.nodes()[0]
        assert node.state == NodeState.OFFLINE
        tip = panel.model.data(panel.model.index(0, 0), Qt.ItemDataRole.ToolTipRole)
        assert "offline" in tip and len(tip.splitlines()) == 2  # the reason is shown
    finally:
        qloop.run(scheduler.stop())
