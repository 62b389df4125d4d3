"""OpenCV Navier-Stokes and Telea models: IOPaint's cv2 call, untouched pixels outside the mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lama_desktop.engine.base import EngineError, create_model
from lama_desktop.engine.hd import HDConfig, HDStrategy, crop_box, mask_boxes, run_with_strategy
from lama_desktop.engine.opencv import OpenCVModel


def _scene() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    image = np.zeros((60, 80, 3), np.uint8)
    image[:, :40] = (200, 30, 10)
    image[:, 40:] = (10, 60, 220)
    image = np.clip(image.astype(int) + rng.integers(-5, 6, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((60, 80), np.uint8)
    mask[20:35, 10:30] = 1  # non-zero, not just 255, means erase
    image[20:35, 10:30] = (0, 255, 0)  # a green blob to remove
    return image, mask


@pytest.mark.parametrize(
    ("name", "flag"),
    [("opencv-ns", cv2.INPAINT_NS), ("cv2", cv2.INPAINT_NS), ("opencv-telea", cv2.INPAINT_TELEA)],
)
def test_matches_iopaints_cv2_call(name: str, flag: int) -> None:
    image, mask = _scene()
    original = image.copy()
    result = create_model(name).inpaint(image, mask)
    np.testing.assert_array_equal(image, original)
    expected = cv2.inpaint(image[:, :, ::-1].copy(), mask * 255, 4, flag)[:, :, ::-1]
    np.testing.assert_array_equal(result, expected)
    outside = mask == 0
    np.testing.assert_array_equal(result[outside], image[outside])
    # The green blob is gone: the hole is now filled with the surrounding red.
    hole = result[20:35, 10:30].reshape(-1, 3).mean(axis=0)
    assert hole[0] > 150 and hole[1] < 80


def test_radius_option_changes_the_result() -> None:
    image, mask = _scene()
    small = create_model("opencv-telea", radius=1).inpaint(image, mask)
    large = create_model("opencv-telea", radius=15).inpaint(image, mask)
    assert not np.array_equal(small, large)


@pytest.mark.parametrize("radius", [0, -2, 2.5, True])
def test_bad_radius_is_refused(radius: object) -> None:
    with pytest.raises(EngineError, match="radius"):
        create_model("opencv-ns", radius=radius)


def test_unknown_option_is_refused() -> None:
    with pytest.raises(EngineError, match="no option"):
        create_model("opencv-ns", fp16=True)


def test_bad_inputs_are_refused() -> None:
    model = create_model("opencv-ns")
    image, mask = _scene()
    with pytest.raises(EngineError, match="3 channels"):
        model.inpaint(np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4), np.uint8))
    with pytest.raises(EngineError, match="80x30 differs from image size 80x60"):
        model.inpaint(image, mask[:30])
    with pytest.raises(EngineError, match="empty"):
        model.inpaint(np.zeros((0, 4, 3), np.uint8), np.zeros((0, 4), np.uint8))


def test_memory_estimate_scales_with_pixels() -> None:
    assert OpenCVModel.memory_estimate(3000, 4000) > OpenCVModel.memory_estimate(768, 1024) > 0


def _photo_with_strokes(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Smooth colours plus noise, and blobs close enough that their crop boxes overlap."""
    rng = np.random.default_rng(7)
    ys, xs = np.mgrid[0:height, 0:width]
    image = np.stack([xs * 255 // width, ys * 255 // height, (xs + ys) % 256], axis=2)
    image = np.clip(image + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    for cy, cx, r in [
        (150, 200, 30),
        (190, 300, 20),
        (600, 900, 40),
        (650, 700, 12),
        (60, 1100, 9),
    ]:
        mask[(ys - cy) ** 2 + (xs - cx) ** 2 <= r * r] = 200  # any non-zero value erases
    mask[400:404, 0:1200] = 1  # a thin line across: a box that spans the width
    return image, mask


def _iopaint_crop(image: np.ndarray, mask: np.ndarray, flag: int) -> np.ndarray:
    """IOPaint 1.6's crop strategy for its cv2 model written out: every box is inpainted from
    the original (BGR in, reversed back), pasted whole, later boxes winning the overlaps."""
    binary = np.where(mask > 0, 255, 0).astype(np.uint8)
    height, width = mask.shape
    result = image.copy()
    for box in mask_boxes(binary):
        left, top, right, bottom = crop_box(box, height, width, 128)
        bgr = image[top:bottom, left:right, ::-1].copy()
        patch = cv2.inpaint(bgr, binary[top:bottom, left:right], 4, flag)[:, :, ::-1]
        result[top:bottom, left:right] = patch
    keep = binary == 0
    result[keep] = image[keep]
    return result


class _Counting(OpenCVModel):
    name = "opencv-counting-test"
    title = "counting"
    flag_name = "INPAINT_NS"
    calls = 0

    def inpaint(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        type(self).calls += 1
        return super().inpaint(image, mask)


@pytest.mark.parametrize(
    ("name", "flag"), [("opencv-ns", cv2.INPAINT_NS), ("opencv-telea", cv2.INPAINT_TELEA)]
)
def test_pipeline_outputs_equal_iopaints_cv2_outputs(name: str, flag: int) -> None:
    image, mask = _photo_with_strokes(768, 1200)
    original = image.copy()
    model = create_model(name)
    crop = run_with_strategy(model, image, mask, HDConfig())
    np.testing.assert_array_equal(crop, _iopaint_crop(image, mask, flag))
    # Below the crop trigger, and with "original", IOPaint runs cv2 once on the whole photo.
    whole = run_with_strategy(model, image, mask, HDConfig(strategy=HDStrategy.ORIGINAL))
    direct = cv2.inpaint(image[:, :, ::-1].copy(), mask, 4, flag)[:, :, ::-1]
    np.testing.assert_array_equal(whole, direct)
    small = run_with_strategy(model, image[:700, :790], mask[:700, :790], HDConfig())
    direct = cv2.inpaint(image[:700, :790, ::-1].copy(), mask[:700, :790], 4, flag)[:, :, ::-1]
    np.testing.assert_array_equal(small, direct)
    np.testing.assert_array_equal(image, original)  # the input is never written to


def test_crop_boxes_painted_over_by_later_boxes_are_not_run() -> None:
    image, mask = _photo_with_strokes(768, 1200)
    _Counting.calls = 0
    run_with_strategy(_Counting(), image, mask, HDConfig())
    # Six regions; the line's box spans the photo's width and comes last among those it
    # covers, so the two blobs at the top whose masks lie inside it are never inpainted.
    assert len(mask_boxes(mask)) == 6 and _Counting.calls < 6


@pytest.mark.parametrize("flag", [cv2.INPAINT_NS, cv2.INPAINT_TELEA])
def test_cv2_fills_channels_alone_and_keeps_unmasked_pixels(flag: int) -> None:
    # What OpenCVModel.inpaint relies on to skip IOPaint's BGR copies and the restore pass.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    mask = ((rng.random((120, 160)) > 0.9) * rng.integers(1, 256, (120, 160))).astype(np.uint8)
    rgb = cv2.inpaint(image, mask, 4, flag)
    bgr = cv2.inpaint(image[:, :, ::-1].copy(), mask, 4, flag)[:, :, ::-1]
    np.testing.assert_array_equal(rgb, bgr)
    np.testing.assert_array_equal(
        rgb, cv2.inpaint(image, (mask > 0).astype(np.uint8) * 255, 4, flag)
    )
    np.testing.assert_array_equal(rgb[mask == 0], image[mask == 0])
