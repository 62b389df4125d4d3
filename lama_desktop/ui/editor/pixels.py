"""Zero-copy views between numpy pixel arrays and QImage, and the changed region of an edit."""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

Box = tuple[int, int, int, int]  # top, bottom, left, right (exclusive), like a numpy slice


def rgb_to_qimage(rgb: np.ndarray) -> QImage:
    """A QImage over `rgb` (uint8 HxWx3, C-contiguous); the array must outlive the image."""
    return _view(rgb, 3, QImage.Format.Format_RGB888)


def rgba_to_qimage(rgba: np.ndarray) -> QImage:
    """A QImage over `rgba` (uint8 HxWx4, not premultiplied); the array must outlive it."""
    return _view(rgba, 4, QImage.Format.Format_RGBA8888)


def _view(pixels: np.ndarray, channels: int, fmt: QImage.Format) -> QImage:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != channels:
        raise ValueError(f"expected uint8 HxWx{channels} pixels, got {pixels.dtype} {pixels.shape}")
    if not pixels.flags.c_contiguous:
        raise ValueError("pixels must be C-contiguous")
    height, width = pixels.shape[:2]
    return QImage(pixels.data, width, height, channels * width, fmt)


def alpha_of(image: QImage) -> np.ndarray:
    """A copy of the alpha channel of an ARGB32 (premultiplied or not) image as uint8 HxW."""
    if image.format() not in (
        QImage.Format.Format_ARGB32,
        QImage.Format.Format_ARGB32_Premultiplied,
    ):
        raise ValueError(f"expected an ARGB32 image, got {image.format()}")
    height, width = image.height(), image.width()
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(height, image.bytesPerLine())
    # ARGB32 is stored as one native-endian 32-bit word per pixel; alpha is its top byte.
    index = 3 if np.little_endian else 0
    return rows[:, : width * 4].reshape(height, width, 4)[..., index].copy()


def changed_box(before: np.ndarray, after: np.ndarray) -> Box | None:
    """The smallest box holding every pixel that differs, or None when nothing changed."""
    if before.shape != after.shape:
        raise ValueError(f"shapes differ: {before.shape} and {after.shape}")
    height = before.shape[0]
    # Rows first over each row's bytes (a fast contiguous reduction), then columns only
    # within the rows that changed: a small edit on a large photo stays cheap.
    rows = np.flatnonzero((before != after).reshape(height, -1).any(axis=1))
    if rows.size == 0:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    band = before[top:bottom] != after[top:bottom]
    cols = np.flatnonzero(band.any(axis=(0, 2)))
    return top, bottom, int(cols[0]), int(cols[-1]) + 1
