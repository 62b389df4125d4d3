"""Without a usable display the app says what is missing instead of letting Qt abort."""

import sys
from pathlib import Path

import pytest

from lama_desktop.display_check import (
    APT_PACKAGES,
    display_problem,
    missing_libraries,
    xcb_plugin_files,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="X11/Wayland")

# What ldd printed for the xcb plugin on a fresh Debian 12 desktop (abridged).
LDD_FRESH_DEBIAN = """\
/x/libqxcb.so:
\tlibQt6XcbQpa.so.6 => /x/lib/libQt6XcbQpa.so.6 (0x00007f)
\tlibxcb-cursor.so.0 => /lib/x86_64-linux-gnu/libxcb-cursor.so.0 (0x00007f)
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
/x/lib/libQt6XcbQpa.so.6:
\tlibxcb-icccm.so.4 => not found
\tlibxcb-keysyms.so.1 => not found
\tlibfoo-unknown.so.3 => not found
"""


def test_no_display_points_at_a_desktop_session_and_batch() -> None:
    problem = display_problem({})
    assert problem is not None and "DISPLAY" in problem and "lama-desktop batch" in problem


def test_a_chosen_qt_platform_or_wayland_is_left_to_qt() -> None:
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}) is None


def test_each_missing_library_is_named_with_its_apt_package_once() -> None:
    problem = display_problem(
        {"DISPLAY": ":0"}, plugin_files=[Path("/x/libqxcb.so")], run=lambda _a: LDD_FRESH_DEBIAN
    )
    assert problem is not None
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1`" in problem
    assert problem.count("libxcb-icccm.so.4") == 1 and "libxcb-cursor0" not in problem
    assert "apt-file search libfoo-unknown.so.3" in problem


def test_nothing_missing_or_no_ldd_leaves_it_to_qt(monkeypatch: pytest.MonkeyPatch) -> None:
    import lama_desktop.display_check as check

    monkeypatch.setattr(check, "cannot_connect", lambda display: False)
    files = [Path("/x/libqxcb.so")]
    assert display_problem({"DISPLAY": ":0"}, files, run=lambda _a: "\tlibc.so.6 => /l\n") is None

    def no_ldd(_args: list[str]) -> str:
        raise FileNotFoundError("ldd")

    assert missing_libraries(files, no_ldd) == []


def test_the_installed_plugin_is_checked_with_the_real_ldd() -> None:
    files = xcb_plugin_files()
    assert files and files[0].name == "libqxcb.so"
    # Every library the real plugin misses on this machine has a known package.
    assert all(lib in APT_PACKAGES for lib in missing_libraries(files))


def test_a_display_without_an_x_server_is_named() -> None:
    # A display number no X server uses, checked with the real libxcb.
    problem = display_problem({"DISPLAY": ":4711"}, [Path("/x/libqxcb.so")], run=lambda _a: "")
    assert problem is not None and "cannot connect to the X display :4711" in problem
