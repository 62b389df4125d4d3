"""Images and masks as IOPaint's API carries them: IOPaint's mask rules and the answer's bytes."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lama_desktop.engine.imageio import (
    DEFAULT_MAX_PIXELS,
    ImageError,
    Picture,
    decode_grey,
    decode_image,
    encode_image,
)

# IOPaint's content types: the image's own format ("jpeg", not "jpg").
CONTENT_TYPES = {"JPEG": "jpeg", "PNG": "png", "WEBP": "webp", "BMP": "bmp", "TIFF": "tiff"}
# IOPaint's brush colour "ffcc00bb" (RGBA): what adjust_mask paints where the mask is set.
MASK_COLOUR = (255, 203, 0, int(255 * 0.73))
# zlib level for PNG answers: 1 is several times faster than Pillow's default 6 for a few
# percent more bytes; a local client reads them at memory speed.
PNG_COMPRESS_LEVEL = 1


class BadImage(ValueError):
    """An image or mask that cannot be decoded; the message says which and why."""


@dataclass(frozen=True)
class Answer:
    """Encoded result bytes and IOPaint's content-type suffix for them ("png", "jpeg", ...)."""

    data: bytes
    ext: str


def decode_photo(data: bytes, what: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """The request's photo, upright RGB with its alpha, EXIF and ICC profile kept."""
    try:
        return decode_image(data, what, max_pixels)
    except ImageError as exc:  # names the field and what is wrong with it
        raise BadImage(str(exc)) from None


def decode_grey_image(
    data: bytes, what: str = "mask", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """An image as IOPaint reads a mask: upright, converted to grey ("L")."""
    try:
        return decode_grey(data, what, max_pixels)
    except ImageError as exc:
        raise BadImage(str(exc)) from None


def decode_mask(
    data: bytes, what: str = "mask", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """IOPaint's inpainting mask: grey, then 255 where > 127, else 0."""
    return np.where(decode_grey_image(data, what, max_pixels) > 127, 255, 0).astype(np.uint8)


def encode_answer(picture: Picture, rgb: np.ndarray, quality: int = 95) -> Answer:
    """The cleaned pixels in the photo's own format, with its alpha and EXIF."""
    if picture.format == "PNG":
        data = _encode_png(picture, rgb)
    else:
        data = encode_image(picture, rgb, None, quality)
    return Answer(data, CONTENT_TYPES[picture.format])


def _encode_png(picture: Picture, rgb: np.ndarray) -> bytes:
    image = Image.fromarray(rgb, mode="RGB")
    if picture.grey:
        image = image.convert("L")
    if picture.alpha is not None:
        image.putalpha(Image.fromarray(picture.alpha, mode="L"))
    options: dict[str, object] = {"compress_level": PNG_COMPRESS_LEVEL}
    if picture.exif:
        options["exif"] = picture.exif
    if picture.icc:
        options["icc_profile"] = picture.icc
    out = io.BytesIO()
    image.save(out, format="PNG", **options)
    return out.getvalue()


def adjust_mask(mask: np.ndarray, kernel_size: int, operate: str) -> bytes:
    """IOPaint's adjust_mask: expand, shrink or reverse a grey mask; an RGBA PNG overlay back.

    The mask is split at 127 (>= 127 is set), grown or shrunk with an elliptic kernel of
    2 * kernel_size + 1 pixels, and painted in the brush colour where it is set.
    """
    import cv2  # here: the desktop's GUI process never needs it

    bits = np.where(mask >= 127, 255, 0).astype(np.uint8)
    if operate == "reverse":
        bits = 255 - bits
    elif operate in ("expand", "shrink"):
        side = 2 * max(kernel_size, 0) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        morph = cv2.dilate if operate == "expand" else cv2.erode
        bits = np.asarray(morph(bits, kernel, iterations=1), dtype=np.uint8)
    else:
        raise ValueError(f"operate must be expand, shrink or reverse, not {operate!r}")
    overlay = np.zeros((*bits.shape, 4), dtype=np.uint8)
    overlay[bits > 128] = MASK_COLOUR
    out = io.BytesIO()
    Image.fromarray(overlay, mode="RGBA").save(out, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return out.getvalue()
