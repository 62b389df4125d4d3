"""Test engine that kills its worker with os.abort() on a marked image, else inpaints with OpenCV.

Workers import it through LAMA_PLUGINS=tests.plugins.crashy_engine. An image whose top-left
pixel is MARKER aborts the process (as a segfaulting native library would), SLOW_MARKER makes
it hang, PAUSE_MARKER slows it down, RAISE_MARKER warns and raises; any other image is
inpainted exactly like OpenCV Telea, so results compare by pixels.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import ClassVar

import numpy as np

from lama_desktop.engine.base import register
from lama_desktop.engine.opencv import OpenCVTelea

MARKER = (255, 0, 255)  # magenta: abort
SLOW_MARKER = (0, 255, 255)  # cyan: hang for a minute (for cancel tests)
PAUSE_MARKER = (255, 255, 0)  # yellow: take 1.5 s, then inpaint (for drain tests)
RAISE_MARKER = (0, 0, 255)  # blue: warn, then raise (a bug in the engine; for worker logs)


def is_marked(image: np.ndarray) -> bool:
    """True when the image's top-left pixel is the crash marker."""
    return tuple(int(c) for c in image[0, 0]) == MARKER


@register
class CrashyEngine(OpenCVTelea):
    """OpenCV Telea that aborts the whole process on a marked image."""

    name: ClassVar[str] = "crashy"
    title: ClassVar[str] = "Crashy test engine"

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Abort on the marker, else inpaint like Telea."""
        if is_marked(image):
            os.abort()
        corner = tuple(int(c) for c in image[0, 0])
        if corner == SLOW_MARKER:
            time.sleep(60)
        if corner == PAUSE_MARKER:
            time.sleep(1.5)
        if corner == RAISE_MARKER:
            warnings.warn("crashy: this photo is blue", UserWarning, stacklevel=1)
            raise RuntimeError("crashy: a bug on a blue photo")
        return super().inpaint(image, mask)
