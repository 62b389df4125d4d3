"""A folder's photos in name order, and small previews of them, for stepping through a shoot."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from lama_desktop.engine.imageio import ImageError
from lama_desktop.engine.plan import IMAGE_EXTENSIONS

THUMBNAIL_PIXELS = 40_000_000  # a preview of something larger is not worth the memory


def folder_photos(folder: Path) -> list[Path]:
    """The photos directly in `folder` (by extension; hidden files left out), sorted by name
    as a file manager shows them: case-insensitively."""
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise ImageError(folder, f"cannot list the folder ({exc.strerror or exc})") from exc
    photos = [
        Path(entry.path)
        for entry in entries
        if not entry.name.startswith(".")
        and Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS
        and entry.is_file()
    ]
    return sorted(photos, key=lambda path: (path.name.casefold(), path.name))


def thumbnail(path: Path, side: int) -> np.ndarray:
    """An upright preview of the photo at `path` whose longer side is at most `side` pixels
    (uint8 HxWx3). JPEGs are decoded at a reduced scale, so a preview stays cheap."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damage Pillow steps over still gives a preview
            with Image.open(path) as image:
                # JPEG only: decode at 1/2, 1/4 or 1/8, so a 50 MP camera JPEG fits the limit.
                image.draft("RGB", (side, side))
                if image.width * image.height > THUMBNAIL_PIXELS:
                    raise ImageError(path, "too large for a preview")
                upright = ImageOps.exif_transpose(image.convert("RGB"))
                upright.thumbnail((side, side))
                return np.array(upright)
    except ImageError:
        raise
    except Exception as exc:  # Pillow's many error types for a file it cannot read
        raise ImageError(path, f"no preview ({exc})") from exc
