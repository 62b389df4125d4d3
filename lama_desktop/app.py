"""The desktop app: Qt + qasync loop; the window first, then the scheduler and local agent."""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

from lama_desktop.config import (
    LOG_FILE,
    AppDirs,
    AppSettings,
    ConfigError,
    app_dirs,
    load_settings,
)
from lama_desktop.display_check import display_problem

log = logging.getLogger("lama_desktop.app")

# Set by tests and benchmarks: quit on its own once the window is shown and the cluster is up,
# writing a JSON report (timings, memory, whether torch was imported) to this path.
STARTUP_REPORT_ENV = "LAMA_STARTUP_REPORT"
# Seconds since the process started at each step of the start-up (for the startup report).
phases: dict[str, float] = {}


def setup_logging(log_dir: Path) -> Path:
    """Log to a rotating file in `log_dir` (Help > Logs shows it) and warnings to stderr."""
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / LOG_FILE
    handler = RotatingFileHandler(path, maxBytes=5_000_000, backupCount=3, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    console = logging.StreamHandler()
    console.setLevel(logging.WARNING)
    root.addHandler(console)
    return path


def _install_exception_hooks(loop: asyncio.AbstractEventLoop) -> None:
    """An exception in a plain slot or a stray task reaches the log instead of vanishing."""

    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        log.error("uncaught exception", exc_info=(kind, value, tb))

    def loop_handler(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        error = context.get("exception")
        log.error("event loop: %s", context.get("message"), exc_info=error)

    sys.excepthook = excepthook
    loop.set_exception_handler(loop_handler)


GUI_SWITCH_INTERVAL_S = 0.001  # see EmbeddedCluster


class EmbeddedCluster:
    """The scheduler and this computer's own agent, started after the window is up."""

    def __init__(self, settings: AppSettings, dirs: AppDirs) -> None:
        from lama_desktop.cluster.keys import load_or_create_keypair
        from lama_desktop.cluster.scheduler import Scheduler

        dirs.data.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        self.dirs = dirs
        # The GUI thread shares the GIL with the local agent's thread and the journal and I/O
        # threads. Every call into Qt lets the GIL go, and taking it back can cost a whole
        # switch interval while one of them runs Python (5 ms by default): at the start of a
        # 100,000-photo batch one flush of the panels held the GUI loop for over half a second.
        sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)
        self.keypair = load_or_create_keypair(dirs.keypair)
        self.scheduler = Scheduler(
            journal=dirs.journal,
            keypair=self.keypair,
            name=socket.gethostname(),
            job_timeout=settings.job_timeout,
            pause_collector=True,  # its loop is the GUI's: no full collection while queuing
        )
        self.agent: Any = None
        self.local_node: str | None = None

    async def start(self) -> None:
        """Start the scheduler (it resumes unfinished batches), then the local agent."""
        from lama_desktop.cluster.agent import Agent
        from lama_desktop.cluster.agent_thread import AgentThread
        from lama_desktop.cluster.keys import load_or_create_keypair

        await self.scheduler.start()
        agent_dir = self.dirs.data / "local-agent"
        agent_dir.mkdir(parents=True, exist_ok=True)
        agent = Agent(
            "tcp://127.0.0.1:0",
            data_dir=agent_dir,
            workers=self.settings.workers(),  # type: ignore[arg-type]
            device=self.settings.device,
            name=f"{socket.gethostname()} (this computer)",
            keypair=load_or_create_keypair(agent_dir / "agent.key"),
            preauthorized=[self.keypair.public],
            log_file=False,  # the app's own log already holds the agent's lines
            worker_log_level="INFO",  # relogged here: the log file has them, the terminal not
        )
        # On its own thread and loop: a busy GUI must not silence its heartbeats (issue 8).
        self.agent = AgentThread(agent)
        await self.agent.start()
        self.local_node = await self.scheduler.add_node(
            self.agent.endpoint, self.agent.public_key, self.agent.name, local=True
        )

    async def stop(self) -> None:
        """Stop the scheduler (the journal keeps unfinished work), then the local agent."""
        # The desktop says goodbye first, so it is not told "agent leaving" while closing.
        await self.scheduler.stop()
        if self.agent is not None:
            await self.agent.stop(drain=False)


async def run(
    app: Any,
    settings: AppSettings,
    dirs: AppDirs,
    photo: str | None,
    preload: threading.Thread | None = None,
    instance: Any = None,
) -> int:
    """Show the window, start the cluster, wait for a confirmed quit, then stop everything."""
    from lama_desktop.ui.async_slot import cancel_pending
    from lama_desktop.ui.bridge import ClusterBridge
    from lama_desktop.ui.main_window import MainWindow

    started = _process_start()
    phases["run"] = time.time() - started
    if preload is not None:
        preload.join()
    cluster = EmbeddedCluster(settings, dirs)
    phases["cluster_built"] = time.time() - started
    # Events reach the panels once per frame: a 100,000-photo batch must not repaint per job.
    bridge = ClusterBridge(cluster.scheduler.events, coalesce_ms=25)
    window = MainWindow(cluster.scheduler, bridge, settings, dirs=dirs)
    phases["window_built"] = time.time() - started
    quit_requested = asyncio.Event()
    window.quitConfirmed.connect(quit_requested.set)
    app.aboutToQuit.connect(quit_requested.set)
    _quit_on_signals(asyncio.get_running_loop(), quit_requested)
    window.show()
    if instance is not None:
        from lama_desktop.ui.single_instance import serve_window

        serve_window(instance, window)  # a later `lama-desktop PHOTO` opens it here
    await asyncio.sleep(0)  # one loop turn: Qt paints the window before the cluster starts
    shown_s = time.time() - started
    cpu = os.times()
    phases["cpu_at_shown"] = cpu.user + cpu.system  # CPU seconds, not wall: load-independent
    log.info("window shown %.2f s after the process started", shown_s)
    if photo:
        window.open_path(Path(photo))
    try:
        await cluster.start()
        window.set_agent(cluster.agent)
    except Exception as exc:
        log.exception("the local cluster did not start")
        window.statusBar().showMessage(f"The local workers did not start: {exc}")
    api = _serve_api_as_set(cluster.scheduler, window, settings)
    report = os.environ.get(STARTUP_REPORT_ENV)
    if report:
        await _write_startup_report(Path(report), window, shown_s, started, phases)
        quit_requested.set()
    await quit_requested.wait()
    # Each slot task logs its own failure; here they only need to be finished before the stop.
    await asyncio.gather(*cancel_pending(), return_exceptions=True)
    await api.stop_now()
    await cluster.stop()
    window.shutdown()
    window.deleteLater()
    bridge.deleteLater()
    await asyncio.sleep(0)
    return 0


class _ApiSetting:
    """The setting "Serve the IOPaint API" over the cluster's ApiSwitch, which (with aiohttp,
    ~0.3 s to import) is loaded only once the setting is on: it is off for most starts."""

    def __init__(self, scheduler: Any) -> None:
        self._scheduler = scheduler
        self._switch: Any = None

    @property
    def service(self) -> Any:
        return None if self._switch is None else self._switch.service

    async def apply(self, new: AppSettings) -> str:
        """Serve as `new` says, or stop; a line for the status bar ("" when nothing to say)."""
        if self._switch is None and not new.serve_api:
            return ""
        from lama_desktop.cluster.serving import ApiSwitch, ServeOptions

        if self._switch is None:
            self._switch = ApiSwitch(self._scheduler)
        options = ServeOptions(new.serve_host, new.serve_port, new.model, new.serve_token or None)
        return str(await self._switch.apply(new.serve_api, options))

    async def stop_now(self) -> None:
        if self._switch is not None:
            await self._switch.stop_now()


def _serve_api_as_set(scheduler: Any, window: Any, settings: AppSettings) -> _ApiSetting:
    """The setting "Serve the IOPaint API": applied now and whenever settings are applied."""
    switch = _ApiSetting(scheduler)
    tasks: set[asyncio.Task[None]] = set()

    async def apply(new: AppSettings) -> None:
        message = await switch.apply(new)
        if message:
            window.statusBar().showMessage(message)

    def schedule(new: AppSettings) -> None:
        task = asyncio.ensure_future(apply(new))
        tasks.add(task)  # held until done: the loop keeps tasks only weakly
        task.add_done_callback(tasks.discard)

    window.settingsApplied.connect(schedule)
    schedule(settings)
    return switch


def _quit_on_signals(loop: asyncio.AbstractEventLoop, quit_requested: asyncio.Event) -> None:
    """SIGTERM and Ctrl-C quit the same clean way as File > Quit (without the questions)."""

    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: quitting", signum)
        loop.call_soon_threadsafe(quit_requested.set)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)


