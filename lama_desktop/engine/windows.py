"""A large edit's windows: the parts of a photo a node needs under the crop strategy.

The crop strategy runs the model on one box per mask region, widened by its margin, so a
node needs only windows around those boxes, not the whole photo: a stroke on a 150 MP photo
sends a few MB. The desktop cuts the windows (numpy only: the GUI process never imports
cv2), the node cleans each with `run_with_strategy(frame=...)`, which finds the boxes with
cv2 as in the whole photo, and the desktop pastes the windows back. Each window holds every
crop box of its regions and no pixel of another window's regions, so the result is the one
the whole photo would give, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from lama_desktop.engine.hd import Box, Frame, HDConfig, crop_box, uses_crop

TILE = 64  # the grid (pixels) strokes are first grouped on: cheap even on 150 MP
MAX_TILES = 512  # tiles along the longest side at most (larger tiles on larger photos)
MAX_GROUPS = 256  # more separate groups than this (a speckled mask): one window for all


def edit_windows(mask: np.ndarray, cfg: HDConfig) -> list[Box] | None:
    """Windows (left, top, right, bottom) around the mask's crop boxes, in reading order.

    None when the strategy needs the whole photo (original, resize, or a photo below the crop
    trigger size); [] when the mask is empty.
    """
    height, width = mask.shape
    if not uses_crop(height, width, cfg):
        return None
    tile = max(TILE, -(-max(height, width) // MAX_TILES))
    lit = _lit_tiles(mask, tile)
    cells = _components(lit)
    if len(cells) > MAX_GROUPS:
        cells = [(0, 0, lit.shape[1], lit.shape[0])]
    groups = [_tight(mask, (l_ * tile, t * tile, r * tile, b * tile)) for l_, t, r, b in cells]
    return sorted(_windows(groups, height, width, cfg.crop_margin), key=lambda b: (b[1], b[0]))


def _lit_tiles(mask: np.ndarray, tile: int) -> np.ndarray:
    """Which tiles hold a lit pixel. Row maxima first (one fast contiguous pass), then only
    the bands of rows that hold strokes are looked at column by column."""
    height, width = mask.shape
    lit_rows = mask.max(axis=1) > 0
    bands = np.maximum.reduceat(lit_rows, np.arange(0, height, tile))
    starts = np.arange(0, width, tile)
    lit = np.zeros((len(bands), len(starts)), bool)
    for band in np.flatnonzero(bands):
        columns = mask[band * tile : (band + 1) * tile].max(axis=0)
        lit[band] = np.maximum.reduceat(columns, starts) > 0
    return lit


def _tight(mask: np.ndarray, box: Box) -> Box:
    """The bounding box of the mask's lit pixels inside `box` (which holds some)."""
    left, top, right, bottom = box
    lit = mask[top:bottom, left:right] > 0
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    return (
        left + int(cols[0]),
        top + int(rows[0]),
        left + int(cols[-1]) + 1,
        top + int(rows[-1]) + 1,
    )


def _components(grid: np.ndarray) -> list[Box]:
    """The bounding box (in cells, right/bottom exclusive) of each 4-connected lit group."""
    todo = {(int(r), int(c)) for r, c in np.argwhere(grid)}
    boxes = []
    while todo:
        stack = [todo.pop()]
        top = bottom = stack[0][0]
        left = right = stack[0][1]
        while stack:
            r, c = stack.pop()
            top, bottom, left, right = min(top, r), max(bottom, r), min(left, c), max(right, c)
            for cell in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if cell in todo:
                    todo.remove(cell)
                    stack.append(cell)
        boxes.append((left, top, right + 1, bottom + 1))
    return boxes


def _overlap(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _windows(groups: list[Box], height: int, width: int, margin: int) -> list[Box]:
    """One window per group of strokes, groups joined until no two windows overlap.

    A group's window is `crop_box` of its bounding box with the margin plus 2: every crop box
    of a region inside the group (widened by the margin, shifted inward at an edge) lies in
    it, rounding included. Joining overlapping windows puts a region, or one nested in
    another's hole, wholly in one window, and no pixel of a group in another's window.
    """
    while True:
        windows = [crop_box(g, height, width, margin + 2) for g in groups]
        owner = list(range(len(groups)))  # union-find over the groups
        for i, a in enumerate(windows):
            for j in range(i + 1, len(windows)):
                if _overlap(a, windows[j]):
                    owner[_root(owner, j)] = _root(owner, i)
        if all(owner[i] == i for i in range(len(owner))):
            return windows
        merged: dict[int, Box] = {}
        for i, g in enumerate(groups):
            m = merged.get(_root(owner, i), g)
            merged[_root(owner, i)] = (
                min(m[0], g[0]),
                min(m[1], g[1]),
                max(m[2], g[2]),
                max(m[3], g[3]),
            )
        groups = list(merged.values())


def _root(owner: list[int], i: int) -> int:
    while owner[i] != i:
        owner[i] = owner[owner[i]]
        i = owner[i]
    return i


def window_bytes(windows: Sequence[Box], channels: int) -> int:
    """Bytes of the windows' pixels with `channels` bytes per pixel."""
    return sum((r - l_) * (b - t) * channels for l_, t, r, b in windows)


def pack(pixels: np.ndarray, windows: Sequence[Box]) -> bytes:
    """The windows' pixels one after another (row-major each), as one buffer."""
    return b"".join(np.ascontiguousarray(pixels[t:b, l_:r]).tobytes() for l_, t, r, b in windows)


def unpack(buffer: bytes | memoryview, windows: Sequence[Box], channels: int) -> list[np.ndarray]:
    """The inverse of `pack`: one read-only array per window (views of `buffer`)."""
    expected = window_bytes(windows, channels)
    data = np.frombuffer(buffer, dtype=np.uint8)
    if data.size != expected:
        raise ValueError(f"windows need {expected} bytes, the buffer has {data.size}")
    arrays, offset = [], 0
    for l_, t, r, b in windows:
        shape = (b - t, r - l_, channels) if channels > 1 else (b - t, r - l_)
        size = int(np.prod(shape))
        arrays.append(data[offset : offset + size].reshape(shape))
        offset += size
    return arrays


def run_windows(
    run: Callable[[np.ndarray, np.ndarray, Frame], np.ndarray],
    image: bytes | memoryview,
    mask: bytes | memoryview,
    windows: Sequence[Box],
    size: tuple[int, int],
) -> bytes:
    """Clean each window with `run(rgb, mask, frame)`; the results packed as `pack` does."""
    height, width = size
    for l_, t, r, b in windows:
        if not (0 <= l_ < r <= width and 0 <= t < b <= height):
            raise ValueError(f"window {(l_, t, r, b)} is not inside a {width}x{height} photo")
    pairs = zip(unpack(image, windows, 3), unpack(mask, windows, 1), windows, strict=True)
    return b"".join(
        run(rgb, bits, Frame(t, l_, height, width)).tobytes() for rgb, bits, (l_, t, _, _) in pairs
    )


def paste(pixels: np.ndarray, results: bytes | memoryview, windows: Sequence[Box]) -> np.ndarray:
    """A copy of `pixels` with each window's cleaned pixels put back in place."""
    out = pixels.copy()
    for (l_, t, r, b), part in zip(windows, unpack(results, windows, 3), strict=True):
        out[t:b, l_:r] = part
    return out
