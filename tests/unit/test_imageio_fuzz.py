"""Damaged files of every format end in a Picture or an ImageError, never another exception."""

from __future__ import annotations

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from lama_desktop.engine.imageio import ImageError, decode_image, decode_mask


def _sample(fmt: str) -> bytes:
    pixels = np.random.default_rng(7).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    image = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 3
    out = io.BytesIO()
    options: dict[str, object] = {"exif": exif.tobytes()} if fmt != "BMP" else {}
    image.save(out, format=fmt, **options)
    return out.getvalue()


SAMPLES = {fmt: _sample(fmt) for fmt in ("JPEG", "PNG", "WEBP", "BMP", "TIFF")}


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    data = bytearray(SAMPLES[draw(st.sampled_from(sorted(SAMPLES)))])
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "cut", "splice"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "flip" and data:
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_photo_is_decoded_or_refused(data: bytes) -> None:
    try:
        picture = decode_image(data, "fuzz", max_pixels=10_000_000)
    except ImageError as exc:
        assert str(exc).startswith("fuzz: ")
        return
    assert picture.rgb.dtype == np.uint8
    assert picture.rgb.ndim == 3 and picture.rgb.shape[2] == 3


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged())
def test_damaged_mask_is_decoded_or_refused(data: bytes) -> None:
    try:
        mask = decode_mask(data, "fuzz-mask", (32, 24), resize=True)
    except ImageError:
        return
    assert mask.shape == (24, 32)
    assert set(np.unique(mask)) <= {0, 255}