def _process_start() -> float:
    import psutil

    return float(psutil.Process().create_time())


async def _write_startup_report(
    path: Path,
    window: Any,
    shown_s: float,
    started: float,
    phases: dict[str, float],
    warm_timeout: float = 60.0,
) -> None:
    """Wait (bounded) for the local workers to be ready, then record what the GUI holds."""
    import psutil

    cluster_up_s = time.time() - started
    deadline = time.monotonic() + warm_timeout
    while time.monotonic() < deadline and "ready" not in window.workers_label.text():
        await asyncio.sleep(0.05)
    report = {
        "window_shown_s": shown_s,
        "phases_s": phases,
        "cluster_up_s": cluster_up_s,
        "workers_ready_s": time.time() - started,
        "workers": window.workers_label.text(),
        "editor_path": str(window.editor.path) if window.editor.path else None,
        "rss_bytes": psutil.Process().memory_info().rss,
        "torch_imported": "torch" in sys.modules,
        "cv2_imported": "cv2" in sys.modules,
        "pid": os.getpid(),
    }
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")


def _preload(module: str) -> threading.Thread:
    """Import `module` on a thread while the main thread starts Qt; much of an import is file
    reading and library loading, so the two overlap even with the GIL."""
    thread = threading.Thread(
        target=importlib.import_module, args=(module,), name="preload", daemon=True
    )
    thread.start()
    return thread


