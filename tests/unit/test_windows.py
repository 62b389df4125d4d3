"""Edit windows: a stroke on a large photo sends only windows, yet gives the whole result."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lama_desktop.engine.hd import Frame, HDConfig, HDStrategy, run_with_strategy
from lama_desktop.engine.opencv import OpenCVTelea
from lama_desktop.engine.windows import edit_windows, pack, paste, run_windows, window_bytes

CFG = HDConfig(crop_margin=64, crop_trigger_size=800)


def photo(height: int, width: int) -> np.ndarray:
    """A photo with structure (gradients and noise), so a different crop gives other pixels."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([(xx * 255) // width, (yy * 255) // height, (xx + yy) % 256], axis=-1)
    return (base + rng.integers(0, 40, (height, width, 3))).clip(0, 255).astype(np.uint8)


def through_windows(rgb: np.ndarray, mask: np.ndarray, cfg: HDConfig) -> tuple[np.ndarray, int]:
    model = OpenCVTelea()
    windows = edit_windows(mask, cfg)
    assert windows is not None

    def run(image: np.ndarray, bits: np.ndarray, frame: Frame) -> np.ndarray:
        return run_with_strategy(model, image, bits, cfg, frame)

    sent = pack(rgb, windows), pack(mask, windows)
    answer = run_windows(run, *sent, windows, mask.shape)
    return paste(rgb, answer, windows), len(sent[0]) + len(sent[1])


def strokes(height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.line(mask, (30, 40), (300, 90), 255, 9)  # near the top-left corner: boxes shift inward
    cv2.circle(mask, (width - 20, height // 2), 25, 255, -1)  # off the right edge
    cv2.circle(mask, (900, 700), 160, 255, 6)  # a ring ...
    cv2.circle(mask, (900, 700), 10, 255, -1)  # ... with a dot in its hole (one outer contour)
    cv2.line(mask, (200, 1000), (330, 1010), 255, 5)  # two strokes whose crop boxes overlap
    cv2.line(mask, (380, 1030), (470, 1060), 255, 5)
    return mask


def test_windows_give_the_whole_photos_pixels_bit_for_bit() -> None:
    rgb, mask = photo(1100, 1500), strokes(1100, 1500)
    whole = run_with_strategy(OpenCVTelea(), rgb, mask, CFG)
    pasted, sent = through_windows(rgb, mask, CFG)
    assert np.array_equal(pasted, whole)
    assert sent < rgb.nbytes // 2  # only windows travel


@pytest.mark.parametrize("margin", [0, 128, 300])
def test_windows_hold_for_any_margin(margin: int) -> None:
    cfg = HDConfig(crop_margin=margin, crop_trigger_size=800)
    rgb, mask = photo(1100, 1500), strokes(1100, 1500)
    pasted, _ = through_windows(rgb, mask, cfg)
    assert np.array_equal(pasted, run_with_strategy(OpenCVTelea(), rgb, mask, cfg))


def test_windows_do_not_overlap_and_transfer_follows_the_strokes_not_the_photo() -> None:
    mask = np.zeros((10_000, 14_000), np.uint8)
    cv2.line(mask, (1000, 1000), (1400, 1100), 255, 20)
    cv2.line(mask, (12_000, 9000), (12_300, 9300), 255, 20)
    windows = edit_windows(mask, HDConfig())
    assert windows is not None and len(windows) == 2  # two strokes far apart: two windows
    for i, a in enumerate(windows):
        for b in windows[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3])
    assert window_bytes(windows, 4) < 4 * 1024 * 1024  # a few MB for a 140 MP photo


def test_strategies_that_need_the_whole_photo_get_no_windows() -> None:
    mask = np.zeros((1000, 1000), np.uint8)
    assert edit_windows(mask, HDConfig(strategy=HDStrategy.ORIGINAL)) is None
    assert edit_windows(mask, HDConfig(strategy=HDStrategy.RESIZE)) is None
    assert edit_windows(mask, HDConfig(crop_trigger_size=1000)) is None  # small enough as is
    assert edit_windows(mask, HDConfig()) == []  # nothing to erase


def test_a_window_refuses_other_strategies_and_foreign_sizes() -> None:
    rgb, mask = photo(100, 100), np.full((100, 100), 255, np.uint8)
    with pytest.raises(ValueError, match="crop HD strategy"):
        run_with_strategy(
            OpenCVTelea(), rgb, mask, HDConfig(strategy="resize"), Frame(0, 0, 2000, 2000)
        )  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not inside"):
        run_windows(lambda i, m, f: i, b"", b"", [(0, 0, 10, 3000)], (2000, 2000))
    with pytest.raises(ValueError, match="bytes"):
        run_windows(lambda i, m, f: i, b"x", b"", [(0, 0, 10, 10)], (2000, 2000))
