"""OpenCV Navier-Stokes and Telea models: IOPaint's cv2 call, untouched pixels outside the mask."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from lama_desktop.engine.base import EngineError, create_model
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