def _hand_off(name: str, photo: str | None) -> int:
    """A second start: the running app opens `photo` and comes to the front."""
    from lama_desktop.ui.single_instance import hand_off

    if hand_off(name, photo):
        shown = "the photo opens there" if photo else "its window comes to the front"
        print(f"lama-desktop: Lama Desktop is already running; {shown}.")
        return 0
    print(
        "lama-desktop: another Lama Desktop holds this data folder but does not answer; "
        "quit it (or end its process) and start again.",
        file=sys.stderr,
    )
    return 1


def main(photo: str | None = None) -> int:
    """Start the desktop app; returns the process exit code."""
    problem = display_problem()
    if problem is not None:
        print(f"lama-desktop: {problem}", file=sys.stderr)
        return 1
    from lama_desktop.ui.single_instance import SingleInstance

    dirs = app_dirs()
    instance = SingleInstance(dirs.data)
    if not instance.claim():  # another app runs on this data folder: no second scheduler
        return _hand_off(instance.name, photo)
    preload = _preload("lama_desktop.cluster.scheduler")
    import qasync
    from PySide6.QtGui import QIcon
    from PySide6.QtWidgets import QApplication

    phases["main"] = time.time() - _process_start()
    setup_logging(dirs.log)
    try:
        settings = load_settings(dirs.settings_file)
    except ConfigError as exc:
        print(f"lama-desktop: {exc}", file=sys.stderr)
        return 2
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Lama Desktop")
    app.setDesktopFileName("lama-desktop")
    app.setWindowIcon(QIcon(str(Path(__file__).parent / "resources" / "lama-desktop.svg")))
    app.setQuitOnLastWindowClosed(False)  # the tray keeps the app; quitting is explicit
    phases["qapplication"] = time.time() - _process_start()
    instance.listen()
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    _install_exception_hooks(loop)
    try:
        task = loop.create_task(run(app, settings, dirs, photo, preload, instance))
        for _attempt in range(3):
            try:
                return loop.run_until_complete(task)
            except RuntimeError:
                if task.done():
                    raise
                # Qt's loop was ended from outside (the session is ending): run it again so
                # the quit path can stop the cluster and keep the journal consistent.
                log.info("Qt's event loop ended from outside; finishing the shutdown")
        return 1
    finally:
        instance.release()
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
        asyncio.set_event_loop(None)
