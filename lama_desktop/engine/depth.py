"""16-bit photos kept at 16 bits: untouched pixels exactly, edited ones widened from 8-bit.

Pillow decodes 16-bit RGB PNG and TIFF only down to 8 bits, so the full-depth pixels come from
OpenCV (imported only when such a photo is met: the GUI process stays free of it otherwise).
The 16-bit PNG is written by OpenCV with the photo's ICC, EXIF and DPI chunks put back; the
16-bit TIFF by tifffile, with its ICC profile and DPI.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def is_16_bit(image: Image.Image, data: bytes) -> bool:
    """True when a PNG or TIFF stores 16 bits per channel."""
    if image.format == "PNG":
        return len(data) > 24 and data[24] == 16  # IHDR's bit depth, at a fixed offset
    if image.format == "TIFF":
        bits = image.tag_v2.get(258)  # type: ignore[attr-defined]
        values = bits if isinstance(bits, tuple) else (bits,)
        return bool(values) and all(b == 16 for b in values)
    return False


def decode_deep(data: bytes, rgb: np.ndarray) -> np.ndarray | None:
    """The 16-bit pixels as uint16 HxWx3 (RGB) or HxWx4 (RGBA), or None where they cannot be
    read so that they match `rgb` (the 8-bit decode of the same photo) pixel for pixel."""
    import cv2  # only for 16-bit photos

    deep = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if deep is None or deep.dtype != np.uint16 or deep.shape[:2] != rgb.shape[:2]:
        return None
    if deep.ndim == 2:
        deep = np.repeat(deep[..., None], 3, axis=2)
    elif deep.shape[2] == 3:
        deep = deep[..., ::-1]  # OpenCV's BGR
    elif deep.shape[2] == 4:
        deep = deep[..., [2, 1, 0, 3]]
    else:
        return None
    deep = np.ascontiguousarray(deep, dtype=np.uint16)
    # A sample of pixels must agree with Pillow's 8-bit reading, else the two decoders saw
    # different photos (a palette, an unusual layout) and the 8-bit path is the safe one.
    step_y, step_x = max(1, rgb.shape[0] // 64), max(1, rgb.shape[1] // 64)
    high = (deep[::step_y, ::step_x, :3] // 256).astype(np.int16)
    if np.abs(high - rgb[::step_y, ::step_x]).max(initial=0) > 1:
        return None
    return deep


def widen(deep: np.ndarray, before: np.ndarray, after: np.ndarray, grey: bool) -> np.ndarray:
    """The 16-bit photo after an edit: pixels the edit left alone (`after` equals `before`)
    keep their 16-bit values; changed ones are the 8-bit result scaled to 16 bits."""
    out = deep.copy()
    changed = (after != before).any(axis=2)
    out[changed, :3] = after[changed].astype(np.uint16) * 257
    if grey:
        out = out[..., [0, 3]] if out.shape[2] == 4 else out[..., 0]
    return np.ascontiguousarray(out)


def encode_png16(
    pixels: np.ndarray,
    icc: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
) -> bytes:
    """A 16-bit PNG of `pixels` (uint16 HxW, HxWx2, HxWx3 or HxWx4; grey or RGB, alpha last)."""
    import cv2

    if pixels.ndim == 3 and pixels.shape[2] == 2:  # grey + alpha: OpenCV writes RGBA
        pixels = pixels[..., [0, 0, 0, 1]]
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = pixels[..., ::-1]
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = pixels[..., [2, 1, 0, 3]]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels))
    if not ok:
        raise ValueError("could not encode a 16-bit PNG")
    return _with_chunks(encoded.tobytes(), _metadata_chunks(icc, exif, dpi))


def encode_tiff16(pixels: np.ndarray, icc: bytes | None, dpi: tuple[float, float] | None) -> bytes:
    """A 16-bit, deflate-compressed TIFF of `pixels` (layouts as in `encode_png16`)."""
    import tifffile  # only for 16-bit photos

    colour = pixels.ndim == 3 and pixels.shape[2] >= 3
    alpha = pixels.ndim == 3 and pixels.shape[2] in (2, 4)
    out = io.BytesIO()
    tifffile.imwrite(
        out,
        pixels,
        photometric="rgb" if colour else "minisblack",
        extrasamples=("unassalpha",) if alpha else None,
        compression="zlib",
        resolution=dpi,
        resolutionunit="INCH" if dpi else None,
        iccprofile=icc,
        metadata=None,  # no tifffile description tag in the user's photo
    )
    return out.getvalue()


def _metadata_chunks(
    icc: bytes | None, exif: bytes | None, dpi: tuple[float, float] | None
) -> list[bytes]:
    chunks = []
    if icc:
        chunks.append(_chunk(b"iCCP", b"ICC Profile\0\0" + zlib.compress(icc)))
    if dpi and dpi[0] > 0 and dpi[1] > 0:
        per_metre = [round(d / 0.0254) for d in dpi]
        chunks.append(_chunk(b"pHYs", struct.pack(">IIB", per_metre[0], per_metre[1], 1)))
    if exif:
        raw = exif[6:] if exif.startswith(b"Exif\0\0") else exif
        chunks.append(_chunk(b"eXIf", raw))
    return chunks


def _chunk(kind: bytes, body: bytes) -> bytes:
    crc = zlib.crc32(kind + body) & 0xFFFFFFFF
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)


def _with_chunks(png: bytes, chunks: list[bytes]) -> bytes:
    """`png` with `chunks` right after IHDR (where iCCP and pHYs must precede the pixels)."""
    end_of_ihdr = 8 + 8 + 13 + 4  # signature, length + type, IHDR body, CRC
    return png[:end_of_ihdr] + b"".join(chunks) + png[end_of_ihdr:]
