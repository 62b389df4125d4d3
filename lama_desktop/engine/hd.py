"""HD strategies for large photos (original, resize, crop) with IOPaint's semantics."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from lama_desktop.engine.base import EngineError, InpaintModel, check_inputs


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


def region_boxes(mask: np.ndarray) -> list[Box]:
    """Boxes holding the mask's regions, found with numpy alone (no cv2: the GUI process
    routes with it). The mask is cut along empty rows and columns until nothing cuts, so each
    of cv2's outer-contour boxes (`mask_boxes`) lies inside one of these, most often equal."""
    height, width = mask.shape[:2]
    boxes: list[Box] = []
    todo: list[Box] = [(0, 0, width, height)]
    while todo:
        left, top, right, bottom = todo.pop()
        lit = mask[top:bottom, left:right] > 0
        rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
        if rows.size == 0:
            continue
        row_runs = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
        col_runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
        if len(row_runs) == 1 and len(col_runs) == 1:
            boxes.append((left + cols[0], top + rows[0], left + cols[-1] + 1, top + rows[-1] + 1))
        elif len(row_runs) > 1:
            l_, r_ = left + cols[0], left + cols[-1] + 1
            todo += [(l_, top + run[0], r_, top + run[-1] + 1) for run in row_runs]
        else:
            t_, b_ = top + rows[0], top + rows[-1] + 1
            todo += [(left + run[0], t_, left + run[-1] + 1, b_) for run in col_runs]
    return [(int(a), int(b), int(c), int(d)) for a, b, c, d in boxes]


def estimate_size(height: int, width: int, cfg: HDConfig, mask: np.ndarray) -> tuple[int, int]:
    """`working_size` for memory estimates, without cv2: crop boxes from `region_boxes`."""
    if not _uses_crop(height, width, cfg):
        return working_size(height, width, cfg)
    boxes = [crop_box(b, height, width, cfg.crop_margin) for b in region_boxes(mask)]
    if not boxes:
        return 0, 0
    return max(((b[3] - b[1]) * (b[2] - b[0]), (b[3] - b[1], b[2] - b[0])) for b in boxes)[1]


def _run_resize(model: InpaintModel, image: np.ndarray, mask: np.ndarray, limit: int) -> np.ndarray:
    height, width = mask.shape
    small_h, small_w = resized_size(height, width, limit)
    import cv2  # see mask_boxes

    # IOPaint resizes image and mask with bicubic; the model binarises the mask (> 0).
    small_image = cv2.resize(image, (small_w, small_h), interpolation=cv2.INTER_CUBIC)
    small_mask = cv2.resize(mask, (small_w, small_h), interpolation=cv2.INTER_CUBIC)
    small_result = model.inpaint(small_image, small_mask)
    return cv2.resize(small_result, (width, height), interpolation=cv2.INTER_CUBIC)


def _needed_boxes(binary: np.ndarray, boxes: list[Box]) -> list[Box]:
    """The boxes, in order, whose result survives: later boxes win overlaps (IOPaint), so a
    box whose every masked pixel lies inside a later box would be painted over; skip it."""
    covered = np.zeros(binary.shape, dtype=bool)
    needed = []
    for box in reversed(boxes):
        left, top, right, bottom = box
        own = binary[top:bottom, left:right] > 0
        if (own & ~covered[top:bottom, left:right]).any():
            needed.append(box)
        covered[top:bottom, left:right] = True
    return needed[::-1]


def _run_crop(model: InpaintModel, image: np.ndarray, mask: np.ndarray, margin: int) -> np.ndarray:
    height, width = mask.shape
    result = image.copy()
    boxes = [crop_box(box, height, width, margin) for box in mask_boxes(mask)]
    # Every box is cut from the original image, as IOPaint does. Only each patch's masked
    # pixels are written, so the result is bit-identical elsewhere without a final pass.
    for left, top, right, bottom in _needed_boxes(mask, boxes):
        crop_mask = np.ascontiguousarray(mask[top:bottom, left:right])
        patch = model.inpaint(np.ascontiguousarray(image[top:bottom, left:right]), crop_mask)
        _check_patch(model, patch, crop_mask.shape)
        np.copyto(result[top:bottom, left:right], patch, where=(crop_mask > 0)[..., None])
    return result


def _check_patch(model: InpaintModel, patch: np.ndarray, shape: tuple[int, ...]) -> None:
    if not isinstance(patch, np.ndarray) or patch.dtype != np.uint8 or patch.shape != (*shape, 3):
        got = f"{patch.dtype} {patch.shape}" if isinstance(patch, np.ndarray) else type(patch)
        raise EngineError(f"model {model.name!r} returned {got} for a crop of {shape}")


def _owned(result: np.ndarray, image: np.ndarray) -> np.ndarray:
    """`result` as a writable uint8 C array that shares no memory with `image` (copied if not)."""
    if (
        result.dtype == np.uint8
        and result.flags.c_contiguous
        and result.flags.writeable
        and not np.may_share_memory(result, image)
    ):
        return result
    return np.array(result, dtype=np.uint8, order="C")


def run_with_strategy(
    model: InpaintModel, image: np.ndarray, mask: np.ndarray, cfg: HDConfig
) -> np.ndarray:
    """Inpaint `image` where `mask` is non-zero; every other pixel comes back bit-identical."""
    check_inputs(image, mask)
    import cv2  # see mask_boxes

    # 0/255 like IOPaint's mask; cv2.threshold does it in one vectorised pass.
    binary = cv2.threshold(mask, 0, 255, cv2.THRESH_BINARY)[1]
    if not cv2.countNonZero(binary):
        return image.copy()
    height, width = binary.shape
    if _uses_crop(height, width, cfg):
        return _run_crop(model, image, binary, cfg.crop_margin)
    if _uses_resize(height, width, cfg):
        result = _run_resize(model, image, binary, cfg.resize_limit)
    else:
        result = model.inpaint(image, binary)
    if not isinstance(result, np.ndarray) or result.shape != image.shape:
        return np.asarray(result)  # the caller names the model that returned the wrong shape
    result = _owned(result, image)
    # copyto with a broadcast mask is several times faster than boolean fancy indexing here.
    np.copyto(result, image, where=(binary == 0)[..., None])
    return result
