"""`@async_slot`: run a coroutine from a Qt signal; its failure is logged and shown, never lost."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, overload

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox, QWidget

log = logging.getLogger(__name__)

P = ParamSpec("P")
ErrorHandler = Callable[[QWidget | None, str, BaseException], None]

_pending: set[asyncio.Future[Any]] = set()


def show_error(parent: QWidget | None, title: str, error: BaseException) -> None:
    """Show `error` in a window-modal message box opened with open(), never exec()."""
    show_warning(parent, title, str(error) or type(error).__name__)


def show_warning(parent: QWidget | None, title: str, text: str) -> None:
    """Show `text` in a window-modal warning box opened with open(), never exec()."""
    box = QMessageBox(QMessageBox.Icon.Warning, title, text, parent=parent)
    box.setWindowModality(Qt.WindowModality.WindowModal)
    box.finished.connect(box.deleteLater)
    box.open()


_handler: ErrorHandler = show_error


def set_error_handler(handler: ErrorHandler) -> None:
    """Replace how a failed slot is shown (the main window adds its status bar)."""
    global _handler
    _handler = handler


def _owner_widget(args: tuple[object, ...]) -> QWidget | None:
    """The widget a decorated method belongs to, for parenting the error message."""
    if args and isinstance(args[0], QWidget):
        return args[0].window()
    return None


def is_handled(error: BaseException) -> bool:
    """An error whose message already says, in words, what went wrong and what to do (a bad
    file, an offline download, a refused pairing): the user needs the words, not a traceback."""
    from lama_desktop.cluster.scheduler import PairingFailed  # loaded by then; zmq is heavy
    from lama_desktop.config import ConfigError
    from lama_desktop.engine.base import EngineError
    from lama_desktop.engine.plan import PlanError

    return isinstance(error, EngineError | ConfigError | PlanError | PairingFailed | OSError)


def report(qualname: str, owner: QWidget | None, title: str, error: BaseException) -> None:
    """Log and show a slot's failure, once: a slot awaiting another one that failed gets the
    same exception object, which was already shown."""
    if getattr(error, "_lama_reported", False):
        return
    with contextlib.suppress(AttributeError):  # an exception type without a __dict__
        error._lama_reported = True  # type: ignore[attr-defined]
    if is_handled(error):
        log.warning("%s: %s", title, error)
        log.debug("%s failed", qualname, exc_info=error)
    else:
        log.error("%s failed", qualname, exc_info=error)
    try:
        _handler(owner, title, error)
    except RuntimeError:  # the owner widget was deleted meanwhile
        log.warning("could not show the error of %s", qualname)


@overload
def async_slot(
    func: Callable[P, Coroutine[Any, Any, Any]], *, title: str | None = None
) -> Callable[P, asyncio.Future[Any]]: ...


@overload
def async_slot(
    func: None = None, *, title: str | None = None
) -> Callable[[Callable[P, Coroutine[Any, Any, Any]]], Callable[P, asyncio.Future[Any]]]: ...


def async_slot(func: Any = None, *, title: str | None = None) -> Any:
    """Wrap a coroutine function so a Qt signal can call it (`@async_slot`, or
    `@async_slot(title="Could not open the photo")` to name the failure in the user's words).

    The coroutine is scheduled on the running loop; the returned task is tracked so that
    `cancel_pending()` can stop it at quit. An exception other than cancellation is logged and
    shown to the user once (see `report`).
    """
    if func is None:
        return functools.partial(async_slot, title=title)
    failure = title or func.__name__.strip("_").replace("_", " ").capitalize() + " failed"

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(func(*args, **kwargs))
        _pending.add(task)
        owner = _owner_widget(args)

        def done(finished: asyncio.Future[Any]) -> None:
            _pending.discard(finished)
            if finished.cancelled():
                return
            error = finished.exception()
            if error is not None:
                report(func.__qualname__, owner, failure, error)

        task.add_done_callback(done)
        return task

    return wrapper


def pending_tasks() -> set[asyncio.Future[Any]]:
    """Tasks started by async slots that have not finished yet."""
    return set(_pending)


def cancel_pending() -> list[asyncio.Future[Any]]:
    """Cancel every unfinished async-slot task (at quit); returns them so callers can await."""
    tasks = [task for task in _pending if not task.done()]
    for task in tasks:
        task.cancel()
    return tasks
