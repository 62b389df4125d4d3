"""HD strategies: IOPaint's box/resize semantics, and untouched pixels outside the mask."""

from __future__ import annotations

from typing import Any, ClassVar

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lama_desktop.engine.base import EngineError, InpaintModel
from lama_desktop.engine.hd import (
    HDConfig,
    HDStrategy,
    crop_box,
    mask_boxes,
    region_boxes,
    resized_size,
    run_with_strategy,
    working_size,
)


class NoiseModel(InpaintModel):
    """Returns noise everywhere (even outside the mask) and records what it was given."""

    name: ClassVar[str] = "noise-test"
    title: ClassVar[str] = "Noise"
    needs_download: ClassVar[bool] = False
    devices: ClassVar[tuple[str, ...]] = ("cpu",)

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device, **options)
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []
        self.rng = np.random.default_rng(0)

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        self.calls.append((image.copy(), mask.copy()))
        return self.rng.integers(0, 256, image.shape, dtype=np.uint8)

    @classmethod
    def memory_estimate(cls, height: int, width: int) -> int:
        return height * width * 3


def _image(height: int, width: int) -> np.ndarray:
    return np.random.default_rng(height * 7 + width).integers(0, 256, (height, width, 3), np.uint8)


def test_defaults_are_iopaints() -> None:
    cfg = HDConfig()
    assert (cfg.strategy, cfg.crop_margin, cfg.crop_trigger_size, cfg.resize_limit) == (
        HDStrategy.CROP,
        128,
        800,
        1280,
    )
    assert HDStrategy("resize") is HDStrategy.RESIZE and str(HDStrategy.CROP) == "crop"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    height=st.integers(1, 90),
    width=st.integers(1, 90),
    strategy=st.sampled_from(list(HDStrategy)),
    seed=st.integers(0, 2**16),
)
def test_outside_mask_is_bit_identical(
    height: int, width: int, strategy: HDStrategy, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    mask = ((rng.random((height, width)) > 0.8) * rng.integers(1, 256)).astype(np.uint8)
    # Small trigger/limit sizes so resize and crop really run on these small images.
    cfg = HDConfig(strategy=strategy, crop_margin=5, crop_trigger_size=20, resize_limit=24)
    original = image.copy()
    result = run_with_strategy(NoiseModel(), image, mask, cfg)
    np.testing.assert_array_equal(image, original)
    assert result.shape == image.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result[mask == 0], image[mask == 0])


def test_original_gives_the_whole_image_with_binary_mask() -> None:
    image = _image(900, 1000)
    mask = np.zeros((900, 1000), np.uint8)
    mask[10:20, 10:20] = 3
    model = NoiseModel()
    run_with_strategy(model, image, mask, HDConfig(strategy=HDStrategy.ORIGINAL))
    [(seen_image, seen_mask)] = model.calls
    np.testing.assert_array_equal(seen_image, image)
    assert set(np.unique(seen_mask)) == {0, 255}


def test_empty_mask_returns_a_copy_without_running_the_model() -> None:
    image = _image(30, 30)
    model = NoiseModel()
    result = run_with_strategy(model, image, np.zeros((30, 30), np.uint8), HDConfig())
    np.testing.assert_array_equal(result, image)
    assert result is not image and model.calls == []


def test_resize_shrinks_longest_side_to_the_limit() -> None:
    image = _image(1000, 2000)
    mask = np.zeros((1000, 2000), np.uint8)
    mask[400:600, 900:1100] = 255
    model = NoiseModel()
    cfg = HDConfig(strategy=HDStrategy.RESIZE)
    result = run_with_strategy(model, image, mask, cfg)
    [(seen_image, seen_mask)] = model.calls
    assert seen_image.shape == (640, 1280, 3) and seen_mask.shape == (640, 1280)
    np.testing.assert_array_equal(
        seen_image, cv2.resize(image, (1280, 640), interpolation=cv2.INTER_CUBIC)
    )
    assert working_size(1000, 2000, cfg) == (640, 1280)
    assert (result[mask > 0] != image[mask > 0]).any()


