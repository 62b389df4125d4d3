"""Without a usable display the app says what is missing instead of letting Qt abort."""

import sys

import pytest

from lama_desktop.app import display_problem

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland")


def test_no_display_points_at_a_desktop_session_and_batch() -> None:
    problem = display_problem({})
    assert problem is not None and "DISPLAY" in problem and "lama-desktop batch" in problem


def test_a_chosen_qt_platform_or_wayland_is_left_to_qt() -> None:
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}) is None


def test_x11_without_the_cursor_library_names_the_package(monkeypatch: pytest.MonkeyPatch) -> None:
    import ctypes.util

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    problem = display_problem({"DISPLAY": ":0"})
    assert problem is not None and "libxcb-cursor0" in problem
