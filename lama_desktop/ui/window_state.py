"""The main window's size, place and dock layout between runs, in a small file (no QSettings)."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

from lama_desktop.engine.imageio import write_atomic

log = logging.getLogger(__name__)

FILE_NAME = "window-state.json"


def load_window_state(folder: Path) -> tuple[bytes, bytes] | None:
    """(saveGeometry, saveState) as last stored, or None when there is none or it is damaged."""
    path = folder / FILE_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return base64.b64decode(data["geometry"]), base64.b64decode(data["docks"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the window layout in %s: %s", path, exc)
        return None


def save_window_state(folder: Path, geometry: bytes, docks: bytes) -> None:
    """Store the window's geometry and dock layout atomically (a crash leaves the old file)."""
    text = json.dumps(
        {
            "geometry": base64.b64encode(geometry).decode("ascii"),
            "docks": base64.b64encode(docks).decode("ascii"),
        }
    )
    write_atomic(folder / FILE_NAME, text.encode("utf-8"), overwrite=True)
