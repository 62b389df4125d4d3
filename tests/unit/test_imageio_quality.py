"""Saving keeps quality: a JPEG keeps its subsampling, DPI and quantisation; 16-bit PNG stays
16-bit with untouched pixels exact; what cannot stay 16-bit is said before saving."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image, ImageCms, JpegImagePlugin

from lama_desktop.engine.imageio import decode_image, encode_image
from lama_desktop.engine.opencv import OpenCVTelea
from lama_desktop.engine.pipeline import JobSettings, process_bytes


def photo(width: int = 96, height: int = 64) -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 2, y * 3, x + y], axis=2) + rng.integers(0, 30, (height, width, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def jpeg(subsampling: int, quality: int, dpi: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.fromarray(photo()).save(out, "JPEG", subsampling=subsampling, quality=quality, dpi=dpi)
    return out.getvalue()


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_jpeg_keeps_subsampling_dpi_and_quantisation(subsampling: int) -> None:
    data = jpeg(subsampling, quality=72, dpi=(300, 240))
    picture = decode_image(data, "in.jpg")
    edited = picture.rgb.copy()
    edited[10:20, 10:30] = 128
    with Image.open(io.BytesIO(data)) as source:
        tables = source.quantization
    with Image.open(io.BytesIO(encode_image(picture, edited, quality=95))) as out:
        assert JpegImagePlugin.get_sampling(out) == subsampling
        assert out.info["dpi"] == (300, 240)
        assert out.quantization == tables  # the source's tables, not quality 95's


def test_jpeg_from_another_format_uses_the_quality_setting() -> None:
    out = io.BytesIO()
    Image.fromarray(photo()).save(out, "PNG", dpi=(150, 150))
    picture = decode_image(out.getvalue(), "in.png")
    low = Image.open(io.BytesIO(encode_image(picture, picture.rgb, "jpg", quality=40)))
    high = Image.open(io.BytesIO(encode_image(picture, picture.rgb, "jpg", quality=95)))
    assert sum(low.quantization[0]) > sum(high.quantization[0])
    assert high.info["dpi"] == pytest.approx((150, 150), abs=0.01)


def sixteen_bit(channels: int) -> np.ndarray:
    """uint16 pixels whose low bytes matter (they differ from any 8-bit value times 257)."""
    rng = np.random.default_rng(5)
    shape = (40, 56, channels) if channels > 1 else (40, 56)
    return rng.integers(0, 65536, shape, dtype=np.uint16)


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG written by OpenCV (which takes BGR order)."""
    if pixels.ndim == 3:
        order = [2, 1, 0, 3][: pixels.shape[2]] if pixels.shape[2] == 4 else [2, 1, 0]
        pixels = pixels[..., order]
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(pixels))
    assert ok
    return encoded.tobytes()


def read16(data: bytes) -> np.ndarray:
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert pixels.dtype == np.uint16, "written with 8 bits"
    if pixels.ndim == 3:
        order = [2, 1, 0, 3] if pixels.shape[2] == 4 else [2, 1, 0]
        pixels = pixels[..., order]
    return pixels


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_16_bit_png_keeps_untouched_pixels_exact(channels: int) -> None:
    source = sixteen_bit(channels)
    picture = decode_image(png16(source), "in.png")
    assert picture.bits == 16 and picture.depth_note(None) is None
    edited = picture.rgb.copy()
    edited[5:15, 20:40] = (10, 200, 30) if channels > 1 else 77
    out = read16(encode_image(picture, edited))
    assert out.shape == source.shape
    inside = np.zeros(source.shape[:2], bool)
    inside[5:15, 20:40] = True
    assert np.array_equal(out[~inside], source[~inside]), "untouched pixels lost bits"
    colour = out[..., :3] if channels == 4 else out
    wide = edited.astype(np.uint16) * 257
    expected = wide if channels > 1 else wide[..., 0]
    assert np.array_equal(colour[inside], expected[inside])
    if channels == 4:
        assert np.array_equal(out[..., 3], source[..., 3]), "16-bit alpha kept"


def test_16_bit_png_keeps_icc_exif_and_dpi() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x010F] = "Scanner"
    picture = decode_image(png16(sixteen_bit(3)), "in.png")
    picture.icc, picture.exif, picture.dpi = srgb, exif.tobytes(), (600.0, 600.0)
    data = encode_image(picture, picture.rgb)
    with Image.open(io.BytesIO(data)) as out:
        assert out.info["icc_profile"] == srgb
        assert out.getexif()[0x010F] == "Scanner"
        assert out.info["dpi"] == pytest.approx((600, 600), abs=0.01)
    assert np.array_equal(read16(data), sixteen_bit(3))


@pytest.mark.parametrize("channels", [1, 3, 4])  # Pillow cannot read grey + alpha at 16
def test_16_bit_tiff_stays_16_bit_tiff(channels: int) -> None:
    source = sixteen_bit(channels)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    tiff = io.BytesIO()
    extra = ("unassalpha",) if channels in (2, 4) else None
    photometric = "rgb" if channels >= 3 else "minisblack"
    tifffile.imwrite(tiff, source, photometric=photometric, extrasamples=extra,
                     resolution=(300, 300), resolutionunit="INCH", iccprofile=srgb)  # fmt: skip
    picture = decode_image(tiff.getvalue(), "in.tif")
    assert picture.bits == 16 and picture.depth_note(None) is None
    edited = picture.rgb.copy()
    edited[2:6, 3:9] = 90
    data = encode_image(picture, edited)
    out = tifffile.imread(io.BytesIO(data))
    assert out.dtype == np.uint16 and out.shape == source.shape
    inside = np.zeros(source.shape[:2], bool)
    inside[2:6, 3:9] = True
    assert np.array_equal(out[~inside], source[~inside])
    assert (out[inside][..., 0] == 90 * 257).all()
    with Image.open(io.BytesIO(data)) as back:
        assert back.info["icc_profile"] == srgb
        assert back.info["dpi"] == pytest.approx((300, 300))


def test_16_bit_photo_as_jpeg_is_told_first() -> None:
    picture = decode_image(png16(sixteen_bit(3)), "in.png")
    note = picture.depth_note("jpg")
    assert note is not None and "16 bits" in note and "with 8" in note and "PNG" in note
    assert picture.depth_note("png") is None
    eight = decode_image(jpeg(2, 90, (72, 72)), "in.jpg")
    assert eight.depth_note("png") is None and eight.depth_note("webp") is None


def test_batch_keeps_16_bit_png_and_pixels_outside_the_mask() -> None:
    source = sixteen_bit(3)
    mask = np.zeros(source.shape[:2], np.uint8)
    mask[10:20, 10:30] = 255
    mask_png = io.BytesIO()
    Image.fromarray(mask).save(mask_png, "PNG")
    settings = JobSettings(model="opencv-telea")
    data = process_bytes(
        png16(source), "in.png", mask_png.getvalue(), "mask.png", settings, OpenCVTelea()
    )
    out = read16(data)
    assert np.array_equal(out[mask == 0], source[mask == 0])
    assert not np.array_equal(out[mask > 0], source[mask > 0])