def test_resize_below_the_limit_runs_full_size() -> None:
    model = NoiseModel()
    mask = np.full((700, 1280), 255, np.uint8)
    run_with_strategy(model, _image(700, 1280), mask, HDConfig(strategy=HDStrategy.RESIZE))
    assert model.calls[0][0].shape == (700, 1280, 3)
    assert resized_size(1000, 2001, 1280) == (640, 1280)  # IOPaint rounds with + 0.5


def test_resize_keeps_at_least_one_row_of_a_sliver() -> None:
    # Found by hypothesis: 1 x 49 at limit 24 rounded to 0 rows and cv2.resize raised.
    assert resized_size(1, 49, 24) == (1, 24)
    model = NoiseModel()
    mask = np.full((1, 49), 255, np.uint8)
    out = run_with_strategy(
        model, _image(1, 49), mask, HDConfig(strategy=HDStrategy.RESIZE, resize_limit=24)
    )
    assert out.shape == (1, 49, 3)


def test_crop_runs_one_box_per_region_with_margin() -> None:
    image = _image(1000, 1200)
    mask = np.zeros((1000, 1200), np.uint8)
    mask[100:150, 200:260] = 255  # region A
    mask[600:700, 900:1000] = 255  # region B
    model = NoiseModel()
    cfg = HDConfig()  # crop, margin 128, trigger 800
    result = run_with_strategy(model, image, mask, cfg)
    shapes = sorted(call[0].shape[:2] for call in model.calls)
    # A: 50x60 box + 2*128 margin; B: 100x100 + 2*128, both away from edges.
    assert shapes == [(306, 316), (356, 356)]
    for seen_image, seen_mask in model.calls:
        assert seen_mask.any()
        assert seen_image.shape[:2] == seen_mask.shape
    assert (result[mask > 0] != image[mask > 0]).any()
    assert working_size(1000, 1200, cfg, mask) == (356, 356)
    assert working_size(1000, 1200, cfg) == (1000, 1200)  # no mask: assume the worst


def test_crop_below_trigger_runs_full_image() -> None:
    model = NoiseModel()
    mask = np.zeros((800, 600), np.uint8)
    mask[5, 5] = 255
    run_with_strategy(model, _image(800, 600), mask, HDConfig())
    assert model.calls[0][0].shape == (800, 600, 3)


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        ((400, 400, 500, 500), (272, 272, 628, 628)),  # centred, widened by 128 each side
        ((0, 0, 20, 20), (0, 0, 276, 276)),  # off the top-left: shifted inward
        ((980, 780, 1000, 800), (724, 524, 1000, 800)),  # off the bottom-right
        ((0, 0, 1000, 800), (0, 0, 1000, 800)),  # whole image: clipped
    ],
)
def test_crop_box_follows_iopaint(
    box: tuple[int, int, int, int], expected: tuple[int, int, int, int]
) -> None:
    assert crop_box(box, height=800, width=1000, margin=128) == expected


def test_mask_boxes_one_per_outer_contour() -> None:
    mask = np.zeros((50, 50), np.uint8)
    mask[5:15, 5:15] = 255
    mask[8:10, 8:10] = 0  # a hole inside: still one outer contour
    mask[30:40, 20:45] = 1
    assert sorted(mask_boxes(mask)) == [(5, 5, 15, 15), (20, 30, 45, 40)]


def test_size_mismatch_is_refused() -> None:
    with pytest.raises(EngineError, match="differs"):
        run_with_strategy(NoiseModel(), _image(10, 10), np.zeros((10, 9), np.uint8), HDConfig())


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), blobs=st.integers(0, 6))
def test_region_boxes_hold_every_contour_box(seed: int, blobs: int) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((120, 160), np.uint8)
    for _ in range(blobs):
        y, x = rng.integers(0, 110), rng.integers(0, 150)
        mask[y : y + rng.integers(1, 30), x : x + rng.integers(1, 40)] = 255
    regions = region_boxes(mask)
    for left, top, right, bottom in mask_boxes(mask):
        assert any(
            rl <= left and rt <= top and right <= rr and bottom <= rb for rl, rt, rr, rb in regions
        )
    lit = sum(int((mask[top:bot, lft:rgt] > 0).sum()) for lft, top, rgt, bot in regions)
    assert lit == int((mask > 0).sum())  # the regions are disjoint and hold every pixel
