"""ClusterBridge: events become Qt signals on the GUI thread and the latest views are kept."""

from __future__ import annotations

import threading

import pytest
from PySide6.QtCore import QThread

from lama_desktop.cluster.events import (
    BatchChanged,
    BatchState,
    BatchView,
    EventBus,
    JobChanged,
    JobState,
    JobView,
    NodeChanged,
    NodeState,
    NodeView,
    QueuePaused,
    Snapshot,
)
from lama_desktop.ui.bridge import ClusterBridge

pytestmark = pytest.mark.gui


def node(node_id: str = "n1", state: NodeState = NodeState.IDLE, **kw: object) -> NodeView:
    return NodeView(node_id, f"box-{node_id}", "tcp://127.0.0.1:7890", "CPU", state, **kw)  # type: ignore[arg-type]


def batch(batch_id: str = "b1", **kw: object) -> BatchView:
    fields: dict[str, object] = {"state": BatchState.RUNNING, "total": 4}
    fields.update(kw)
    return BatchView(batch_id, f"batch {batch_id}", "/tmp/out", **fields)  # type: ignore[arg-type]


def job(job_id: str, batch_id: str = "b1", **kw: object) -> JobView:
    fields: dict[str, object] = {"state": JobState.QUEUED}
    fields.update(kw)
    return JobView(job_id, batch_id, f"/photos/{job_id}.jpg", None, **fields)  # type: ignore[arg-type]


def test_events_become_signals_and_state(qtbot) -> None:
    bus = EventBus()
    bridge = ClusterBridge(bus)
    with qtbot.waitSignal(bridge.nodeChanged) as got:
        bus.publish(NodeChanged(node("n1")))
    assert got.args[0].node.node_id == "n1"
    bus.publish(NodeChanged(node("n1", NodeState.BUSY)))
    assert [n.state for n in bridge.nodes()] == [NodeState.BUSY]

    bus.publish(BatchChanged(batch("b1", position=1)))
    bus.publish(BatchChanged(batch("b2", position=0)))
    assert [b.batch_id for b in bridge.batches()] == ["b2", "b1"]
    bus.publish(JobChanged(job("j1")))
    bus.publish(JobChanged(job("j2")))
    bus.publish(JobChanged(job("j1", state=JobState.DONE)))
    assert [(j.job_id, j.state) for j in bridge.jobs("b1")] == [
        ("j1", JobState.DONE),
        ("j2", JobState.QUEUED),
    ]
    # An interactive edit (no batch) never shows in the queue.
    bus.publish(JobChanged(JobView("edit", None, "photo", None, JobState.RUNNING)))
    assert bridge.jobs("b1")[-1].job_id == "j2"

    with qtbot.waitSignal(bridge.pausedChanged) as paused:
        bus.publish(QueuePaused(True))
    assert paused.args == [True] and bridge.is_paused()
    # The same state again is no change: no signal.
    with qtbot.assertNotEmitted(bridge.pausedChanged):
        bus.publish(QueuePaused(True))

    bus.publish(NodeChanged(node("n1", NodeState.OFFLINE), removed=True))
    bus.publish(BatchChanged(batch("b1"), removed=True))
    assert bridge.nodes() == [] and bridge.jobs("b1") == []
    assert [b.batch_id for b in bridge.batches()] == ["b2"]
    bridge.close()
    assert bus._listeners == []


def test_starts_from_a_snapshot_and_resets_on_a_new_one(qtbot) -> None:
    first = Snapshot((node("a"),), (batch("b1"),), (job("j1"),), paused=True)
    bus = EventBus(snapshot_source=lambda: first)
    bridge = ClusterBridge(bus)
    assert [n.node_id for n in bridge.nodes()] == ["a"]
    assert [j.job_id for j in bridge.jobs("b1")] == ["j1"] and bridge.is_paused()
    second = Snapshot((node("b"),), (), (), paused=False)
    with qtbot.waitSignal(bridge.snapshotReady):
        bus.publish(second)
    assert [n.node_id for n in bridge.nodes()] == ["b"]
    assert bridge.batches() == [] and not bridge.is_paused()
    bridge.close()


def test_events_from_another_thread_arrive_on_the_gui_thread(qtbot) -> None:
    bus = EventBus()
    bridge = ClusterBridge(bus)
    seen: list[bool] = []
    bridge.nodeChanged.connect(lambda _e: seen.append(QThread.currentThread() is bridge.thread()))
    worker = threading.Thread(target=lambda: bus.publish(NodeChanged(node("far"))))
    worker.start()
    worker.join()
    assert seen == []  # queued: nothing ran on the publishing thread
    qtbot.waitUntil(lambda: seen == [True], timeout=2000)
    assert bridge.node("far") is not None
    bridge.close()


def test_deleted_bridge_leaves_the_bus(qtbot) -> None:
    bus = EventBus()
    bridge = ClusterBridge(bus)
    assert len(bus._listeners) == 1
    bridge.deleteLater()
    qtbot.waitUntil(lambda: bus._listeners == [], timeout=2000)


def test_panels_import_nothing_heavy() -> None:
    """The panels load at start-up: no torch, cv2 or zeroconf (~0.2 s) until really needed."""
    import subprocess
    import sys

    code = (
        "import sys, lama_desktop.ui.nodes_panel, lama_desktop.ui.queue_panel, "
        "lama_desktop.ui.tray, lama_desktop.ui.batch_dialog, lama_desktop.ui.add_node_dialog\n"
        "print(sorted(m for m in ('torch', 'cv2', 'zeroconf') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
