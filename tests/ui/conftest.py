"""UI test fixtures: isolated app folders, a qasync loop over pytest-qt's QApplication, a real
embedded cluster (scheduler + local agent with one OpenCV worker), and a widget leak check."""

from __future__ import annotations

import asyncio
import gc
import io
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from PIL import Image
from pytestqt.exceptions import TimeoutError as QtTimeout

from lama_desktop.config import AppDirs, AppSettings, app_dirs

T = TypeVar("T")


@pytest.fixture
def app_env(isolated_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> AppDirs:
    """The app's folders, all inside the test's temporary folder (LAMA_* set by tests/conftest)."""
    for var in ("LAMA_MODEL", "LAMA_DEVICE", "LAMA_LOCAL_WORKERS", "LAMA_RUN_MODE"):
        monkeypatch.delenv(var, raising=False)
    dirs = app_dirs()
    assert str(dirs.config).startswith(str(isolated_dirs))
    return dirs


class LoopRunner:
    """Runs coroutines on the test's qasync loop from a synchronous test.

    The loop is created "already running": asyncio sees it as the running loop for the whole
    test, and whoever spins Qt's event loop (this runner, qtbot, a QTest call) also serves its
    timers and the cluster's sockets -- as in the app, where Qt's loop is the only loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, qtbot: Any) -> None:
        self.loop = loop
        self._qtbot = qtbot

    def run(self, awaitable: Awaitable[T], timeout: float = 30.0) -> T:
        task = asyncio.ensure_future(awaitable)
        try:
            self._qtbot.waitUntil(task.done, timeout=int(timeout * 1000))
        except QtTimeout:
            where = io.StringIO()
            task.print_stack(file=where)
            task.cancel()
            raise TimeoutError(f"not finished within {timeout} s:\n{where.getvalue()}") from None
        return task.result()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
        """Let the loop run until `predicate()` holds; fail with a clear message otherwise."""
        try:
            self._qtbot.waitUntil(predicate, timeout=int(timeout * 1000))
        except QtTimeout:
            pytest.fail(f"condition not met within {timeout} s: {predicate}")


class Recorder:
    """Records every emission of a Qt signal; `wait` polls on the asyncio loop (never a
    nested Qt loop such as qtbot.waitSignal, which would run zmq callbacks outside asyncio)."""

    def __init__(self, signal: Any) -> None:
        self.calls: list[tuple[Any, ...]] = []
        signal.connect(lambda *args: self.calls.append(args))

    async def wait(self, count: int = 1, timeout: float = 20.0) -> tuple[Any, ...]:
        """Wait until the signal has fired `count` times in all; returns the last arguments."""

        async def poll() -> None:
            while len(self.calls) < count:
                await asyncio.sleep(0.005)

        await asyncio.wait_for(poll(), timeout)
        return self.calls[-1]


@pytest.fixture
def qloop(qapp: Any, qtbot: Any) -> Iterator[LoopRunner]:
    """A qasync event loop over the test QApplication, closed cleanly afterwards."""
    import qasync

    from lama_desktop.ui.async_slot import cancel_pending

    loop = qasync.QEventLoop(qapp, already_running=True)
    asyncio.set_event_loop(loop)
    runner = LoopRunner(loop, qtbot)
    try:
        yield runner
    finally:
        tasks = cancel_pending()
        if tasks:
            runner.run(asyncio.gather(*tasks, return_exceptions=True), timeout=10)
        # loop.stop() would also call QApplication.exit(), which ends the next test's first
        # Qt wait at once; clearing qasync's running flag is all closing needs here.
        loop._QEventLoop__is_running = False  # type: ignore[attr-defined]
        asyncio.events._set_running_loop(None)
        loop.close()
        asyncio.set_event_loop(None)
        # A fresh default policy, as in a new process: later tests that never set a loop
        # get the usual behaviour rather than "no current event loop".
        asyncio.set_event_loop_policy(None)
        # Let the closed loop's leftover Qt timers fire (qasync kills them then), and collect
        # its QObjects here: a collection on some executor thread later would destroy them
        # from the wrong thread.
        qtbot.wait(10)
        del runner, loop
        gc.collect()


@pytest.fixture
def no_leaked_widgets(qapp: Any) -> Iterator[None]:
    """Fail a test that leaves visible top-level widgets behind (closed windows are fine)."""
    before = set(map(id, qapp.topLevelWidgets()))
    yield
    qapp.processEvents()
    leaked = [w for w in qapp.topLevelWidgets() if id(w) not in before and w.isVisible()]
    for widget in leaked:
        widget.close()
    assert not leaked, f"test left windows open: {[type(w).__name__ for w in leaked]}"


@pytest.fixture
def settings() -> AppSettings:
    """Settings for tests: OpenCV (no model file needed), one local worker, manual runs."""
    return AppSettings(
        model="opencv-ns", device="cpu", local_worker_count=1, run_mode="release", brush_size=24
    )


@pytest.fixture
def cluster(qloop: LoopRunner, app_env: AppDirs, settings: AppSettings) -> Iterator[Any]:
    """A real Scheduler and embedded local Agent with one worker subprocess, warmed up."""
    from lama_desktop.app import EmbeddedCluster

    embedded = EmbeddedCluster(settings, app_env)
    qloop.run(embedded.start(), timeout=30)
    try:
        wait_local_ready(qloop, embedded)
        yield embedded
    finally:
        qloop.run(embedded.stop(), timeout=30)


def wait_local_ready(qloop: LoopRunner, embedded: Any, timeout: float = 30.0) -> None:
    """Wait until the local node reports a ready worker (its engine is imported)."""
    from lama_desktop.cluster.events import NodeState

    def ready() -> bool:
        snapshot = embedded.scheduler.snapshot()
        return any(
            n.local and n.state in (NodeState.IDLE, NodeState.BUSY) and n.slots > 0
            for n in snapshot.nodes
        )

    qloop.wait_until(ready, timeout)


def write_photo(path: Path, width: int = 320, height: int = 240, seed: int = 1) -> np.ndarray:
    """A smooth test photo with some texture, saved losslessly or as JPEG by suffix."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // width, y * 255 // height, (x + y) * 127 // (width + height)], -1)
    noise = rng.integers(0, 24, (height, width, 3))
    rgb = np.clip(base + noise, 0, 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)
    return rgb
