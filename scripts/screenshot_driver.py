"""Runs the real app (lama_desktop.app.main) and plays the user for scripts/screenshots.py.

    screenshot_driver.py PHOTO --link LAMA_LINK --batch FOLDER --out DIR --agent-pid PID
        [--suffix -200] [--tray-height 24]

A coroutine on the app's own event loop waits for the main window, fills the screen with it,
paints a mask with real mouse events, pairs the agent through the Add node dialog, queues
FOLDER through the batch dialog, kills the agent (a dead node, its photos move to this
computer) and takes `import -window root` shots: editor, nodes and queue (+ suffix).
On a screen wider than 1000 logical pixels the panels are floated wide; on a small or
high-DPI one they stay docked, as a user there sees them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt, QTimer
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication

REPO = Path(__file__).resolve().parents[1]
log = logging.getLogger("screenshots")


async def until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll `check` while the app keeps running; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise TimeoutError(f"gave up waiting for {what} after {timeout:.0f} s")


async def shoot(path: Path, settle: float = 0.8) -> None:
    """Let Qt repaint, then grab the whole X screen (what a user would see)."""
    await asyncio.sleep(settle)  # never processEvents() here: it would re-enter the loop
    proc = await asyncio.create_subprocess_exec("import", "-window", "root", str(path))
    if await proc.wait() != 0:
        raise RuntimeError(f"import failed for {path}")
    print(f"took {path}", flush=True)


def mouse(widget: Any, kind: QEvent.Type, point: QPointF, buttons: Qt.MouseButton) -> None:
    """Deliver one real mouse event to `widget` (the canvas' own handlers paint the mask)."""
    global_point = QPointF(widget.mapToGlobal(point.toPoint()))
    button = Qt.MouseButton.LeftButton
    if kind == QEvent.Type.MouseMove:
        button = Qt.MouseButton.NoButton
    event = QMouseEvent(kind, point, global_point, button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)


async def paint_mask(editor: Any, mask_file: Path) -> None:
    """Scribble over the object the sample mask marks, as a user would with the brush."""
    with Image.open(mask_file) as mask:
        left, top, right, bottom = mask.convert("L").point(lambda v: 255 if v else 0).getbbox()
    brush = max(16, min(80, (right - left) * 2 // 3))
    editor.size_slider.setValue(brush)  # as a user drags the size slider
    canvas = editor.canvas
    # Overlapping strokes back and forth, as a user covers an object with a broad brush.
    rows = max(1, round((bottom - top) / (brush * 0.6)))
    points = []
    for i in range(rows + 1):
        y = top + (bottom - top) * i / rows
        xs = (left, right) if i % 2 == 0 else (right, left)
        points += [QPointF(xs[0], y), QPointF(xs[1], y)]
    widget_points = [canvas.image_to_widget(p) for p in points]
    held = Qt.MouseButton.LeftButton
    mouse(canvas, QEvent.Type.MouseButtonPress, widget_points[0], held)
    for a, b in itertools.pairwise(widget_points):
        for step in range(1, 9):
            t = step / 8
            mouse(canvas, QEvent.Type.MouseMove, a * (1 - t) + b * t, held)
        await asyncio.sleep(0.01)
    mouse(canvas, QEvent.Type.MouseButtonRelease, widget_points[-1], Qt.MouseButton.NoButton)


def float_dock(dock: Any, geometry: tuple[int, int, int, int]) -> None:
    """Float a dock over the window at `geometry` (x, y, width, height) and bring it up."""
    dock.show()
    dock.setFloating(True)
    dock.setGeometry(*geometry)
    dock.raise_()


async def drive(args: argparse.Namespace) -> None:
    from lama_desktop.cluster.events import BatchState, JobState, NodeState
    from lama_desktop.ui.batch_dialog import BatchDialog
    from lama_desktop.ui.main_window import MainWindow

    def main_window() -> Any:
        return next((w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow)), None)

    window = await until("the main window", lambda: (w := main_window()) and w.isVisible() and w)
    # No window manager under Xvfb: fill the screen by hand, less trayer's strip.
    screen = window.screen().geometry()
    tray = round(args.tray_height / window.devicePixelRatio())
    window.setGeometry(0, 0, screen.width(), screen.height() - tray)
    wide = screen.width() > 1000
    canvas = window.editor.canvas
    await until("the photo", canvas.has_image)
    await until("warm local workers", lambda: "ready" in window.workers_label.text(), 120)
    await paint_mask(
        window.editor, REPO / "resources" / "samples" / "masks" / f"{args.photo.stem}.png"
    )
    await shoot(args.out / f"editor{args.suffix}.png")

    dialog = window.nodes_panel.open_add_dialog()
    dialog.link_edit.setText(args.link)
    dialog.accept()
    working = (NodeState.IDLE, NodeState.BUSY)
    await until(
        "two working nodes",
        lambda: sum(n.state in working and n.slots > 0 for n in window.bridge.nodes()) == 2,
        120,
    )

    window.open_batch_dialog([args.batch])
    batch_dialog = await until("the batch dialog", lambda: window.findChild(BatchDialog))
    await until("the batch plan", lambda: batch_dialog.plan is not None)
    batch_dialog.ok_button.click()
    batch = await until("the batch", lambda: next(iter(window.bridge.batches()), None))
    await until(
        "jobs on both nodes",
        lambda: (
            sum(n.state == NodeState.BUSY for n in window.bridge.nodes()) == 2
            and window.bridge.batch(batch.batch_id).done >= 4
        ),
        120,
    )
    # The spare machine dies mid-batch: its photos move to this computer, its row turns red.
    os.kill(args.agent_pid, signal.SIGKILL)
    await until(
        "the dead node", lambda: any(n.state == NodeState.OFFLINE for n in window.bridge.nodes())
    )
    window.nodes_dock.show()
    window.nodes_dock.raise_()
    if wide:  # floated, the panel shows every column
        float_dock(window.nodes_dock, (30, 150, screen.width() - 60, 240))
    await shoot(args.out / f"nodes{args.suffix}.png")
    window.nodes_dock.setFloating(False)

    panel = window.queue_panel
    window.queue_dock.show()
    window.queue_dock.raise_()
    if wide:
        float_dock(window.queue_dock, (30, 40, screen.width() - 60, screen.height() - 110))
    panel.tree.expand(panel.model.batch_index(batch.batch_id))
    failed = await until(
        "the cut-short photo to fail",
        lambda: next(
            (j for j in window.bridge.jobs(batch.batch_id) if j.state == JobState.FAILED), None
        ),
    )
    await until("a third of the batch", lambda: window.bridge.batch(batch.batch_id).done >= 16, 120)
    if window.bridge.batch(batch.batch_id).state != BatchState.RUNNING:
        raise RuntimeError("the batch finished before the Queue screenshot; add more photos")
    # The failed photo selected: its reason in full under the list.
    parent = panel.model.batch_index(batch.batch_id)
    row = next(
        r
        for r in range(panel.model.rowCount(parent))
        if panel.model.item(panel.model.index(r, 0, parent)).job_id == failed.job_id
    )
    panel.tree.setCurrentIndex(panel.model.index(row, 0, parent))
    panel.tree.scrollTo(panel.model.index(max(0, row - 2), 0, parent))
    await shoot(args.out / f"queue{args.suffix}.png", settle=0.3)

    window.queue_dock.setFloating(False)
    window.scheduler.pause()  # the journal keeps the rest; quitting needs no question then
    await asyncio.sleep(0.5)
    window.quitConfirmed.emit()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo", type=Path)
    parser.add_argument("--link", required=True)
    parser.add_argument("--batch", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--agent-pid", type=int, required=True)
    parser.add_argument("--suffix", default="")
    parser.add_argument("--tray-height", type=int, default=24, help="in screen pixels")
    args = parser.parse_args()
    app = QApplication(sys.argv[:1])  # app.main() reuses it
    failed: list[str] = []

    def start() -> None:
        task = asyncio.ensure_future(drive(args))

        def done(finished: asyncio.Future[None]) -> None:
            if not finished.cancelled() and finished.exception() is not None:
                error = finished.exception()
                failed.append("".join(traceback.format_exception(error)))
                print(failed[-1], file=sys.stderr, flush=True)
                QApplication.instance().aboutToQuit.emit()  # app.run() stops on it

        task.add_done_callback(done)

    QTimer.singleShot(0, start)
    from lama_desktop.app import main as app_main

    code = app_main(str(args.photo))
    del app
    return 1 if failed else code


if __name__ == "__main__":
    sys.exit(main())
