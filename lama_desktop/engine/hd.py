"""HD strategies for large photos (original, resize, crop) with IOPaint's semantics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from lama_desktop.engine.base import InpaintModel, check_inputs


class HDStrategy(StrEnum):
    """How a large image reaches the model."""

    ORIGINAL = "original"  # the whole image at full size
    RESIZE = "resize"  # longest side over resize_limit: shrink, run, scale the fill back up
    CROP = "crop"  # longest side over crop_trigger_size: one box per mask region, plus margin


@dataclass(frozen=True)
class HDConfig:
    """Strategy and its sizes; the defaults are IOPaint's."""

    strategy: HDStrategy = HDStrategy.CROP
    crop_margin: int = 128
    crop_trigger_size: int = 800
    resize_limit: int = 1280


Box = tuple[int, int, int, int]  # left, top, right, bottom (exclusive)


def mask_boxes(mask: np.ndarray) -> list[Box]:
    """Bounding box of each outer contour of the (binary) mask, as IOPaint's boxes_from_mask."""
    import cv2  # here, not at the top: the desktop's GUI process imports this module's types

    contours, _ = cv2.findContours(
        (mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        boxes.append((x, y, x + w, y + h))
    return boxes


def crop_box(box: Box, height: int, width: int, margin: int) -> Box:
    """Widen `box` by `margin` on each side; at an image edge, shift it inward for context."""
    left, top, right, bottom = box
    cx, cy = (left + right) // 2, (top + bottom) // 2
    w = right - left + margin * 2
    h = bottom - top + margin * 2
    raw_l, raw_r, raw_t, raw_b = cx - w // 2, cx + w // 2, cy - h // 2, cy + h // 2
    new_l, new_r = max(raw_l, 0), min(raw_r, width)
    new_t, new_b = max(raw_t, 0), min(raw_b, height)
    # IOPaint's rule: what falls off one edge is added on the opposite side.
    if raw_l < 0:
        new_r += -raw_l
    if raw_r > width:
        new_l -= raw_r - width
    if raw_t < 0:
        new_b += -raw_t
    if raw_b > height:
        new_t -= raw_b - height
    return max(new_l, 0), max(new_t, 0), min(new_r, width), min(new_b, height)


def resized_size(height: int, width: int, limit: int) -> tuple[int, int]:
    """Size after shrinking the longest side to `limit` (IOPaint's resize_max_size rounding)."""
    if max(height, width) <= limit:
        return height, width
    ratio = limit / max(height, width)
    # A sliver (1 x 49 at limit 24) would round to 0 rows, which cv2.resize refuses.
    return max(1, int(height * ratio + 0.5)), max(1, int(width * ratio + 0.5))


def _uses_crop(height: int, width: int, cfg: HDConfig) -> bool:
    return cfg.strategy == HDStrategy.CROP and max(height, width) > cfg.crop_trigger_size


def _uses_resize(height: int, width: int, cfg: HDConfig) -> bool:
    return cfg.strategy == HDStrategy.RESIZE and max(height, width) > cfg.resize_limit


def working_size(
    height: int, width: int, cfg: HDConfig, mask: np.ndarray | None = None
) -> tuple[int, int]:
    """The largest (height, width) the model is given; without a mask, crop assumes the worst."""
    if _uses_resize(height, width, cfg):
        return resized_size(height, width, cfg.resize_limit)
    if _uses_crop(height, width, cfg) and mask is not None:
        boxes = [crop_box(b, height, width, cfg.crop_margin) for b in mask_boxes(mask)]
        if not boxes:
            return 0, 0
        areas = [((b[3] - b[1]) * (b[2] - b[0]), (b[3] - b[1], b[2] - b[0])) for b in boxes]
        return max(areas)[1]
    return height, width


def _run_resize(model: InpaintModel, image: np.ndarray, mask: np.ndarray, limit: int) -> np.ndarray:
    height, width = mask.shape
    small_h, small_w = resized_size(height, width, limit)
    import cv2  # see mask_boxes

    # IOPaint resizes image and mask with bicubic; the model binarises the mask (> 0).
    small_image = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_CUBIC)
    small_mask = cv2.resize(mask, (small_w, small_h), interpolation=cv2.INTER_CUBIC)
    small_result = model.inpaint(small_image, small_mask)
    return cv2.resize(small_result, (width, height), interpolation=cv2.INTER_CUBIC)


def _run_crop(model: InpaintModel, image: np.ndarray, mask: np.ndarray, margin: int) -> np.ndarray:
    height, width = mask.shape
    result = image.copy()
    # Every box is cut from the original image, as IOPaint does; later boxes win overlaps.
    for box in mask_boxes(mask):
        left, top, right, bottom = crop_box(box, height, width, margin)
        patch = model.inpaint(
            np.ascontiguousarray(image[top:bottom, left:right]),
            np.ascontiguousarray(mask[top:bottom, left:right]),
        )
        result[top:bottom, left:right] = patch
    return result


def run_with_strategy(
    model: InpaintModel, image: np.ndarray, mask: np.ndarray, cfg: HDConfig
) -> np.ndarray:
    """Inpaint `image` where `mask` is non-zero; every other pixel comes back bit-identical."""
    check_inputs(image, mask)
    binary = np.where(mask > 0, 255, 0).astype(np.uint8)
    if not binary.any():
        return image.copy()
    height, width = binary.shape
    if _uses_resize(height, width, cfg):
        result = _run_resize(model, image, binary, cfg.resize_limit)
    elif _uses_crop(height, width, cfg):
        result = _run_crop(model, image, binary, cfg.crop_margin)
    else:
        result = model.inpaint(image, binary)
    result = np.array(result, dtype=np.uint8, order="C")  # a copy the caller owns
    # copyto with a broadcast mask is several times faster than boolean fancy indexing here.
    np.copyto(result, image, where=(binary == 0)[..., None])
    return result
