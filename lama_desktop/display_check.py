"""Why a window cannot open on this Linux machine: no display, or X11 libraries Qt lacks."""

from __future__ import annotations

import ctypes
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

# The xcb platform plugin and the Qt library it is built on, inside the PySide6 package.
XCB_PLUGIN_FILES = ("Qt/plugins/platforms/libqxcb.so", "Qt/lib/libQt6XcbQpa.so.6")

# The Debian/Ubuntu package that ships each system library the xcb plugin loads (what `ldd`
# lists for it, Qt's own libraries aside). Ubuntu 24.04 renamed a few (libglib2.0-0t64,
# libpng16-16t64); apt installs those for the old names, so one list serves both.
APT_PACKAGES = {
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libGLX.so.0": "libglx0",
    "libGLdispatch.so.0": "libglvnd0",
    "libOpenGL.so.0": "libopengl0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libXau.so.6": "libxau6",
    "libXdmcp.so.6": "libxdmcp6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libexpat.so.1": "libexpat1",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libpng16.so.16": "libpng16-16",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xinput.so.0": "libxcb-xinput0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libz.so.1": "zlib1g",
    "libzstd.so.1": "libzstd1",
}

_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.MULTILINE)

Runner = Callable[[list[str]], str]


def xcb_plugin_files() -> list[Path]:
    """The xcb plugin files of the installed PySide6 (found without importing it)."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return []
    root = Path(next(iter(spec.submodule_search_locations)))
    return [root / name for name in XCB_PLUGIN_FILES if (root / name).exists()]


def _ldd(args: list[str]) -> str:
    result = subprocess.run(["ldd", *args], capture_output=True, text=True, timeout=20, check=False)
    return result.stdout


def missing_libraries(files: Iterable[Path], run: Runner = _ldd) -> list[str]:
    """The libraries `ldd` cannot find for `files` (in the order it lists them, once each).

    An ldd that is absent or fails says nothing: Qt then reports the problem itself.
    """
    paths = [str(path) for path in files]
    if not paths:
        return []
    try:
        output = run(paths)
    except (OSError, subprocess.SubprocessError):
        return []
    return list(dict.fromkeys(_NOT_FOUND.findall(output)))


def install_hint(libraries: list[str]) -> str:
    """One sentence: the `apt-get install` line for the known libraries, and the unknown ones."""
    packages = sorted({APT_PACKAGES[lib] for lib in libraries if lib in APT_PACKAGES})
    unknown = [lib for lib in libraries if lib not in APT_PACKAGES]
    parts = []
    if packages:
        line = f"sudo apt-get install {' '.join(packages)}"
        parts.append(f"install them with `{line}` (Debian/Ubuntu)")
    if unknown:
        parts.append(
            f"find the package for {', '.join(unknown)} with `apt-file search {unknown[0]}`"
        )
    return " and ".join(parts)


def cannot_connect(display: str) -> bool:
    """True when libxcb cannot open `display` (no X server there, or not allowed in): Qt would
    then abort with a message about xcb-cursor0 that is not the problem."""
    try:
        xcb = ctypes.CDLL("libxcb.so.1")
    except OSError:  # no libxcb: the library check above names it
        return False
    xcb.xcb_connect.restype = ctypes.c_void_p
    xcb.xcb_connect.argtypes = [ctypes.c_char_p, ctypes.c_void_p]
    xcb.xcb_connection_has_error.argtypes = [ctypes.c_void_p]
    xcb.xcb_disconnect.argtypes = [ctypes.c_void_p]
    connection = xcb.xcb_connect(display.encode(), None)  # never NULL; errors are flagged
    failed = bool(xcb.xcb_connection_has_error(connection))
    xcb.xcb_disconnect(connection)
    return failed


def display_problem(
    environ: dict[str, str] | None = None,
    plugin_files: list[Path] | None = None,
    run: Runner = _ldd,
) -> str | None:
    """Why a window cannot open here (Linux without a display or X11 libraries), or None.

    Qt would abort the process with a platform-plugin message that points at reinstalling;
    this says what is really missing: the display, or each library and its apt package.
    """
    env = os.environ if environ is None else environ
    if not sys.platform.startswith("linux") or env.get("QT_QPA_PLATFORM"):
        return None
    if not env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        return (
            "no display to open the window on (neither DISPLAY nor WAYLAND_DISPLAY is set). "
            "Start it from a desktop session, or clean photos without a window: "
            "`lama-desktop batch PHOTOS --masks MASKS --out OUT`."
        )
    if env.get("DISPLAY") and not env.get("WAYLAND_DISPLAY"):
        files = xcb_plugin_files() if plugin_files is None else plugin_files
        missing = missing_libraries(files, run)
        if missing:
            return (
                f"Qt needs X11 libraries that are not installed ({', '.join(missing)}): "
                f"{install_hint(missing)}, then start again."
            )
        if cannot_connect(env["DISPLAY"]):
            return (
                f"cannot connect to the X display {env['DISPLAY']} (no X server there, or this "
                "user may not use it). Start it from a desktop session, or clean photos without "
                "a window: `lama-desktop batch PHOTOS --masks MASKS --out OUT`."
            )
    return None
