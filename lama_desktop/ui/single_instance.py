"""One app per user and data folder: a second start hands its photo to the running one."""

from __future__ import annotations

import getpass
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QLockFile, QObject, Qt
from PySide6.QtNetwork import QLocalServer, QLocalSocket

log = logging.getLogger(__name__)

LOCK_FILE = "instance.lock"
HANDOFF_TIMEOUT_S = 5.0  # the running app may still be between taking the lock and listening

Handler = Callable[[Path | None], None]


def server_name(data_dir: Path) -> str:
    """The local socket's name: per user and per data folder, so test runs never collide."""
    digest = hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:16]
    return f"lama-desktop-{getpass.getuser()}-{digest}"


class SingleInstance(QObject):
    """The first start holds a lock file in the data folder and listens on a local socket;
    a later start finds the lock held and sends its photo there instead of starting again.

    A crashed app leaves both behind: QLockFile sees that the process in the lock file is dead,
    and the socket file is removed before listening, since only the lock's holder listens.
    """

    def __init__(self, data_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.name = server_name(data_dir)
        self._lock = QLockFile(str(data_dir / LOCK_FILE))
        self._lock.setStaleLockTime(0)  # stale only when its process is gone, never by age
        self._server: QLocalServer | None = None
        self._handler: Handler | None = None
        self._waiting: list[Path | None] = []  # requests that came before the window

    def claim(self) -> bool:
        """Become the running app (True), or find that another one is (False). Needs no
        QApplication, so a second start can hand off before creating one."""
        return bool(self._lock.tryLock(0))

    def listen(self) -> None:
        """Wait for later starts (once the QApplication exists; only the lock's holder)."""
        QLocalServer.removeServer(self.name)  # a crashed app's socket file
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            # The app still works; only the hand-off from a second start is lost.
            log.warning("cannot listen for a second start: %s", server.errorString())
            return
        server.newConnection.connect(self._on_connection)
        self._server = server

    def is_listening(self) -> bool:
        return self._server is not None and self._server.isListening()

    def serve(self, handler: Handler) -> None:
        """Call `handler` with each photo a later start asks for (None: just show the window)."""
        self._handler = handler
        waiting, self._waiting = self._waiting, []
        for photo in waiting:
            handler(photo)

    def release(self) -> None:
        """Stop listening and free the lock (the app is ending)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self._lock.unlock()

    def _on_connection(self) -> None:
        assert self._server is not None
        while (sock := self._server.nextPendingConnection()) is not None:
            sock.readyRead.connect(lambda s=sock: self._on_ready(s))
            sock.disconnected.connect(sock.deleteLater)

    def _on_ready(self, sock: QLocalSocket) -> None:
        if not sock.canReadLine():
            return
        line = bytes(sock.readLine().data()).decode("utf-8", "replace")
        try:
            request = json.loads(line)
            photo = Path(request["open"]) if request.get("open") else None
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored a malformed request from a second start: %r", line[:200])
            sock.disconnectFromServer()
            return
        log.info("a second start asked to open %s", photo or "the window")
        sock.write(b"ok\n")
        sock.flush()
        if self._handler is None:
            self._waiting.append(photo)
        else:
            self._handler(photo)


def hand_off(name: str, photo: str | None, timeout: float = HANDOFF_TIMEOUT_S) -> bool:
    """Ask the app listening on `name` to open `photo` (or just to show itself); True once it
    has answered. Blocking: called before this process has an event loop."""
    message = json.dumps({"open": str(Path(photo).resolve()) if photo else None}) + "\n"
    deadline = time.monotonic() + timeout
    sock = QLocalSocket()
    try:
        while True:
            sock.connectToServer(name)
            if sock.waitForConnected(500):
                break
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)
        sock.write(message.encode("utf-8"))
        if not sock.waitForBytesWritten(int(timeout * 1000)):
            return False
        while not sock.canReadLine():
            if not sock.waitForReadyRead(int(timeout * 1000)):
                return False
        return bytes(sock.readLine().data()).strip() == b"ok"
    finally:
        sock.abort()


def bring_to_front(window: Any) -> None:
    """Show the window (it may be in the tray or minimised) above the others."""
    window.setWindowState(window.windowState() & ~Qt.WindowState.WindowMinimized)
    window.show()
    window.raise_()
    window.activateWindow()


def serve_window(instance: SingleInstance, window: Any) -> None:
    """Photos from a later start open in `window` (which asks about unsaved edits first)."""

    def handle(photo: Path | None) -> None:
        bring_to_front(window)
        if photo is not None:
            window.open_path(photo)

    instance.serve(handle)
